"""SOQL queries checked against the schema and run: the subset the runbook and the Salesforce CLI send.

The grammar and the parser are ``soql_syntax``'s; LIKE matching is ``soql_like``'s.

Like Salesforce: text comparisons ignore case, ``!=`` also matches nulls, ids compare in their
18-character form, and filters are type-checked (quoted text against a boolean is an error).
Errors carry Salesforce's error codes (MALFORMED_QUERY, INVALID_TYPE, INVALID_FIELD,
INVALID_QUERY_FILTER_OPERATOR) and its message layout (query line, caret, row and column).

Evaluation is bounded, because a query is attacker input: LIKE matches without backtracking (in at
most text length times pattern length steps), and a run over QUERY_TIME_LIMIT seconds stops with
QUERY_TIMEOUT. Matching is plain Python, which lets the server's other threads run in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.localorg.model import ids
from runbook.localorg.model.schema import (
    BOOLEAN,
    DATE,
    DATETIME,
    ID_TYPES,
    INT,
    TEXT_TYPES,
    Field,
    SObject,
    sobject,
)
from runbook.localorg.model.soql_like import Deadline, LikePattern
from runbook.localorg.model.soql_syntax import BoolOp, Compare, In, Literal, Not, Path, Query, SoqlError, locate, parse

Fetch = Callable[[str], list[dict[str, Any]]]
# [D] Salesforce cancels a SOQL query after 120 s; the local org gives up sooner, inside the runbook's
# own 30 s read timeout, so a client sees QUERY_TIMEOUT rather than its own timeout.
QUERY_TIME_LIMIT = 10.0


# --- checking against the schema ------------------------------------------------------------------

@dataclass(frozen=True)
class Hop:
    """One step of a resolved path: the reference field followed, or the final field."""

    sobject: SObject
    field: Field


def _resolve(query_text: str, root: SObject, path: Path) -> tuple[Hop, ...]:
    current, hops = root, []
    for part in path.parts[:-1]:
        reference = current.relationship(part)
        if reference is None or reference.reference_to is None:
            raise SoqlError("INVALID_FIELD", locate(query_text, path.pos) + (
                f"Didn't understand relationship '{part}' in field path. If you are attempting to use a "
                "custom relationship, be sure to append the '__r' after the custom relationship name. Please "
                "reference your WSDL or the describe call for the appropriate names."))
        hops.append(Hop(current, reference))
        current = sobject(reference.reference_to)
    final = current.field(path.parts[-1])
    if final is None:
        raise SoqlError("INVALID_FIELD", locate(query_text, path.pos) + (
            f"No such column '{path.parts[-1]}' on entity '{current.name}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please reference your "
            "WSDL or the describe call for the appropriate names."))
    hops.append(Hop(current, final))
    return tuple(hops)


def unsupported_type(query_text: str, query: Query) -> SoqlError:
    """INVALID_TYPE for the object ``query`` reads: unknown here, or one the API asked does not query."""
    return SoqlError("INVALID_TYPE", locate(query_text, query.sobject_pos) + (
        f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom object, "
        "be sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
        "call for the appropriate names."))


def _root(query_text: str, query: Query) -> SObject:
    root = sobject(query.sobject)
    if root is None:
        raise unsupported_type(query_text, query)
    return root


_TYPE_WORDS = {BOOLEAN: "boolean", INT: "int", DATETIME: "dateTime", DATE: "date"}


def _check_literal(query_text: str, hops: tuple[Hop, ...], literal: Literal) -> Any:
    """The literal's value as the field's type compares it; refuses mismatches as Salesforce does."""
    target = hops[-1].field
    if literal.kind == "null":
        return None
    if target.type in ID_TYPES:
        if literal.kind != "string":
            raise _filter_error(query_text, literal, target, "id", quoted=True)
        normalized = ids.normalize(literal.value)
        if normalized is None:
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR",
                            locate(query_text, literal.pos) + f"invalid ID field: {literal.value}")
        return normalized
    if target.type in TEXT_TYPES:
        if literal.kind != "string":
            raise _filter_error(query_text, literal, target, "string", quoted=True)
        return literal.value
    if target.type == BOOLEAN and literal.kind != "boolean":
        raise _filter_error(query_text, literal, target, "boolean", quoted=False)
    if target.type == INT and literal.kind != "number":
        raise _filter_error(query_text, literal, target, "int", quoted=False)
    if target.type in (DATETIME, DATE):
        raise _filter_error(query_text, literal, target, _TYPE_WORDS[target.type], quoted=False)
    return literal.value


def _filter_error(query_text: str, literal: Literal, target: Field, word: str, *, quoted: bool) -> SoqlError:
    how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    return SoqlError("INVALID_QUERY_FILTER_OPERATOR", locate(query_text, literal.pos) + (
        f"value of filter criterion for field '{target.name}' must be of type {word} and {how}"))


# --- evaluation -----------------------------------------------------------------------------------

def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


@dataclass
class _Rows:
    """What one query run shares: rows fetched once per sObject and indexed by Id, LIKE patterns, deadline."""

    fetch: Fetch
    deadline: Deadline
    _cache: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _likes: dict[str, LikePattern] = field(default_factory=dict)

    def all(self, name: str) -> list[dict[str, Any]]:
        if name not in self._cache:
            self._cache[name] = {row["Id"]: row for row in self.fetch(name)}
        return list(self._cache[name].values())

    def by_id(self, name: str, record_id: str | None) -> dict[str, Any] | None:
        if record_id is None:
            return None
        self.all(name)
        return self._cache[name].get(record_id)

    def like(self, pattern: str) -> LikePattern:
        if pattern not in self._likes:
            self._likes[pattern] = LikePattern.parse(pattern)
        return self._likes[pattern]


@dataclass
class Plan:
    """A query checked against the schema, ready to run."""

    text: str
    query: Query
    root: SObject
    selected: list[tuple[Hop, ...]]

    def run(self, fetch: Fetch, *, version: str, time_limit: float | None = None) -> dict[str, Any]:
        """The REST query response body: totalSize, done and records.

        Raises SoqlError(QUERY_TIMEOUT) once the run takes longer than ``time_limit`` seconds
        (QUERY_TIME_LIMIT unless given).
        """
        limit = QUERY_TIME_LIMIT if time_limit is None else time_limit
        rows = _Rows(fetch, Deadline(time.monotonic() + limit))
        matched = self._matched(rows)
        if self.query.count:
            return {"totalSize": len(matched), "done": True, "records": []}
        return {"totalSize": len(matched), "done": True,
                "records": [self._shape(row, rows, version) for row in matched]}

    def _matched(self, rows: _Rows) -> list[dict[str, Any]]:
        """The rows the WHERE clause keeps, in ORDER BY order, after OFFSET and LIMIT."""
        matched = []
        for row in rows.all(self.root.name):
            rows.deadline.check()
            if self.query.where is None or self._test(self.query.where, row, rows):
                matched.append(row)
        for item in reversed(self.query.order_by):
            hops = _resolve(self.text, self.root, item.path)
            present = [r for r in matched if self._value(hops, r, rows) is not None]
            absent = [r for r in matched if self._value(hops, r, rows) is None]
            present.sort(key=lambda r, h=hops: _fold(self._value(h, r, rows)), reverse=item.descending)
            matched = present + absent if item.nulls_last else absent + present
        end = None if self.query.limit is None else self.query.offset + self.query.limit
        return matched[self.query.offset:end]

    def _value(self, hops: tuple[Hop, ...], row: dict[str, Any] | None, rows: _Rows) -> Any:
        for hop in hops[:-1]:
            if row is None:
                return None
            row = rows.by_id(hop.field.reference_to or "", row.get(hop.field.name))
        return None if row is None else row.get(hops[-1].field.name)

    def _test(self, node: Any, row: dict[str, Any], rows: _Rows) -> bool:
        if isinstance(node, BoolOp):
            results = (self._test(item, row, rows) for item in node.items)
            return all(results) if node.op == "AND" else any(results)
        if isinstance(node, Not):
            return not self._test(node.inner, row, rows)
        hops = _resolve(self.text, self.root, node.path)
        value = self._value(hops, row, rows)
        if isinstance(node, In):
            wanted = self._in_values(node, hops, rows)
            found = _fold(value) in wanted if value is not None else False
            return found != node.negated
        expected = _check_literal(self.text, hops, node.value)
        if node.op == "LIKE":
            return value is not None and expected is not None and rows.like(expected).matches(
                str(value), rows.deadline)
        return _compare(node.op, value, expected)

    def _in_values(self, node: In, hops: tuple[Hop, ...], rows: _Rows) -> set[Any]:
        if isinstance(node.values, Query):
            sub = compile_query(self.text, node.values)
            if len(sub.selected) != 1 or sub.selected[0][-1].field.type not in ID_TYPES:
                raise SoqlError("MALFORMED_QUERY", locate(self.text, node.path.pos) +
                                "The selected field in a semi join must be an Id or a reference to an Id")
            return {_fold(sub._value(sub.selected[0], row, rows)) for row in sub._matched(rows)}
        return {_fold(_check_literal(self.text, hops, literal)) for literal in node.values}

    def _shape(self, row: dict[str, Any], rows: _Rows, version: str) -> dict[str, Any]:
        record = _attributes(self.root.name, row["Id"], version)
        for hops in self.selected:
            _place(record, hops, row, rows, version)
        return record

    def columns(self) -> dict[str, Any]:
        """The ``columns=true`` answer: column metadata, which `sf data query` asks for first."""
        return {"columnMetadata": _columns(self.selected), "entityName": self.root.name, "groupBy": False,
                "idSelected": any(len(h) == 1 and h[0].field.name == "Id" for h in self.selected),
                "keyPrefix": self.root.key_prefix}


def _compare(op: str, value: Any, expected: Any) -> bool:
    if expected is None or value is None:
        same = value is None and expected is None
        return same if op == "=" else (not same) if op == "!=" else False
    value, expected = _fold(value), _fold(expected)
    return {"=": value == expected, "!=": value != expected, "<": value < expected, ">": value > expected,
            "<=": value <= expected, ">=": value >= expected}[op]


def _attributes(name: str, record_id: str | None, version: str) -> dict[str, Any]:
    attributes = {"type": name}
    if record_id and version:
        attributes["url"] = f"/services/data/v{version}/sobjects/{name}/{record_id}"
    return {"attributes": attributes}


def _place(record: dict[str, Any], hops: tuple[Hop, ...], row: dict[str, Any] | None, rows: _Rows,
           version: str) -> None:
    """Put the value at ``hops`` into ``record``, nesting relationship objects as Salesforce does."""
    if len(hops) == 1:
        record[hops[0].field.name] = None if row is None else row.get(hops[0].field.name)
        return
    reference = hops[0].field
    key = reference.relationship or reference.name
    target = rows.by_id(reference.reference_to or "", row.get(reference.name)) if row else None
    if target is None:
        record[key] = None
        return
    nested = record.get(key)
    if nested is None:
        nested = record[key] = _attributes(reference.reference_to or "", target["Id"], version)
    _place(nested, hops[1:], target, rows, version)


_APEX_TYPES = {"id": "Id", "reference": "Id", "boolean": "Boolean", "int": "Integer", "datetime": "Datetime",
               "date": "Date"}


def _column(name: str, display: str, target: Field | None, joins: list[dict[str, Any]]) -> dict[str, Any]:
    kind = target.type if target else None
    return {"aggregate": False, "apexType": _APEX_TYPES.get(kind or "", "String") if target else None,
            "booleanType": kind == BOOLEAN, "columnName": name, "custom": False, "displayName": display,
            "foreignKeyName": None, "insertable": bool(target and target.createable), "joinColumns": joins,
            "numberType": kind == INT, "textType": kind in TEXT_TYPES or kind in ID_TYPES, "updatable": False}


def _columns(selected: list[tuple[Hop, ...]], prefix: str = "") -> list[dict[str, Any]]:
    """One column per selected field; relationship paths become one column with nested joinColumns."""
    out: list[dict[str, Any]] = []
    joined: dict[str, tuple[dict[str, Any], list[tuple[Hop, ...]]]] = {}
    for hops in selected:
        if len(hops) == 1:
            out.append(_column(hops[0].field.name, prefix + hops[0].field.name, hops[0].field, []))
            continue
        name = hops[0].field.relationship or hops[0].field.name
        if name not in joined:
            joined[name] = (_column(name, prefix + name, None, []), [])
            out.append(joined[name][0])
        joined[name][1].append(hops[1:])
    for column, rest in joined.values():
        column["joinColumns"] = _columns(rest, column["displayName"] + ".")
    return out


def compile_query(text: str, query: Query | None = None) -> Plan:
    """``text`` parsed and checked against the schema; raises SoqlError as Salesforce would answer."""
    query = query or parse(text)
    root = _root(text, query)
    selected, seen = [], set()
    for path in query.fields:
        hops = _resolve(text, root, path)
        key = tuple(h.field.name for h in hops)
        if key not in seen:
            seen.add(key)
            selected.append(hops)
    plan = Plan(text, query, root, selected)
    _check_tree(plan, query.where)
    for item in query.order_by:
        _resolve(text, root, item.path)
    return plan


def _check_tree(plan: Plan, node: Any) -> None:
    """Resolve every filter path and literal up front, so errors do not depend on the data."""
    if node is None:
        return
    if isinstance(node, BoolOp):
        for item in node.items:
            _check_tree(plan, item)
    elif isinstance(node, Not):
        _check_tree(plan, node.inner)
    else:
        hops = _resolve(plan.text, plan.root, node.path)
        if isinstance(node, Compare):
            _check_literal(plan.text, hops, node.value)
        elif isinstance(node.values, Query):
            compile_query(plan.text, node.values)
        else:
            for literal in node.values:
                _check_literal(plan.text, hops, literal)
