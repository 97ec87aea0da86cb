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


def query(session: OrgSession, soql: str) -> list[dict[str, Any]]:
    """All records of a SOQL query (following nextRecordsUrl), without the ``attributes`` noise."""
    from simple_salesforce.exceptions import SalesforceError as SfError

    try:
        result = session.sf.query_all(soql)
    except SfError as exc:
        raise _error(f"query {soql!r}", exc) from None
    return [_strip(r) for r in result["records"]]


def _strip(record: dict) -> dict:
    return {k: _strip(v) if isinstance(v, dict) else v for k, v in record.items() if k != "attributes"}


def create(session: OrgSession, sobject: str, data: dict[str, Any]) -> str:
    """Create one record; returns its Id."""
    from simple_salesforce.exceptions import SalesforceError as SfError

    try:
        result = getattr(session.sf, sobject).create(data)
    except SfError as exc:
        raise _error(f"create {sobject}", exc) from None
    return result["id"]


def delete(session: OrgSession, sobject: str, record_id: str) -> None:
    from simple_salesforce.exceptions import SalesforceError as SfError

    try:
        getattr(session.sf, sobject).delete(record_id)
    except SfError as exc:
        raise _error(f"delete {sobject} {record_id}", exc) from None


def quote(value: str) -> str:
    """A SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
