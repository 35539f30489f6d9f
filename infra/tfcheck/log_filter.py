"""Cloud Logging filters (the subset our log-based metrics use), parsed and evaluated.

Grammar: comparisons `path OP value` (OP one of = != > >= < <= : =~ !~; a
value is a quoted string, a bare word or number, or a parenthesised
`("a" OR "b")` list), function calls such as `log_id("...")`, `NOT`/`-`,
`AND` (also implied by juxtaposition), `OR`, parentheses. In the Logging
query language OR binds tighter than AND: `a OR b AND c` is `(a OR b) AND c`.

A filter is evaluated against a `log_lines.Entry` in three-valued logic:
True (every line of that shape matches), False (none does), None (it
depends on what the checks cannot see: resource labels, numeric values,
fields an open line may carry). `could_match` is "not False". The code's
lines are JSON on stdout: `log_id("run.googleapis.com/stdout")` holds for
them, any other log id and every `httpRequest.*` field (request logs) never.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from infra.tfcheck.log_lines import Entry

STDOUT_LOG = "run.googleapis.com/stdout"
SEVERITY_RANK = {"DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400,
                 "ERROR": 500, "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800}
_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>>=|<=|!=|=~|!~|[=<>:])'
                    r"|(?P<paren>[()])|(?P<word>[^\s()=<>:!\"]+))")


class FilterSyntaxError(ValueError):
    """The filter is not in the subset this module reads; the message says where."""


@dataclass(frozen=True)
class Comparison:
    path: str
    op: str
    values: tuple[str, ...]  # unquoted; several for `("a" OR "b")`

    def with_values(self, *values: str) -> Comparison:
        return Comparison(self.path, self.op, values)


@dataclass(frozen=True)
class Node:
    kind: str  # "and" | "or" | "not" | "cmp" | "call"
    children: tuple[Node, ...] = ()
    comparison: Comparison | None = None


Literal = tuple[bool, Comparison]  # (negated, comparison)


def parse(text: str) -> Node:
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    node = parser.conjunction()
    if parser.peek() is not None:
        raise FilterSyntaxError(f"unexpected {parser.peek()!r} in {text!r}")
    return node


def dnf(node: Node, negated: bool = False) -> list[list[Literal]]:
    """The filter as a disjunction of conjunctions of (negated, comparison) literals."""
    if node.kind in ("cmp", "call"):
        assert node.comparison is not None
        return [[(negated, node.comparison)]]
    if node.kind == "not":
        return dnf(node.children[0], not negated)
    parts = [dnf(child, negated) for child in node.children]
    if (node.kind == "or") != negated:
        return [conjunction for part in parts for conjunction in part]
    result: list[list[Literal]] = [[]]
    for part in parts:
        result = [left + right for left in result for right in part]
    return result


def evaluate(node: Node, entry: Entry) -> bool | None:
    if node.kind in ("cmp", "call"):
        assert node.comparison is not None
        return compare(node.comparison, entry)
    results = [evaluate(child, entry) for child in node.children]
    if node.kind == "not":
        return None if results[0] is None else not results[0]
    if node.kind == "and":
        return False if False in results else (None if None in results else True)
    return True if True in results else (None if None in results else False)


def evaluate_literals(literals: Sequence[Literal], entry: Entry) -> bool | None:
    results = []
    for negated, comparison in literals:
        result = compare(comparison, entry)
        results.append(None if result is None else result != negated)
    return False if False in results else (None if None in results else True)


def could_match(node: Node, entry: Entry) -> bool:
    return evaluate(node, entry) is not False


def compare(comparison: Comparison, entry: Entry) -> bool | None:
    path, op = comparison.path, comparison.op
    if path == "log_id()":  # the functions' JSON lines are Cloud Run's stdout log
        return comparison.values == (STDOUT_LOG,)
    if path.startswith("httpRequest."):
        return False  # a request log's field: no line the code writes has it
    if path == "severity":
        return _severity(op, comparison.values, entry.severity)
    if path == "jsonPayload.message":
        possible: frozenset[object] | None = frozenset({entry.message})
    elif path.startswith("jsonPayload.") and "." not in path[len("jsonPayload."):]:
        present, possible = entry.values(path[len("jsonPayload."):])
        if not present:
            return False  # a field the line never carries compares with nothing
    else:
        return None  # resource, log name, httpRequest...: not seen from the code
    if op not in ("=", ":", "!=") or possible is None:
        return None
    matches = [_equal(op, value, comparison.values) for value in possible]
    result = True if all(matches) else (False if not any(matches) else None)
    return (not result if result is not None else None) if op == "!=" else result


def _equal(op: str, actual: object, wanted: tuple[str, ...]) -> bool:
    if not isinstance(actual, str):
        text = "true" if actual is True else "false" if actual is False else str(actual)
    else:
        text = actual
    if op == ":":
        return any(value in text for value in wanted)
    return text in wanted


def _severity(op: str, values: tuple[str, ...], actual: str | None) -> bool | None:
    if actual is None:
        return None
    have = SEVERITY_RANK.get(actual.upper())
    wanted = [SEVERITY_RANK.get(v.upper()) for v in values]
    if have is None or None in wanted:
        return None
    checks = {"=": lambda w: have == w, "!=": lambda w: have != w, ">=": lambda w: have >= w,
              ">": lambda w: have > w, "<=": lambda w: have <= w, "<": lambda w: have < w}
    if op not in checks:
        return None
    return any(checks[op](w) for w in wanted)


# --- parsing -----------------------------------------------------------------------


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterSyntaxError(f"cannot read {text[position:position + 20]!r} in {text!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self._tokens, self._index, self._text = tokens, 0, text

    def peek(self) -> tuple[str, str] | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterSyntaxError(f"unexpected end of {self._text!r}")
        self._index += 1
        return token

    def conjunction(self) -> Node:
        children = [self._disjunction()]
        while (token := self.peek()) is not None and token != ("paren", ")"):
            if token == ("word", "AND"):
                self._take()
            children.append(self._disjunction())
        return children[0] if len(children) == 1 else Node("and", tuple(children))

    def _disjunction(self) -> Node:
        children = [self._unary()]
        while self.peek() == ("word", "OR"):
            self._take()
            children.append(self._unary())
        return children[0] if len(children) == 1 else Node("or", tuple(children))

    def _unary(self) -> Node:
        token = self._take()
        if token == ("word", "NOT") or token == ("word", "-"):
            return Node("not", (self._unary(),))
        if token == ("paren", "("):
            node = self.conjunction()
            if self._take() != ("paren", ")"):
                raise FilterSyntaxError(f"unbalanced parentheses in {self._text!r}")
            return node
        if token[0] != "word":
            raise FilterSyntaxError(f"unexpected {token[1]!r} in {self._text!r}")
        path = token[1]
        if path.startswith("-"):
            self._tokens.insert(self._index, ("word", path[1:]))
            return Node("not", (self._unary(),))
        following = self.peek()
        if following == ("paren", "("):  # a function call: log_id("..."), ...
            depth, arguments = 0, []
            while True:
                token = self._take()
                depth += {("paren", "("): 1, ("paren", ")"): -1}.get(token, 0)
                if token[0] == "string":
                    arguments.append(self._scalar(token))
                if depth == 0:
                    break
            return Node("call", comparison=Comparison(f"{path}()", "call", tuple(arguments)))
        if following is None or following[0] != "op":
            raise FilterSyntaxError(f"{path!r} is not compared with anything in {self._text!r}")
        op = self._take()[1]
        return Node("cmp", comparison=Comparison(path, op, self._value()))

    def _value(self) -> tuple[str, ...]:
        token = self._take()
        if token == ("paren", "("):
            values = [self._scalar(self._take())]
            while self.peek() == ("word", "OR"):
                self._take()
                values.append(self._scalar(self._take()))
            if self._take() != ("paren", ")"):
                raise FilterSyntaxError(f"unbalanced value list in {self._text!r}")
            return tuple(values)
        return (self._scalar(token),)

    def _scalar(self, token: tuple[str, str]) -> str:
        kind, text = token
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "word":
            return text
        raise FilterSyntaxError(f"expected a value, not {text!r}, in {self._text!r}")
