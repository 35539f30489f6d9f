"""Pub/Sub's subscription filter language on message attributes, as documented
(https://cloud.google.com/pubsub/docs/subscription-message-filter), for tests:
the Pub/Sub emulator accepts a subscription's filter but delivers every message
(seen in tests/integration/outbox/test_field_filters.py), so the filter
expressions calsync documents are evaluated here on the attributes the emulator
delivered.

Grammar (the part calsync's filters use): `attributes:KEY` (the attribute
exists), `attributes.KEY = "v"`, `hasPrefix(attributes.KEY, "p")`, `NOT` (or `-`), `AND`,
`OR`, parentheses; AND and OR may not be mixed without parentheses; at most 256
bytes. Keys may be quoted (`attributes:"a-b"`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

MAX_FILTER_BYTES = 256
Predicate = Callable[[Mapping[str, str]], bool]

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:|\(|\)|,|\.|-)'
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")


class FilterError(ValueError):
    """Not a filter Pub/Sub accepts."""


def _tokens(expression: str) -> list[str]:
    found, at = [], 0
    while at < len(expression.rstrip()):
        match = _TOKEN.match(expression, at)
        if match is None:
            raise FilterError(f"unexpected text at {at}: {expression[at:]!r}")
        found.append(match.group(match.lastgroup or "word"))
        at = match.end()
    return found


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.at = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise FilterError(f"expected {expected or 'more'}, found {token!r}")
        self.at += 1
        return token

    def expression(self) -> Predicate:
        terms, operators = [self.unary()], set()
        while self.peek() in ("AND", "OR"):
            operators.add(self.take())
            terms.append(self.unary())
        if len(operators) > 1:
            raise FilterError("AND and OR mixed without parentheses")
        if operators == {"AND"}:
            return lambda a: all(term(a) for term in terms)
        if operators == {"OR"}:
            return lambda a: any(term(a) for term in terms)
        return terms[0]

    def unary(self) -> Predicate:
        if self.peek() in ("NOT", "-"):
            self.take()
            inner = self.unary()
            return lambda a: not inner(a)
        if self.peek() == "(":
            self.take("(")
            inner = self.expression()
            self.take(")")
            return inner
        if self.peek() == "hasPrefix":
            self.take()
            self.take("(")
            key = self.key_after_dot()
            self.take(",")
            prefix = self.string()
            self.take(")")
            return lambda a: key in a and a[key].startswith(prefix)
        self.take("attributes")
        if self.peek() == ":":
            self.take(":")
            key = self.key()
            return lambda a: key in a
        key = self.key_after_dot()
        operator = self.take()
        if operator != "=":  # `!=` is left out: no calsync filter needs it
            raise FilterError(f"unsupported operator {operator!r}")
        value = self.string()
        return lambda a: a.get(key) == value

    def key_after_dot(self) -> str:
        if self.peek() == "attributes":
            self.take()
        self.take(".")
        return self.key()

    def key(self) -> str:
        token = self.take()
        return self._unquote(token) if token.startswith('"') else token

    def string(self) -> str:
        token = self.take()
        if not token.startswith('"'):
            raise FilterError(f"expected a quoted value, found {token!r}")
        return self._unquote(token)

    @staticmethod
    def _unquote(token: str) -> str:
        return re.sub(r"\\(.)", r"\1", token[1:-1])


def compile_filter(expression: str) -> Predicate:
    """The predicate of `expression` on a message's attributes."""
    if len(expression.encode()) > MAX_FILTER_BYTES:
        raise FilterError("longer than 256 bytes")
    parser = _Parser(_tokens(expression))
    predicate = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek()!r}")
    return predicate
