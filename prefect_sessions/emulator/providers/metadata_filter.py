"""Vectara's metadata filter: the SQL-WHERE-like expression its list endpoints take.

The grammar follows the vendor's examples (the ``metadata_filter`` parameter of the session list in
Vectara's current OpenAPI): comparisons (``= != <> < <= > >=``), ``AND``/``OR``/``NOT`` and
parentheses, ``IN (...)``, ``value IN field`` for array membership, ``IS [NOT] NULL``,
``[NOT] LIKE`` with ``%`` and ``_``, and quoted dotted paths (``"profile.country"``) for nested
fields. As in SQL, a comparison with a missing field, or between a number and a string, is false.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FilterSyntaxError", "compile_filter"]

Predicate = Callable[[Mapping[str, Any]], bool]
_MISSING = object()

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<quoted>"[^"]+")
      | (?P<op><=|>=|<>|!=|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][\w.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "TRUE", "FALSE"}
#: How deep parentheses and NOT may nest: deeper is refused (400) as the vendor's parser would,
#: never a crash of the parser's own recursion.
MAX_NESTING = 64
#: Digits a number literal may have (a metadata value is a JSON number: 64-bit or a double).
MAX_NUMBER_DIGITS = 40


class FilterSyntaxError(ValueError):
    """The expression does not parse; the message says where."""


def compile_filter(expression: str) -> Predicate:
    """A predicate over a metadata mapping, or :class:`FilterSyntaxError`."""
    parser = _Parser(expression)
    predicate = parser.disjunction()
    if parser.peek() is not None:
        raise parser.error("an operator or the end of the filter")
    return predicate


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while text[position:].strip():
            match = _TOKEN.match(text, position)
            if match is None or match.lastgroup is None:
                where = len(text) - len(text[position:].lstrip()) + 1
                raise FilterSyntaxError(f"unexpected character at position {where}")
            value = match.group(match.lastgroup)
            kind = match.lastgroup
            if kind == "word" and value.upper() in _KEYWORDS:
                kind, value = "keyword", value.upper()
            self.tokens.append((kind, value, match.start(match.lastgroup)))
            position = match.end()
        self.index = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def accept(self, kind: str, value: str | None = None) -> str | None:
        token = self.peek()
        if token is not None and token[0] == kind and (value is None or token[1] == value):
            self.index += 1
            return token[1]
        return None

    def expect(self, kind: str, value: str, wanted: str) -> None:
        if self.accept(kind, value) is None:
            raise self.error(wanted)

    def error(self, wanted: str) -> FilterSyntaxError:
        token = self.peek()
        where = f"'{token[1]}' at position {token[2] + 1}" if token else "the end"
        return FilterSyntaxError(f"expected {wanted}, found {where}")

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.accept("keyword", "OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else lambda m: any(p(m) for p in parts)

    def conjunction(self) -> Predicate:
        parts = [self.negation()]
        while self.accept("keyword", "AND"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else lambda m: all(p(m) for p in parts)

    def negation(self) -> Predicate:
        if self.accept("keyword", "NOT"):
            inner = self.nested(self.negation)
            return lambda m: not inner(m)
        if self.accept("op", "("):
            inner = self.nested(self.disjunction)
            self.expect("op", ")", "')'")
            return inner
        return self.comparison()

    def nested(self, parse: Callable[[], Predicate]) -> Predicate:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise FilterSyntaxError(
                f"the filter nests parentheses and NOT more than {MAX_NESTING} deep; simplify it"
            )
        try:
            return parse()
        finally:
            self.depth -= 1

    def comparison(self) -> Predicate:
        left = self.operand()
        if self.accept("keyword", "IS"):
            negated = self.accept("keyword", "NOT") is not None
            self.expect("keyword", "NULL", "NULL")
            return lambda m: (left(m) in (None, _MISSING)) is not negated
        negated = self.accept("keyword", "NOT") is not None
        if self.accept("keyword", "LIKE"):
            pattern = _like(self.literal_string())
            return lambda m: _is_str(left(m)) and (pattern.fullmatch(left(m)) is None) is negated
        if self.accept("keyword", "IN"):
            if self.accept("op", "("):
                values = [self.literal()]
                while self.accept("op", ","):
                    values.append(self.literal())
                self.expect("op", ")", "')' to close the IN list")
                return lambda m: (
                    _kind(left(m)) is not None
                    and (any(_equal(left(m), v) for v in values) is not negated)
                )
            field = self.operand()
            return lambda m: (
                isinstance(field(m), list)
                and (any(_equal(left(m), v) for v in field(m)) is not negated)
            )
        if negated:
            raise self.error("IN or LIKE after NOT")
        token = self.peek()
        if token is None or token[0] != "op" or token[1] in "(),":
            raise self.error("a comparison operator")
        self.index += 1
        compare = _COMPARISONS[token[1]]
        right = self.operand()
        return lambda m: _compare(compare, left(m), right(m))

    def operand(self) -> Callable[[Mapping[str, Any]], Any]:
        token = self.peek()
        if token is not None and token[0] in ("word", "quoted"):
            self.index += 1
            path = (token[1].strip('"') if token[0] == "quoted" else token[1]).split(".")
            return lambda m: _lookup(m, path)
        value = self.literal()
        return lambda m: value

    def literal(self) -> Any:
        token = self.peek()
        if token is None:
            raise self.error("a value")
        kind, value, _ = token
        self.index += 1
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            if len(value) > MAX_NUMBER_DIGITS:
                self.index -= 1
                raise self.error(f"a number of at most {MAX_NUMBER_DIGITS} digits")
            return float(value) if "." in value else int(value)
        if kind == "keyword" and value in ("TRUE", "FALSE", "NULL"):
            return {"TRUE": True, "FALSE": False, "NULL": None}[value]
        self.index -= 1
        raise self.error("a value")

    def literal_string(self) -> str:
        value = self.literal()
        if not isinstance(value, str):
            self.index -= 1
            raise self.error("a quoted pattern")
        return value


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _lookup(metadata: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = metadata
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _compare(compare: Callable[[Any, Any], bool], left: Any, right: Any) -> bool:
    kind = _kind(left)
    return kind is not None and kind == _kind(right) and compare(left, right)


def _equal(left: Any, right: Any) -> bool:
    return _compare(_COMPARISONS["="], left, right)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)
