"""terraform/ read into plain Python values (python-hcl2), for the offline checks.

Expressions stay strings (`"${google_service_account.worker.email}"`); the
checks compare them with references rather than evaluate them. A resource
whose `for_each` is a literal map or list, or a `local.NAME` holding one, is
expanded into one instance per key, with `each.key` / `each.value` (and
`each.value.attr`) substituted, so grants written with `for_each` over a local
map are checked like grants written one by one. A reference to an instance,
`google_x.this["key"]`, is identified by its key.

Each file's parse is kept for the process, keyed by its text: the checks and
their proofs load terraform/ and many copies of it differing in one file, and
python-hcl2 is slow; every caller gets its own copy of the values.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

# `google_x.name.attr`, `data.google_x.name.attr`, `random_bytes.name.attr`...
REFERENCE = re.compile(
    r"(?<![\w.])(?P<data>data\.)?(?P<type>(?:google|archive|random|time)_[a-z0-9_]+)"
    r"\.(?P<name>[a-zA-Z_][\w-]*)(?:\[(?P<index>[^\]]*)\])?(?:\.(?P<attr>[a-z_][a-z0-9_]*))?"
)
_QUOTED = re.compile(r'^"(?P<key>[^"]*)"$')
_EACH_VALUE = re.compile(r"\beach\.value((?:\.[a-z_][a-z0-9_]*)*)")


@dataclass(frozen=True)
class Reference:
    data: bool
    type: str
    name: str
    attr: str | None
    key: str | None = None  # `"k"` in `type.name["k"]`, unquoted; None otherwise

    @property
    def ident(self) -> str:
        """The instance key when the reference names one, else the resource name."""
        return self.key if self.key is not None else self.name


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
        return [i for b in found for i in _expand(b, self.locals)] if expand else found

    def resource(self, type_: str, name: str) -> Block | None:
        return next((b for b in self.resources(type_, expand=False) if b.name == name), None)

    def data_sources(self) -> list[Block]:
        return [b for b in self.blocks if b.kind == "data"]

    def declared(self, ref: Reference) -> bool:
        kind = "data" if ref.data else "resource"
        return any(b.kind == kind and b.type == ref.type and b.name == ref.name
                   for b in self.blocks)


def parse(path: Path) -> dict[str, Any]:
    """One HCL file's values (python-hcl2's shape); the caller may change them."""
    return copy.deepcopy(_parse_text(path.read_text()))


@functools.lru_cache(maxsize=1024)
def _parse_text(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = hcl2.loads(text)
    return parsed


def load(directory: Path) -> Config:
    """Parse every `*.tf` file directly in `directory` (one root module)."""
    config = Config(directory=directory)
    for path in sorted(directory.glob("*.tf")):
        parsed = parse(path)
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
            quoted = _QUOTED.match((match["index"] or "").strip())
            yield Reference(bool(match["data"]), match["type"], match["name"], match["attr"],
                            quoted["key"] if quoted else None)


def single_reference(value: Any, type_: str) -> str | None:
    """The resource (or instance key) of `type_` an expression refers to, if exactly one."""
    names = {ref.ident for ref in references(value) if ref.type == type_ and not ref.data}
    return names.pop() if len(names) == 1 else None


def unquote(value: Any) -> Any:
    """`"${x}"` -> `x`; literals unchanged (python-hcl2 wraps expressions)."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


def _expand(block: Block, locals_: dict[str, Any] | None = None) -> list[Block]:
    for_each = block.body.get("for_each")
    if isinstance(for_each, str):
        match = re.fullmatch(r"\$\{local\.([\w-]+)\}", for_each)
        if match and locals_ is not None:
            for_each = locals_.get(match.group(1))
    if isinstance(for_each, dict):
        items = [(str(k), v) for k, v in for_each.items()]
    elif isinstance(for_each, list) and all(isinstance(v, str) for v in for_each):
        items = [(v, v) for v in for_each]
    else:
        return [block]
    instances = []
    for key, value in items:
        body = _substitute({k: v for k, v in block.body.items() if k != "for_each"},
                           key, value)
        instances.append(Block(block.kind, block.type, block.name, body, block.file, key))
    return instances


def _lookup(value: Any, path: str) -> Any:
    for step in filter(None, path.split(".")):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


def _as_expression(value: Any) -> str:
    """A substituted value written back into an expression."""
    if isinstance(value, str):
        inner = unquote(value)
        return inner if inner is not value else '"' + value + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _substitute(value: Any, key: str, each_value: Any) -> Any:
    if isinstance(value, str):
        if value == "${each.key}":
            return key
        whole = re.fullmatch(r"\$\{each\.value((?:\.[a-z_][a-z0-9_]*)*)\}", value)
        if whole:
            return _lookup(each_value, whole.group(1))
        text = value.replace("each.key", '"' + key + '"')
        return _EACH_VALUE.sub(lambda m: _as_expression(_lookup(each_value, m.group(1))), text)
    if isinstance(value, dict):
        return {k: _substitute(v, key, each_value) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, key, each_value) for v in value]
    return value
