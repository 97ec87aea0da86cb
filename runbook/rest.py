"""REST data calls (SOQL query, sObject create/delete) with Salesforce's errors kept visible."""

from __future__ import annotations

from typing import Any

from runbook.errors import SalesforceError
from runbook.org import OrgSession


def _error(operation: str, exc: Exception) -> SalesforceError:
    content = getattr(exc, "content", None)
    first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
    code = first.get("errorCode") or type(exc).__name__
    message = (first.get("message") or str(exc)).strip()
    return SalesforceError(operation, code, message)


def _call(session: OrgSession, operation: str, fn):
    """Run ``fn(sf)``; an expired session is renewed once (a 401 means nothing was done, so repeating is safe)."""
    from simple_salesforce.exceptions import SalesforceError as SfError
    from simple_salesforce.exceptions import SalesforceExpiredSession

    try:
        try:
            return fn(session.sf)
        except SalesforceExpiredSession:
            session.reauthenticate()
            return fn(session.sf)
    except SfError as exc:
        raise _error(operation, exc) from None


def query(session: OrgSession, soql: str) -> list[dict[str, Any]]:
    """All records of a SOQL query (following nextRecordsUrl), without the ``attributes`` noise."""
    result = _call(session, f"query {soql!r}", lambda sf: sf.query_all(soql))
    return [_strip(r) for r in result["records"]]


def _strip(record: dict) -> dict:
    return {k: _strip(v) if isinstance(v, dict) else v for k, v in record.items() if k != "attributes"}


def create(session: OrgSession, sobject: str, data: dict[str, Any]) -> str:
    """Create one record; returns its Id."""
    return _call(session, f"create {sobject}", lambda sf: getattr(sf, sobject).create(data))["id"]


def delete(session: OrgSession, sobject: str, record_id: str) -> None:
    _call(session, f"delete {sobject} {record_id}", lambda sf: getattr(sf, sobject).delete(record_id))


def quote(value: str) -> str:
    """A SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
