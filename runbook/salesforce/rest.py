"""REST data calls (SOQL query, sObject create/delete) with Salesforce's errors kept visible.

Several queries, or several creates, travel as one Composite request (one round trip; creates
all-or-none, later ones referring to earlier ones' Ids as ``@{ref.id}``): a phase's reads and
writes cost a call each, not a call per record.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from runbook.errors import SalesforceError
from runbook.salesforce import OrgSession

MAX_COMPOSITE_QUERIES = 5  # Salesforce: at most 5 query or sObject Collection subrequests per Composite


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


def query_many(session: OrgSession, soqls: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Several SOQL queries in one round trip (a Composite request); records by the caller's key.

    Salesforce caps a Composite request at 5 queries; a result with more pages is completed by
    following its ``nextRecordsUrl``. Queries ``prefetch`` asked earlier on this session are answered from
    there, once each, without a call.
    """
    if soqls and all(soql in session.prefetched for soql in soqls.values()):
        found = {key: session.prefetched[soql] for key, soql in soqls.items()}
        for soql in soqls.values():
            session.prefetched.pop(soql, None)
        return found
    if len(soqls) == 1:
        (key, soql), = soqls.items()
        return {key: query(session, soql)}
    if len(soqls) > MAX_COMPOSITE_QUERIES:
        raise ValueError(f"at most {MAX_COMPOSITE_QUERIES} queries travel in one Composite request")
    base = f"/services/data/v{session.api_version}"
    answers = _composite(session, "query " + ", ".join(soqls), False, [
        {"method": "GET", "url": f"{base}/query/?q={quote_plus(soql)}", "referenceId": key}
        for key, soql in soqls.items()])
    out = {}
    for key, body in answers.items():
        records = list(body["records"])
        while not body.get("done", True):
            body = _call(session, f"query {soqls[key]!r}",
                         lambda sf, url=body["nextRecordsUrl"]: sf.query_more(url, identifier_is_url=True))
            records += body["records"]
        out[key] = [_strip(r) for r in records]
    return out


def prefetch(session: OrgSession, soqls: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """``query_many`` now, its answers also kept on the session for the next ``query_many`` asking the same.

    The run's up-front org check asks, before phase 1, the lookups a later phase would make (in the same
    kernel, on the same session), so checking every name first costs no round trip more: the later phase
    gets the answers from here, once. The phases in between write no profile, permission set or user.
    """
    found = query_many(session, soqls)
    session.prefetched.update({soqls[key]: records for key, records in found.items()})
    return found


def create_many(session: OrgSession, records: list[tuple[str, str, dict[str, Any]]]) -> dict[str, str]:
    """Create ``(ref, sObject, fields)`` records in one all-or-none round trip; Ids by ``ref``.

    A field value ``@{ref.id}`` stands for the Id of a record created earlier in the same list.
    """
    if not records:
        return {}
    base = f"/services/data/v{session.api_version}"
    answers = _composite(session, "create " + ", ".join(sorted({s for _, s, _ in records})), True, [
        {"method": "POST", "url": f"{base}/sobjects/{sobject}/", "referenceId": ref, "body": fields}
        for ref, sobject, fields in records])
    return {ref: body["id"] for ref, body in answers.items()}


def _composite(session: OrgSession, operation: str, all_or_none: bool, requests: list[dict]) -> dict[str, Any]:
    """POST a Composite request; the subresponses' bodies by referenceId, or the first failure raised."""
    body = {"allOrNone": all_or_none, "compositeRequest": requests}
    answer = _call(session, operation, lambda sf: sf.restful("composite", method="POST", json=body))
    responses = answer["compositeResponse"]
    failed = [r for r in responses if r["httpStatusCode"] >= 300]
    # With allOrNone, the others of a failed request say PROCESSING_HALTED: the cause is elsewhere.
    failed.sort(key=lambda r: _first_error(r).get("errorCode") == "PROCESSING_HALTED")
    if failed:
        error = _first_error(failed[0])
        raise SalesforceError(f"{operation} ({failed[0]['referenceId']})", error.get("errorCode", "UNKNOWN"),
                              str(error.get("message", "")).strip())
    return {r["referenceId"]: r["body"] for r in responses}


def _first_error(response: dict) -> dict:
    body = response.get("body")
    return body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}


def _strip(record: dict) -> dict:
    return {k: _strip(v) if isinstance(v, dict) else v for k, v in record.items() if k != "attributes"}


def tooling_query(session: OrgSession, soql: str) -> list[dict[str, Any]]:
    """A Tooling API SOQL query's records: setup objects the data API does not query (ExternalClientApplication)."""
    result = _call(session, f"tooling query {soql!r}",
                   lambda sf: sf.toolingexecute(f"query/?q={quote_plus(soql)}", method="GET"))
    return [_strip(r) for r in result.get("records", [])]


def get(session: OrgSession, path: str, params: dict[str, str] | None = None) -> Any:
    """GET a REST resource under ``/services/data/vXX.X/`` (e.g. ``apps/oauth/usage``), parsed from JSON."""
    return _call(session, f"GET {path}", lambda sf: sf.restful(path, method="GET", params=params))


def create(session: OrgSession, sobject: str, data: dict[str, Any]) -> str:
    """Create one record; returns its Id."""
    return _call(session, f"create {sobject}", lambda sf: getattr(sf, sobject).create(data))["id"]


def delete(session: OrgSession, sobject: str, record_id: str) -> None:
    _call(session, f"delete {sobject} {record_id}", lambda sf: getattr(sf, sobject).delete(record_id))


def quote(value: str) -> str:
    """A SOQL string literal, quoted by simple-salesforce's ``format_soql`` (the escapes SOQL defines)."""
    from simple_salesforce.format import format_soql

    return format_soql("{}", value)


def quote_list(values) -> str:
    """A parenthesised list of SOQL string literals, for ``IN``: ``('a','b')``."""
    from simple_salesforce.format import format_soql

    return format_soql("{}", list(values))
