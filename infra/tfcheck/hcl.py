"""terraform/ read into plain Python values (python-hcl2), for the offline checks.

Expressions stay strings (`"${google_service_account.worker.email}"`); the
checks compare them with references rather than evaluate them. A resource
whose `for_each` is a literal map or list is expanded into one instance per
key, with `each.key` / `each.value` substituted, so grants written with
`for_each` are checked like grants written one by one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

# `google_x.name.attr`, `data.google_x.name.attr`, `random_bytes.name.attr`...
REFERENCE = re.compile(
    r"(?<![\w.])(?P<data>data\.)?(?P<type>(?:google|archive|random)_[a-z0-9_]+)"
    r"\.(?P<name>[a-zA-Z_][\w-]*)(?:\[[^\]]*\])?(?:\.(?P<attr>[a-z_][a-z0-9_]*))?"
)


@dataclass(frozen=True)
class Reference:
    data: bool
    type: str
    name: str
    attr: str | None


@dataclass
class Block:
    """One resource or data source (one instance when expanded from for_each)."""

    kind: str  # "resource" | "data"
    type: str
    name: str
    body: dict[str, Any]
    file: str
    key: str | None = None  # the for_each key of an expanded instance

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        suffix = f'["{self.key}"]' if self.key is not None else ""
        return f"{prefix}{self.type}.{self.name}{suffix}"

    def first(self, *path: str) -> Any:
        """The value at a path of nested single blocks / attributes, or None."""
        value: Any = self.body
        for step in path:
            if isinstance(value, list):
                value = value[0] if value else None
            if not isinstance(value, dict):
                return None
            value = value.get(step)
        return value


@dataclass
class Config:
    directory: Path
    blocks: list[Block] = field(default_factory=list)  # not expanded
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resources(self, type_: str | None = None, *, expand: bool = True) -> list[Block]:
        found = [b for b in self.blocks if b.kind == "resource"
                 and (type_ is None or b.type == type_)]
        return [i for b in found for i in _expand(b)] if expand else found

    def resource(self, type_: str, name: str) -> Block | None:
        return next((b for b in self.resources(type_, expand=False) if b.name == name), None)

    def data_sources(self) -> list[Block]:
        return [b for b in self.blocks if b.kind == "data"]

    def declared(self, ref: Reference) -> bool:
        kind = "data" if ref.data else "resource"
        return any(b.kind == kind and b.type == ref.type and b.name == ref.name
                   for b in self.blocks)


def load(directory: Path) -> Config:
    """Parse every `*.tf` file directly in `directory` (one root module)."""
    config = Config(directory=directory)
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for type_, named in entry.items():
                    for name, body in named.items():
                        config.blocks.append(Block(kind, type_, name, body, path.name))
        for entry in parsed.get("locals", []):
            config.locals.update(entry)
        for entry in parsed.get("variable", []):
            config.variables.update(entry)
        for entry in parsed.get("output", []):
            config.outputs.update(entry)
    return config


def strings(value: Any) -> Iterator[str]:
    """Every string inside a parsed value, keys of maps included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def references(value: Any) -> Iterator[Reference]:
    for text in strings(value):
        for match in REFERENCE.finditer(text):
            yield Reference(bool(match["data"]), match["type"], match["name"], match["attr"])


def single_reference(value: Any, type_: str) -> str | None:
    """The name of the `type_` resource an expression refers to, if exactly one."""
    names = {ref.name for ref in references(value) if ref.type == type_ and not ref.data}
    return names.pop() if len(names) == 1 else None


def unquote(value: Any) -> Any:
    """`"${x}"` -> `x`; literals unchanged (python-hcl2 wraps expressions)."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


def _expand(block: Block) -> list[Block]:
    for_each = block.body.get("for_each")
    if isinstance(for_each, dict):
        items = [(str(k), v) for k, v in for_each.items()]
    elif isinstance(for_each, list) and all(isinstance(v, str) for v in for_each):
        items = [(v, v) for v in for_each]
    else:
        return [block]
    instances = []
    for key, value in items:
        body = _substitute(block.body, key, value)
        instances.append(Block(block.kind, block.type, block.name, body, block.file, key))
    return instances


def _substitute(value: Any, key: str, each_value: Any) -> Any:
    if isinstance(value, str):
        if value == "${each.value}":
            return each_value
        if value == "${each.key}":
            return key
        inner = unquote(each_value) if isinstance(each_value, str) else str(each_value)
        return value.replace("each.key", repr(key)[1:-1]).replace("each.value", inner)
    if isinstance(value, dict):
        return {k: _substitute(v, key, each_value) for k, v in value.items() if k != "for_each"}
    if isinstance(value, list):
        return [_substitute(v, key, each_value) for v in value]
    return value
