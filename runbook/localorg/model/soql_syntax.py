"""SOQL's syntax: the tokens, the syntax tree and the parser of the subset the runbook and the Salesforce CLI send.

Grammar (keywords and names in any case)::

    SELECT COUNT() | path [, path]*  FROM sobject
      [WHERE condition]  [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST] [, ...]]  [LIMIT n] [OFFSET n]
    condition := [NOT] term  ((AND | OR) [NOT] term)*      -- AND and OR never mix without parentheses
    term      := ( condition ) | path op value | path [NOT] IN ( value, ... | SELECT one-id-path ... )
    op        := = | != | <> | < | > | <= | >= | LIKE
    value     := 'text' (backslash escapes) | number | true | false | null
    path      := Field | Relationship.Field | Relationship.Relationship.Field

Errors carry Salesforce's error codes and its message layout (query line, caret, row and column): bad syntax is
MALFORMED_QUERY; ``soql`` checks the tree against the schema and runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class SoqlError(Exception):
    """A query Salesforce would refuse; ``code`` is its errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- tokens ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # name, string, number, op, punct, end
    text: str
    pos: int
    value: Any = None


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]))
  | (?P<name>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\",
            "%": "\\%", "_": "\\_"}  # \% and \_ stay escaped: they only mean something to LIKE


def _unquote(text: str, pos: int, query: str) -> str:
    out, i = [], 1
    while i < len(text) - 1:
        char = text[i]
        if char == "\\":
            escaped = _ESCAPES.get(text[i + 1])
            if escaped is None:
                raise _malformed(query, pos + i, "Invalid string literal")
            out.append(escaped)
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def tokenize(query: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None:
            raise _malformed(query, pos, f"unexpected token: '{query[pos:].split()[0]}'")
        kind, text = match.lastgroup, match.group()
        if kind == "string":
            tokens.append(Token(kind, text, pos, _unquote(text, pos, query)))
        elif kind == "number":
            tokens.append(Token(kind, text, pos, float(text) if "." in text else int(text)))
        elif kind != "space":
            tokens.append(Token(kind or "", text, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(query)))
    return tokens


def locate(query: str, pos: int) -> str:
    """Salesforce's error preamble: the query row, a caret under the column, and ERROR at Row:Column."""
    row = query.count("\n", 0, pos) + 1
    line_start = query.rfind("\n", 0, pos) + 1
    line = query.split("\n")[row - 1]
    column = pos - line_start + 1
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n"


def _malformed(query: str, pos: int, detail: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", locate(query, pos) + detail)


# --- syntax tree ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Path:
    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Literal:
    value: Any
    kind: str  # string, number, boolean, null
    pos: int


@dataclass(frozen=True)
class Compare:
    path: Path
    op: str
    value: Literal


@dataclass(frozen=True)
class In:
    path: Path
    values: tuple[Literal, ...] | Query
    negated: bool


@dataclass(frozen=True)
class Not:
    inner: Any


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND, OR
    items: tuple[Any, ...]


@dataclass(frozen=True)
class OrderItem:
    path: Path
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    fields: tuple[Path, ...]
    count: bool
    sobject: str
    sobject_pos: int
    where: Any = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int = 0


# --- parser ---------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, token: Token | None = None) -> SoqlError:
        token = token or self.tok
        if token.kind == "end":
            return _malformed(self.query, token.pos, "unexpected token: <EOF>")
        return _malformed(self.query, token.pos, f"unexpected token: '{token.text}'")

    def keyword(self, *words: str) -> bool:
        return self.tok.kind == "name" and self.tok.text.upper() in words

    def take_keyword(self, word: str) -> Token:
        if not self.keyword(word):
            raise self.error()
        return self.advance()

    def advance(self) -> Token:
        token = self.tok
        self.i += 1
        return token

    def take(self, kind: str, text: str | None = None) -> Token:
        if self.tok.kind != kind or (text is not None and self.tok.text != text):
            raise self.error()
        return self.advance()

    def query_(self) -> Query:
        self.take_keyword("SELECT")
        count, fields = False, []
        if self.keyword("COUNT") and self.tokens[self.i + 1].text == "(":
            self.advance()
            self.take("punct", "(")
            self.take("punct", ")")
            count = True
        else:
            fields.append(self.path())
            while self.tok.text == ",":
                self.advance()
                fields.append(self.path())
        self.take_keyword("FROM")
        name = self.take("name")
        if "." in name.text:
            raise self.error(name)
        where = order = limit = None
        offset = 0
        if self.keyword("WHERE"):
            self.advance()
            where = self.condition()
        if self.keyword("ORDER"):
            self.advance()
            self.take_keyword("BY")
            order = [self.order_item()]
            while self.tok.text == ",":
                self.advance()
                order.append(self.order_item())
        if self.keyword("LIMIT"):
            self.advance()
            limit = self.integer()
        if self.keyword("OFFSET"):
            self.advance()
            offset = self.integer()
        return Query(tuple(fields), count, name.text, name.pos, where, tuple(order or ()), limit, offset)

    def integer(self) -> int:
        token = self.take("number")
        if not isinstance(token.value, int) or token.value < 0:
            raise self.error(token)
        return token.value

    def path(self) -> Path:
        token = self.tok
        if token.kind != "name" or token.text.upper() in _RESERVED:
            raise self.error()
        self.advance()
        return Path(tuple(token.text.split(".")), token.pos)

    def order_item(self) -> OrderItem:
        path = self.path()
        descending = False
        if self.keyword("ASC", "DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_last = descending
        if self.keyword("NULLS"):
            self.advance()
            if not self.keyword("FIRST", "LAST"):
                raise self.error()
            nulls_last = self.advance().text.upper() == "LAST"
        return OrderItem(path, descending, nulls_last)

    def condition(self) -> Any:
        items = [self.factor()]
        joiner = None
        while self.keyword("AND", "OR"):
            word = self.tok.text.upper()
            if joiner and word != joiner:
                raise self.error()  # Salesforce wants parentheses around mixed AND/OR
            joiner = word
            self.advance()
            items.append(self.factor())
        return BoolOp(joiner, tuple(items)) if joiner else items[0]

    def factor(self) -> Any:
        if self.keyword("NOT"):
            self.advance()
            return Not(self.factor())
        if self.tok.text == "(":
            self.advance()
            inner = self.condition()
            self.take("punct", ")")
            return inner
        path = self.path()
        if self.keyword("NOT", "IN"):
            negated = self.advance().text.upper() == "NOT"
            if negated:
                self.take_keyword("IN")
            return In(path, self.in_values(), negated)
        if self.keyword("LIKE"):
            self.advance()
            return Compare(path, "LIKE", self.literal())
        if self.tok.kind != "op":
            raise self.error()
        op = self.advance().text
        return Compare(path, "!=" if op == "<>" else op, self.literal())

    def in_values(self) -> tuple[Literal, ...] | Query:
        self.take("punct", "(")
        if self.keyword("SELECT"):
            sub = self.query_()
        else:
            values = [self.literal()]
            while self.tok.text == ",":
                self.advance()
                values.append(self.literal())
            sub = tuple(values)
        self.take("punct", ")")
        return sub

    def literal(self) -> Literal:
        token = self.tok
        if token.kind == "string":
            kind = "string"
        elif token.kind == "number":
            kind = "number"
        elif self.keyword("TRUE", "FALSE"):
            self.advance()
            return Literal(token.text.upper() == "TRUE", "boolean", token.pos)
        elif self.keyword("NULL"):
            self.advance()
            return Literal(None, "null", token.pos)
        else:
            raise self.error()
        self.advance()
        return Literal(token.value, kind, token.pos)


_RESERVED = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT",
                       "OFFSET", "NULL", "TRUE", "FALSE", "ASC", "DESC", "NULLS"})


def parse(query: str) -> Query:
    """The syntax tree of ``query``; raises SoqlError(MALFORMED_QUERY) on bad syntax."""
    parser = _Parser(query)
    result = parser.query_()
    if parser.tok.kind != "end":
        raise parser.error()
    return result


def queries(query: Query) -> list[Query]:
    """``query`` and every semi-join subquery in its WHERE clause."""
    found, pending = [query], [query.where]
    while pending:
        node = pending.pop()
        if isinstance(node, BoolOp):
            pending.extend(node.items)
        elif isinstance(node, Not):
            pending.append(node.inner)
        elif isinstance(node, In) and isinstance(node.values, Query):
            found += queries(node.values)
    return found
