"""A small schema language: one description validates input and becomes JSON Schema.

The router validates request bodies and query parameters with these objects,
and the OpenAPI document is rendered from the very same objects, so what is
accepted and what is documented cannot drift apart.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.api.errors import invalid

MAX_INT = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def _where(path: str) -> str:
    return path or "body"


class Schema(ABC):
    description: str

    @abstractmethod
    def validate(self, value: Any, path: str) -> Any:
        """The value, checked (raises ApiError invalid_argument)."""

    @abstractmethod
    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (2020-12, as OpenAPI 3.1 uses it)."""

    def parse_text(self, raw: str, path: str) -> Any:
        """A query or path parameter's text, parsed then validated."""
        return self.validate(raw, path)

    def _doc(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass(frozen=True)
class Str(Schema):
    pattern: str | None = None
    max_length: int = 2048
    min_length: int = 0
    enum: tuple[str, ...] = ()
    description: str = ""
    max_bytes: int | None = None  # UTF-8 bytes (Firestore limits ids in bytes)

    def validate(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise invalid(f"{_where(path)} must be a string", field=path)
        if self.enum and value not in self.enum:
            raise invalid(f"{_where(path)} must be one of {', '.join(self.enum)}", field=path)
        if not self.min_length <= len(value) <= self.max_length:
            raise invalid(f"{_where(path)} must be {self.min_length} to {self.max_length} "
                          "characters long", field=path)
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON)
            raise invalid(f"{_where(path)} is not valid Unicode", field=path) from None
        if self.max_bytes is not None and size > self.max_bytes:
            raise invalid(f"{_where(path)} must be at most {self.max_bytes} bytes in UTF-8",
                          field=path)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise invalid(f"{_where(path)} must match {self.pattern}", field=path)
        return value

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.enum:
            schema["enum"] = list(self.enum)
        else:
            schema["maxLength"] = self.max_length
            if self.min_length:
                schema["minLength"] = self.min_length
            if self.pattern is not None:
                schema["pattern"] = f"^(?:{self.pattern})$"
        return self._doc(schema)


@dataclass(frozen=True)
class Int(Schema):
    minimum: int = 0
    maximum: int = MAX_INT
    description: str = ""

    def validate(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"{_where(path)} must be an integer", field=path)
        if not self.minimum <= value <= self.maximum:
            raise invalid(f"{_where(path)} must be between {self.minimum} and {self.maximum}",
                          field=path)
        return value

    def parse_text(self, raw: str, path: str) -> int:
        negative = raw.startswith("-") and _DIGITS.fullmatch(raw[1:])
        if not (_DIGITS.fullmatch(raw) or negative):
            raise invalid(f"{path} must be a whole number", field=path)
        return self.validate(int(raw), path)

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"type": "integer", "minimum": self.minimum, "maximum": self.maximum})


@dataclass(frozen=True)
class Bool(Schema):
    description: str = ""

    def validate(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise invalid(f"{_where(path)} must be true or false", field=path)
        return value

    def parse_text(self, raw: str, path: str) -> bool:
        if raw not in ("true", "false"):
            raise invalid(f"{path} must be true or false", field=path)
        return raw == "true"

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"type": "boolean"})


@dataclass(frozen=True)
class CommaList(Schema):
    """A query parameter holding a comma-separated list (`kinds=created,updated`)."""

    item: Str
    max_items: int = 64
    description: str = ""

    def validate(self, value: Any, path: str) -> tuple[str, ...]:
        raise NotImplementedError("a comma list is only read from a query string")

    def parse_text(self, raw: str, path: str) -> tuple[str, ...]:
        items = raw.split(",")
        if len(items) > self.max_items:
            raise invalid(f"{path} lists more than {self.max_items} items", field=path)
        return tuple(dict.fromkeys(self.item.validate(item, path) for item in items))

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"type": "array", "items": self.item.json_schema(),
                          "maxItems": self.max_items})


@dataclass(frozen=True)
class Arr(Schema):
    """A JSON array of strings in a body (an account policy's `exclude`); duplicates are
    dropped, order kept."""

    item: Str
    max_items: int = 100
    description: str = ""

    def validate(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            raise invalid(f"{_where(path)} must be an array", field=path)
        if len(value) > self.max_items:
            raise invalid(f"{_where(path)} holds more than {self.max_items} items", field=path)
        items = [self.item.validate(item, f"{path}[{n}]") for n, item in enumerate(value)]
        return list(dict.fromkeys(items))

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"type": "array", "items": self.item.json_schema(),
                          "maxItems": self.max_items})


@dataclass(frozen=True)
class StrMap(Schema):
    """An object of string values under constrained keys (labels)."""

    key: Str
    value: Str
    max_entries: int = 64
    description: str = ""

    def validate(self, value: Any, path: str) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise invalid(f"{_where(path)} must be an object", field=path)
        if len(value) > self.max_entries:
            raise invalid(f"{_where(path)} holds more than {self.max_entries} entries",
                          field=path)
        checked: dict[str, str] = {}
        for key, item in value.items():
            self.key.validate(key, f"{path}.{key}" if path else str(key))
            checked[key] = self.value.validate(item, f"{path}.{key}")
        return checked

    def json_schema(self) -> dict[str, Any]:
        key = self.key.json_schema()
        key.pop("description", None)
        return self._doc({"type": "object", "propertyNames": key,
                          "additionalProperties": self.value.json_schema(),
                          "maxProperties": self.max_entries})


@dataclass(frozen=True)
class Obj(Schema):
    """A JSON object with known properties; unknown ones are refused."""

    properties: dict[str, Schema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    description: str = ""
    # Exactly one of these groups must be present (oneOf in the document).
    one_of: tuple[tuple[str, ...], ...] = ()

    def validate(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise invalid(f"{_where(path)} must be a JSON object", field=path)
        for name in value:
            if name not in self.properties:
                where = f"{path}.{name}" if path else name
                raise invalid(f"unknown field {where}", field=where)
        for name in self.required:
            if name not in value:
                where = f"{path}.{name}" if path else name
                raise invalid(f"{where} is required", field=where)
        if self.one_of:
            present = [group for group in self.one_of if any(n in value for n in group)]
            if len(present) != 1:
                choices = " or ".join("+".join(group) for group in self.one_of)
                raise invalid(f"{_where(path)} must hold exactly one of {choices}", field=path)
            for name in present[0]:
                if name not in value:
                    raise invalid(f"{name} is required with {present[0][0]}", field=name)
        return {name: self.properties[name].validate(item, f"{path}.{name}" if path else name)
                for name, item in value.items()}

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {n: s.json_schema() for n, s in self.properties.items()},
            "additionalProperties": False,
        }
        if self.required:
            schema["required"] = list(self.required)
        if self.one_of:
            schema["oneOf"] = [{"required": list(group)} for group in self.one_of]
        return self._doc(schema)
