"""Metadata API CRUD through simple-salesforce's zeep client, as plain dicts and runbook errors.

simple-salesforce raises a bare ``Exception("\\nName: (CODE, message), ")`` on a failed save and
zeep a ``Fault`` on a SOAP fault; both become ``SalesforceError`` with Salesforce's code kept.
"""

from __future__ import annotations

import re
from typing import Any

from runbook.errors import SalesforceError
from runbook.org import OrgSession
from runbook.retry import RetryingSession

# A SOAP fault INSUFFICIENT_ACCESS is the user's permissions, never the org's connected-app restriction (that
# one is a save result of createMetadata / deploy): the fix names the permissions [D Metadata API guide].
MISSING_PERMISSION_FIX = ("log in as a user with the \"Modify All Data\" (Metadata API), \"Customize Application\" "
                          "and \"Manage Connected Apps\" permissions, e.g. a System Administrator")
_SAVE_ERROR = re.compile(r"\((?P<code>[A-Z_]+), (?P<message>.*?)\), ", re.S)


def _mdapi(session: OrgSession):
    """simple-salesforce's Metadata client, sending through the session's retrying transport.

    zeep builds its own requests.Session; swapping in ours (zeep's public ``transport.session``)
    gives Metadata calls the same timeout and safe-retry rules as REST calls.
    """
    mdapi = session.sf.mdapi
    transport = mdapi._client.transport
    if not isinstance(transport.session, RetryingSession):
        transport.session = RetryingSession()
    return mdapi


def _target(session: OrgSession, metadata_type: str, method: str):
    """``mdapi.<type>.<method>``, or the API's own ``mdapi.<method>`` when no type is named (listMetadata)."""
    mdapi = _mdapi(session)
    return getattr(getattr(mdapi, metadata_type) if metadata_type else mdapi, method)


def _call(session: OrgSession, operation: str, metadata_type: str, method: str, arg):
    """Call ``mdapi.<type>.<method>(arg)``; an expired session is renewed once and the call repeated."""
    import zeep.exceptions

    try:
        try:
            return _target(session, metadata_type, method)(arg)
        except zeep.exceptions.Fault as fault:
            if "INVALID_SESSION_ID" not in str(fault.code):
                raise
            session.reauthenticate()  # the org did nothing with an invalid session: repeating is safe
            return _target(session, metadata_type, method)(arg)
    except zeep.exceptions.Fault as fault:
        code = str(fault.code or "SOAP_FAULT").removeprefix("sf:")
        fix = MISSING_PERMISSION_FIX if code == "INSUFFICIENT_ACCESS" else ""
        raise SalesforceError(operation, code, str(fault.message), fix) from None
    except SalesforceError:
        raise
    except Exception as exc:  # simple-salesforce's save-result failure
        match = _SAVE_ERROR.search(str(exc))
        if not match:
            raise
        raise SalesforceError(operation, match["code"], match["message"]) from None


def _plain(value: Any) -> Any:
    """zeep objects → dicts/lists, dropping empty (None) fields so diffs compare like with like."""
    from zeep.helpers import serialize_object

    data = serialize_object(value, dict)
    return _drop_none(data)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def read(session: OrgSession, metadata_type: str, full_name: str) -> dict | None:
    """The component as a dict, or None when the org has no component of that name."""
    result = _call(session, f"readMetadata {metadata_type} {full_name}", metadata_type, "read", [full_name])
    records = result if isinstance(result, list) else [result]
    for record in records:
        data = _plain(record) if record is not None else None
        if data and data.get("fullName") == full_name and len(data) > 1:
            return data
    return None


def list_names(session: OrgSession, metadata_types: list[str]) -> dict[str, list[str]]:
    """The full names of each type's components, in one listMetadata call (it takes up to 3 types)."""
    mdapi = _mdapi(session)
    query_type = mdapi._client.get_type("ns0:ListMetadataQuery")
    found: dict[str, list[str]] = {t: [] for t in metadata_types}
    listed = _call(session, f"listMetadata {', '.join(metadata_types)}", "", "list_metadata",
                   [query_type(type=t) for t in metadata_types]) or []
    for item in listed:
        found.setdefault(item.type, []).append(item.fullName)
    return found


def _build(session: OrgSession, metadata_type: str, data: dict):
    return getattr(_mdapi(session), metadata_type)(**data)


def create(session: OrgSession, metadata_type: str, data: dict) -> None:
    _call(session, f"createMetadata {metadata_type} {data['fullName']}", metadata_type, "create",
          [_build(session, metadata_type, data)])


def update(session: OrgSession, metadata_type: str, data: dict) -> None:
    _call(session, f"updateMetadata {metadata_type} {data['fullName']}", metadata_type, "update",
          [_build(session, metadata_type, data)])


def delete(session: OrgSession, metadata_type: str, full_name: str) -> None:
    _call(session, f"deleteMetadata {metadata_type} {full_name}", metadata_type, "delete", [full_name])
