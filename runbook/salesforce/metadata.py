"""Metadata API CRUD through simple-salesforce's zeep client, as plain dicts and runbook errors.

simple-salesforce raises a bare ``Exception("\\nName: (CODE, message), ")`` on a failed save and
zeep a ``Fault`` on a SOAP fault; both become ``SalesforceError`` with Salesforce's code kept. An answer that
is no SOAP envelope (an outage page, a proxy's JSON) is named by its HTTP status before zeep reads it (zeep
would fail on it with ``AttributeError``), and Salesforce's rate limit by its code, ``REQUEST_LIMIT_EXCEEDED``,
however it came; a call that got no answer within the timeout (``runbook.salesforce.retry.http_timeout``) says how long
it waited and how often it asked.

simple-salesforce parses its bundled 1.5 MB Metadata WSDL for every ``Salesforce`` object (0.35 s of
CPU, a third of a kernel's work in a run, again after every re-login); here it is parsed once per
process (``metadata_wsdl``) and each session's client is built on that parse. A fleet's kernels are
forked from a process that has parsed it already (``runbook.run.kernelpool``), so they never parse it.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Any

import requests

from runbook.errors import NO_ANSWER, SalesforceError
from runbook.salesforce import OrgSession
from runbook.salesforce.retry import RetryingSession, no_answer, timeout_fix

# A SOAP fault INSUFFICIENT_ACCESS is the user's permissions, never the org's connected-app restriction (that
# one is a save result of createMetadata / deploy): the fix names the permissions [D Metadata API guide].
MISSING_PERMISSION_FIX = ("log in as a user with the \"Modify All Data\" (Metadata API), \"Customize Application\" "
                          "and \"Manage Connected Apps\" permissions, e.g. a System Administrator")
_SAVE_ERROR = re.compile(r"\((?P<code>[A-Z_]+), (?P<message>.*?)\), ", re.S)
RATE_LIMITED = "REQUEST_LIMIT_EXCEEDED"
# [D "API Request Limits and Allocations"] the org's rolling 24-hour API request allocation, or a
# concurrency limit, was reached
RATE_LIMIT_FIX = ("the org's API request limit was reached: wait and rerun (Setup > System Overview shows the "
                  "API requests used in the last 24 hours); the runbook reads the org first, so nothing is made twice")
_FIXES = {"INSUFFICIENT_ACCESS": MISSING_PERMISSION_FIX, RATE_LIMITED: RATE_LIMIT_FIX}


class NotSoapAnswer(Exception):
    """The org's HTTP answer to a Metadata API call was no SOAP envelope (an outage page, a proxy, REST's JSON)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.status = response.status_code
        self.content_type = response.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
        self.rate_limited = RATE_LIMITED.encode() in response.content[:4000]


def _soap_transport(http: requests.Session):
    """zeep's transport on ``http``, refusing an answer that is no SOAP envelope before zeep parses it.

    zeep reads such an answer with a recovering XML parser (simple-salesforce's ``strict=False``), gets
    nothing, and fails with ``AttributeError: 'NoneType' object has no attribute 'getroottree'``; a
    ``NotSoapAnswer`` keeps the status and whether it was Salesforce's rate limit. The timeout is the
    session's (``operation_timeout=None``).
    """
    return _soap_transport_class()(session=http, operation_timeout=None)


@functools.cache
def _soap_transport_class():
    from zeep.transports import Transport

    class SoapTransport(Transport):
        def post_xml(self, address, envelope, headers):  # zeep's documented hook around sending
            response = super().post_xml(address, envelope, headers)
            if b"Envelope" not in response.content[:1000]:
                raise NotSoapAnswer(response)
            return response

    return SoapTransport


_wsdl_lock = threading.Lock()
_wsdl: Any = None


def metadata_wsdl():
    """simple-salesforce's bundled Metadata WSDL as a parsed zeep ``Document``, parsed once per process.

    Parsed with the settings simple-salesforce gives it; a parsed document is only read afterwards
    (each client binds its own service and transport to it), so clients and threads share it.
    """
    global _wsdl
    with _wsdl_lock:
        if _wsdl is None:
            import simple_salesforce.metadata
            from zeep.transports import Transport
            from zeep.wsdl import Document

            path = Path(simple_salesforce.metadata.__file__).parent / "metadata.wsdl"
            _wsdl = Document(path.absolute().as_uri(), Transport(), settings=_zeep_settings())
        return _wsdl


def _zeep_settings():
    from zeep import Settings

    return Settings(strict=False, xsd_ignore_sequence_order=True)  # as simple_salesforce.metadata has them


def metadata_client(session: OrgSession):
    """simple-salesforce's Metadata client for the session, on the shared WSDL parse and a retrying transport.

    zeep would build its own requests.Session; it sends through the REST calls' session instead (a
    ``RetryingSession``: the same safe-retry rules, and one connection to the org for both), with the
    same timeout: zeep passes ``timeout=None`` (no ``operation_timeout``), which the session replaces by
    ``runbook.salesforce.retry.http_timeout()`` at each call.
    """
    sf = session.sf
    if sf._mdapi is None:
        sf._mdapi = _metadata_client(sf)
    return sf._mdapi


def _metadata_client(sf):
    """What ``sf.mdapi`` builds (simple-salesforce 1.12's ``SfdcMetadataApi.__init__``), minus the WSDL parse."""
    from simple_salesforce.metadata import SfdcMetadataApi
    from zeep import Client

    mdapi = SfdcMetadataApi.__new__(SfdcMetadataApi)
    mdapi.session, mdapi._session_id, mdapi._instance = sf.session, sf.session_id, sf.sf_instance
    mdapi.metadata_url, mdapi.headers, mdapi._api_version = sf.metadata_url, sf.headers, sf.sf_version
    mdapi._deploy_zip = None
    http = sf.session if isinstance(sf.session, RetryingSession) else RetryingSession()
    user_agent = http.headers.get("User-Agent")
    transport = _soap_transport(http)
    if user_agent is not None:  # zeep sets its own on the session it is given: the REST calls keep theirs
        http.headers["User-Agent"] = user_agent
    mdapi._client = Client(metadata_wsdl(), transport=transport, settings=_zeep_settings())
    mdapi._service = mdapi._client.create_service("{http://soap.sforce.com/2006/04/metadata}MetadataBinding",
                                                  mdapi.metadata_url)
    mdapi._session_header = mdapi._client.get_element("ns0:SessionHeader")(sessionId=mdapi._session_id)
    return mdapi


def _target(session: OrgSession, metadata_type: str, method: str):
    """``mdapi.<type>.<method>``, or the API's own ``mdapi.<method>`` when no type is named (listMetadata)."""
    mdapi = metadata_client(session)
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
        if not fault.code:  # zeep's "Unknown fault occured": an outage page or a proxy, not Salesforce's fault
            raise no_answer_error(operation, "the org's answer was no Salesforce fault (an outage page?)") from None
        code = str(fault.code).removeprefix("sf:")
        said = str(fault.message).removeprefix(f"{code}: ").rstrip(".")  # the faultstring repeats the code
        raise SalesforceError(operation, code, said, _FIXES.get(code, "")) from None
    except NotSoapAnswer as answer:
        if answer.rate_limited:  # REST's 403 JSON shape, from a proxy or an emulator: still the rate limit
            raise SalesforceError(operation, RATE_LIMITED, f"the org answered HTTP {answer.status} with "
                                  f"{RATE_LIMITED}", RATE_LIMIT_FIX) from None
        raise no_answer_error(operation, f"the org answered HTTP {answer.status} ({answer.content_type}), not a SOAP "
                              "message: an outage page or a proxy") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise no_answer_error(operation, f"the org did not answer: {no_answer(exc)}",
                              timeout=isinstance(exc, requests.Timeout)) from None
    except SalesforceError:
        raise
    except Exception as exc:  # simple-salesforce's save-result failure, or a transport failure
        match = _SAVE_ERROR.search(str(exc))
        if not match:
            raise no_answer_error(operation, f"the org did not answer ({type(exc).__name__})") from None
        raise SalesforceError(operation, match["code"], match["message"]) from None


def no_answer_error(operation: str, what: str, *, timeout: bool = False) -> SalesforceError:
    """NO_ANSWER: the org's answer was lost or was not Salesforce's (``what`` says which), so a write may or may
    not have happened; ``timeout`` adds the setting that waits longer."""
    slow = f"; {timeout_fix()}" if timeout else ""
    return SalesforceError(operation, NO_ANSWER, what,
                           "check the org is up (status.salesforce.com) and rerun: the runbook reads the org first, "
                           f"so nothing is made twice{slow}")


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
    mdapi = metadata_client(session)
    query_type = mdapi._client.get_type("ns0:ListMetadataQuery")
    found: dict[str, list[str]] = {t: [] for t in metadata_types}
    listed = _call(session, f"listMetadata {', '.join(metadata_types)}", "", "list_metadata",
                   [query_type(type=t) for t in metadata_types]) or []
    for item in listed:
        found.setdefault(item.type, []).append(item.fullName)
    return found


def _build(session: OrgSession, metadata_type: str, data: dict):
    return getattr(metadata_client(session), metadata_type)(**data)


def create(session: OrgSession, metadata_type: str, data: dict) -> None:
    _call(session, f"createMetadata {metadata_type} {data['fullName']}", metadata_type, "create",
          [_build(session, metadata_type, data)])


def update(session: OrgSession, metadata_type: str, data: dict) -> None:
    _call(session, f"updateMetadata {metadata_type} {data['fullName']}", metadata_type, "update",
          [_build(session, metadata_type, data)])


def delete(session: OrgSession, metadata_type: str, full_name: str) -> None:
    _call(session, f"deleteMetadata {metadata_type} {full_name}", metadata_type, "delete", [full_name])
