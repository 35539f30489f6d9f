"""The log lines functions/ writes, read with `ast`: message, severity and fields.

Each `logs.log(SEVERITY, "message", **fields)` (also `logs.log_exception`, and
`log(...)` imported from functions.logs) with a literal message is one
`LogLine`: the severities it can have and, per field, the values it can hold
(None: any value, such as a variable). Values come from literals, conditional
expressions (`"WARNING" if n < 3 else "ERROR"`), a module-level dict indexed
by an enum member (the worker's `_SEVERITY[report.outcome]`: the severity then
follows the `outcome` field), and `**x.log_fields()` (a method returning a
dict literal; `self.f.value` resolves through f's enum annotation; with several
such methods, the union of their fields and values). A
`**mapping` the reader cannot resolve makes the line *open*: any field named
in its module (a string constant, a keyword argument, an annotated class
attribute) may be in it, with any value.

`Entry` is one concrete shape of a line (one severity, and one value of the
field the severity follows), which the metric filters are evaluated against.

What is read is kept for the process, keyed by the files' text: each module's
parse (and what is read from it alone), and the lines of a whole tree. The
checks read functions/ and copies of it differing in one module many times.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Values = frozenset[object] | None  # None: any value

_LOG_FUNCTIONS = {"log", "log_exception"}


@dataclass(frozen=True)
class LogLine:
    path: str
    lineno: int
    message: str
    severity: Values
    fields: Mapping[str, Values]
    open_fields: frozenset[str] = frozenset()
    # (field, value -> severity) when the severity follows one field's value
    severity_by: tuple[str, Mapping[object, str]] | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lineno}"

    def entries(self) -> list[Entry]:
        if self.severity_by is not None:
            name, mapping = self.severity_by
            values = self.fields.get(name)
            if values is not None:
                return [Entry(self, mapping.get(value), {**self.fields, name: frozenset({value})})
                        for value in sorted(values, key=str)]
        severities: list[str | None] = [None]
        if self.severity:
            severities = [str(s) for s in sorted(self.severity, key=str)]
        return [Entry(self, severity, dict(self.fields)) for severity in severities]


@dataclass(frozen=True)
class Entry:
    """One shape of a log line: what a filter sees."""

    line: LogLine
    severity: str | None  # None: unknown
    fields: Mapping[str, Values] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return self.line.message

    def values(self, name: str) -> tuple[bool, Values]:
        """(may the line carry the field, its possible values)."""
        if name in self.fields:
            return True, self.fields[name]
        return name in self.line.open_fields, None

    def describe(self) -> str:
        shown = [f"{k}={sorted(map(str, v))[0]!r}" for k, v in sorted(self.fields.items())
                 if v is not None and len(v) == 1 and k in ("outcome", "result")]
        return " ".join([repr(self.message), f"severity={self.severity}", *shown])


def read(root: Path) -> list[LogLine]:
    """Every log line under `root/functions`, in file order."""
    sources = tuple((str(path.relative_to(root)), path.read_text())
                    for path in sorted((root / "functions").rglob("*.py")))
    return list(_read(sources))


@dataclass(frozen=True)
class _Module:
    """One module's parse and what is read from it alone."""

    tree: ast.Module
    enums: dict[str, dict[str, object]]
    log_fields: list[tuple[ast.ClassDef, ast.Dict]]
    names: frozenset[str]


@functools.lru_cache(maxsize=2048)
def _module(text: str) -> _Module:
    tree = ast.parse(text)
    return _Module(tree, _enums([tree]), _log_fields_methods([tree]), _names(tree))


@functools.lru_cache(maxsize=32)
def _read(sources: tuple[tuple[str, str], ...]) -> tuple[LogLine, ...]:
    modules = {relative: _module(text) for relative, text in sources}
    enums = {name: members for module in modules.values()
             for name, members in module.enums.items()}
    log_fields = [found for module in modules.values() for found in module.log_fields]
    lines: list[LogLine] = []
    for relative, module in modules.items():
        reader = _ModuleReader(module.tree, enums, log_fields, module.names)
        lines += [line for call in ast.walk(module.tree) if isinstance(call, ast.Call)
                  if (line := reader.line(call, relative)) is not None]
    return tuple(sorted(lines, key=lambda line: (line.path, line.lineno)))


def entries(lines: list[LogLine]) -> Iterator[Entry]:
    for line in lines:
        yield from line.entries()


# --- reading one module ----------------------------------------------------------


class _ModuleReader:
    def __init__(self, tree: ast.Module, enums: dict[str, dict[str, object]],
                 log_fields: list[tuple[ast.ClassDef, ast.Dict]],
                 names: frozenset[str]) -> None:
        self._enums = enums
        self._log_fields = log_fields
        self._imported = {alias.asname or alias.name for node in ast.walk(tree)
                          if isinstance(node, ast.ImportFrom) and node.module == "functions.logs"
                          for alias in node.names if alias.name in _LOG_FUNCTIONS}
        self._dicts = {target.id: node.value for node in tree.body
                       if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                       for target in node.targets if isinstance(target, ast.Name)}
        self._names = names

    def line(self, call: ast.Call, path: str) -> LogLine | None:
        func = call.func
        is_log = (isinstance(func, ast.Name) and func.id in self._imported) or (
            isinstance(func, ast.Attribute) and func.attr in _LOG_FUNCTIONS
            and isinstance(func.value, ast.Name) and func.value.id == "logs")
        if not is_log or len(call.args) < 2:
            return None
        message = call.args[1]
        if not (isinstance(message, ast.Constant) and isinstance(message.value, str)):
            return None
        fields: dict[str, Values] = {}
        is_open = False
        for keyword in call.keywords:
            if keyword.arg is not None:
                fields[keyword.arg] = _values(keyword.value)
                continue
            spread = self._spread(keyword.value)
            if spread is None:
                is_open = True
            else:
                fields.update(spread)
        severity, severity_by = self._severity(call.args[0], fields)
        return LogLine(path, call.lineno, message.value, severity, fields,
                       self._names if is_open else frozenset(), severity_by)

    def _severity(self, node: ast.expr, fields: dict[str, Values]
                  ) -> tuple[Values, tuple[str, Mapping[object, str]] | None]:
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id in self._dicts:
            table = self._dicts[node.value.id]
            severities = [_values(value) for value in table.values]
            union = None if any(s is None for s in severities) else frozenset(
                item for s in severities if s is not None for item in s)
            key = node.slice
            follows = key.attr if isinstance(key, ast.Attribute) else None
            mapping: dict[object, str] = {}
            for member, severity in zip(table.keys, table.values, strict=True):
                value = self._enum_value(member)
                if value is not None and isinstance(severity, ast.Constant):
                    mapping[value] = str(severity.value)
            if follows in fields and len(mapping) == len(table.keys):
                return union, (follows, mapping)
            return union, None
        return _values(node), None

    def _enum_value(self, node: ast.expr | None) -> object | None:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self._enums.get(node.value.id, {}).get(node.attr)
        return None

    def _spread(self, node: ast.expr) -> dict[str, Values] | None:
        """The fields of `**x.log_fields()`, or None when they cannot be read."""
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "log_fields" and self._log_fields):
            return None
        # The receiver's class is not known statically: with several `log_fields`
        # methods (a sync run's report, a list run's), the line may carry the fields
        # of any of them, each with the union of their values.
        found: dict[str, Values] = {}
        for owner, table in self._log_fields:
            annotations = {item.target.id: item.annotation for item in owner.body
                           if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
            for key, value in zip(table.keys, table.values, strict=True):
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    return None
                values = self._member_values(value, annotations)
                if key.value in found:
                    known = found[key.value]
                    values = None if known is None or values is None else known | values
                found[key.value] = values
        return found

    def _member_values(self, node: ast.expr, annotations: dict[str, ast.expr]) -> Values:
        # `self.outcome.value` where `outcome: Outcome` and Outcome is an Enum.
        if isinstance(node, ast.Attribute) and node.attr == "value" \
                and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self":
            annotation = annotations.get(node.value.attr)
            if isinstance(annotation, ast.Name) and annotation.id in self._enums:
                return frozenset(self._enums[annotation.id].values())
        return _values(node)


def _values(node: ast.expr) -> Values:
    if isinstance(node, ast.Constant):
        return frozenset({node.value})
    if isinstance(node, ast.IfExp):
        body, orelse = _values(node.body), _values(node.orelse)
        return None if body is None or orelse is None else body | orelse
    return None


def _names(tree: ast.Module) -> frozenset[str]:
    """What an open line in this module may name as a field."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return frozenset(names)


def _enums(trees: Iterable[ast.Module]) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            if not any(isinstance(b, ast.Name) and b.id.endswith("Enum") for b in node.bases):
                continue
            found[node.name] = {target.id: item.value.value for item in node.body
                                if isinstance(item, ast.Assign)
                                and isinstance(item.value, ast.Constant)
                                for target in item.targets if isinstance(target, ast.Name)}
    return found


def _log_fields_methods(trees: Iterable[ast.Module]) -> list[tuple[ast.ClassDef, ast.Dict]]:
    found = []
    for tree in trees:
        for owner in ast.walk(tree):
            if not isinstance(owner, ast.ClassDef):
                continue
            for item in owner.body:
                if isinstance(item, ast.FunctionDef) and item.name == "log_fields":
                    returned = [n.value for n in ast.walk(item)
                                if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict)]
                    if len(returned) == 1:
                        found.append((owner, returned[0]))
    return found
