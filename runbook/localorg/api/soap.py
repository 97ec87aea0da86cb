"""The SOAP endpoints: partner ``login`` (/services/Soap/u) and the Metadata API (/services/Soap/m).

Metadata calls are dispatched on the first element inside the SOAP Body, never on SOAPAction (zeep
sends ``""``) or the path tail (simple-salesforce posts deploys and retrieves to
``…/deployRequest/<id>``) [V]. The session comes from ``SessionHeader/sessionId`` or an
``Authorization: Bearer`` header. Both endpoints serve the API versions REST does (``rest.served``);
others get ``UNSUPPORTED_API_VERSION`` [D], and ``login`` is not there from 65.0 on [D].

``login`` locks a user out after ten wrong passwords in a row (``lockout``). A locked-out user gets the same
``INVALID_LOGIN`` fault as a wrong password, whose text names the lockout ("...; or user locked out.")
[O], even with the right password.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

from werkzeug import Request, Response

from runbook.localorg.api import deploy, rest
from runbook.localorg.api.handler import Call, bearer_token
from runbook.localorg.api.soapxml import (
    METADATA_NS,
    PARTNER_FAULT_NS,
    PARTNER_NS,
    SoapFault,
    api_fault,
    child,
    child_text,
    children,
    envelope,
    fault_body,
    leaf,
    namespace,
    node_xml,
    parse_envelope,
    to_node,
    type_attribute,
    xsi_type,
)
from runbook.localorg.model import credentials, lockout, metadata
from runbook.localorg.model.components import Problem
from runbook.localorg.model.context import OrgContext, Session
from runbook.localorg.model.metadata import SaveOutcome

LAST_LOGIN_VERSION = 64.0  # [D] "SOAP API login() not available in API version 65.0 onwards"
_WRITES = {"createMetadata", "updateMetadata", "upsertMetadata", "deleteMetadata"}
_INVALID_LOGIN = "Invalid username, password, security token; or user locked out."  # [V] simple-salesforce tests


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, content_type="text/xml; charset=utf-8")


def fault_response(fault: SoapFault) -> Response:
    return xml_response(fault_body(fault), fault.status)


def _check_version(version: str, fault_ns: str = METADATA_NS) -> None:
    """[D] a retired version answers 500 UNSUPPORTED_API_VERSION; [O] wording, from client reports."""
    if not rest.served(version):
        raise api_fault("UNSUPPORTED_API_VERSION", "Invalid Api version specified on URL", fault_ns=fault_ns)


def _no_operation(namespace: str, name: str) -> SoapFault:
    """[O] Salesforce's answer to an operation it does not have (its Axis wording)."""
    return SoapFault("soapenv:Client", f"No operation available for request {{{namespace}}}{name}, "
                                       "please check the WSDL for the service.")


# --- partner login --------------------------------------------------------------------------------

def post_only(call: Call) -> Response:
    """The answer to a SOAP endpoint asked with another method than POST [U]."""
    call.operation = "soap.unknown"
    return Response("SOAP endpoints accept POST only", status=405, content_type="text/plain")


def partner(ctx: OrgContext, request: Request, call: Call, version: str, tail: str = "") -> Response:
    """``login`` by username and password (the only partner call the local org answers); the path's ``tail``
    after the version (the org id) is not read."""
    if request.method != "POST":
        return post_only(call)
    try:
        soap = parse_envelope(request.get_data())
        call.operation = f"soap.{soap.name}"
        if soap.name != "login":
            raise _no_operation(PARTNER_NS, soap.name)
        _check_version(version, PARTNER_FAULT_NS)
        if float(version) > LAST_LOGIN_VERSION:  # [D] the refusal; [U] its wording (never INVALID_LOGIN)
            raise api_fault("UNSUPPORTED_API_VERSION", f"SOAP API login() is not available in API version "
                            f"{version}; use {LAST_LOGIN_VERSION} or earlier, or OAuth.",
                            fault_ns=PARTNER_FAULT_NS)
        return xml_response(envelope(_login(ctx, soap.operation, version), PARTNER_NS))
    except SoapFault as fault:
        return fault_response(fault)


def _invalid_login() -> SoapFault:
    return api_fault("INVALID_LOGIN", _INVALID_LOGIN, fault_ns=PARTNER_FAULT_NS, kind="LoginFault", prefixed=False)


def _login(ctx: OrgContext, operation: Element, version: str) -> str:
    username = child_text(operation, "username") or ""
    password_element = child(operation, "password")
    password = (password_element.text or "") if password_element is not None else ""  # spaces count
    users = ctx.store.find("User", Username=username) if username else []
    user = users[0] if users else None
    if user is None or not user["IsActive"] or lockout.locked_out(ctx, user["Id"]):
        raise _invalid_login()
    right = credentials.verify_password(password, ctx.store.password_hash(user["Id"]))
    lockout.count_login(ctx, user["Id"], succeeded=right)
    if not right:
        raise _invalid_login()
    token = ctx.open_session(user["Id"], app_id=None, scopes="api web full", kind="soap")
    org = ctx.store.get("Organization", ctx.org_id) or {}
    profile_id = user["ProfileId"]
    info = "".join(leaf(name, value) for name, value in (
        ("accessibilityMode", False), ("chatterExternal", False), ("currencySymbol", "$"),
        ("orgAttachmentFileSizeLimit", 5242880), ("orgDefaultCurrencyIsoCode", "USD"),
        ("orgDefaultCurrencyLocale", "en_US"), ("orgDisallowHtmlAttachments", False),
        ("orgHasPersonAccounts", False), ("organizationId", ctx.org_id), ("organizationMultiCurrency", False),
        ("organizationName", org.get("Name", "")), ("profileId", profile_id), ("roleId", None),
        ("sessionSecondsValid", ctx.session_seconds), ("userDefaultCurrencyIsoCode", None),
        ("userEmail", user["Email"]), ("userFullName", user["Name"]), ("userId", user["Id"]),
        ("userLanguage", "en_US"), ("userLocale", "en_US"), ("userName", user["Username"]),
        ("userTimeZone", "GMT"), ("userType", "Standard"), ("userUiSkin", "Theme3")))
    result = "".join((
        leaf("metadataServerUrl", f"{ctx.url}/services/Soap/m/{version}/{ctx.org_id15}"),
        leaf("passwordExpired", False), leaf("sandbox", bool(org.get("IsSandbox"))),
        leaf("serverUrl", f"{ctx.url}/services/Soap/u/{version}/{ctx.org_id15}"), leaf("sessionId", token),
        leaf("userId", user["Id"]), f"<userInfo>{info}</userInfo>"))
    return f"<loginResponse><result>{result}</result></loginResponse>"


# --- Metadata API ---------------------------------------------------------------------------------

def metadata_api(ctx: OrgContext, request: Request, call: Call, version: str, tail: str = "") -> Response:
    """A Metadata API call, named by the Body's first element, never by the path's ``tail`` (see above)."""
    if request.method != "POST":
        return post_only(call)
    try:
        soap = parse_envelope(request.get_data())
        call.operation = f"mdapi.{soap.name}"
        call.is_write = soap.name in _WRITES or soap.name == "deploy"
        _check_version(version)
        session = _session(ctx, soap.header, request)
        if soap.name == "deploy":
            result = deploy.start(ctx, soap.operation, session)
            call.is_write = not result.check_only
            return xml_response(envelope(result.xml, METADATA_NS))
        handler = _OPERATIONS.get(soap.name)
        if handler is None:
            raise _no_operation(METADATA_NS, soap.name)
        body = handler(ctx, soap.operation)
        return xml_response(envelope(f"<{soap.name}Response>{body}</{soap.name}Response>", METADATA_NS))
    except SoapFault as fault:
        return fault_response(fault)


def _session(ctx: OrgContext, header: Element | None, request: Request) -> Session:
    token = (child_text(child(header, "SessionHeader"), "sessionId")
             or bearer_token(request.headers.get("Authorization")))
    session = ctx.session(token)
    if session is None:  # [O] jsforce's recorded fault
        raise api_fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session")
    if not session.is_admin:  # [O] a captured real fault
        raise api_fault("INSUFFICIENT_ACCESS",
                        "use of the Metadata API requires a user with the ModifyAllData permission")
    return session


def _errors(problems: list[Problem]) -> str:
    out = []
    for problem in problems:
        fields = "".join(leaf("fields", name) for name in problem.fields)
        message, code = leaf("message", problem.message), leaf("statusCode", problem.status_code)
        out.append(f"<errors>{fields}{message}{code}</errors>")
    return "".join(out)


def _result(outcome: SaveOutcome, *, upsert: bool = False) -> str:
    created = leaf("created", outcome.created) if upsert else ""
    return (f"<result>{created}{_errors(outcome.problems)}{leaf('fullName', outcome.full_name)}"
            f"{leaf('success', outcome.success)}</result>")


def _check_fields(operation: Element) -> None:
    """A component whose type checks its fields (settings) and has one it does not know fails the whole call,
    as a request the parser cannot read [U: a soapenv:Client fault with the deploy's text, see ``settings``]."""
    for element in children(operation, "metadata"):
        found = metadata.type_named(xsi_type(element))
        first = next(iter(element), None)
        problem = found.check(to_node(element), namespace(first.tag if first is not None else element.tag)) \
            if found is not None and found.check else None
        if problem:
            raise SoapFault("soapenv:Client", problem)


def _save(mode: str):
    def handle(ctx: OrgContext, operation: Element) -> str:
        _check_fields(operation)
        results, saved = [], []
        for element in children(operation, "metadata"):
            type_name = xsi_type(element)
            outcome = metadata.save(ctx.store, type_name, to_node(element), mode)
            results.append(_result(outcome, upsert=mode == "upsert"))
            if outcome.success:
                saved.append((type_name, outcome.full_name))
        with ctx.store.transaction():
            metadata.after_saves(ctx.store, saved)
        return "".join(results)
    return handle


def _delete(ctx: OrgContext, operation: Element) -> str:
    type_name = child_text(operation, "type") or ""
    return "".join(_result(metadata.delete(ctx.store, type_name, (name.text or "").strip()))
                   for name in children(operation, "fullNames"))


def _read(ctx: OrgContext, operation: Element) -> str:
    type_name = child_text(operation, "type") or ""
    records = [node_xml("records", metadata.read(ctx.store, type_name, (name.text or "").strip()) or {},
                        type_attribute(type_name)) for name in children(operation, "fullNames")]
    return f"<result>{''.join(records)}</result>"


def _list(ctx: OrgContext, operation: Element) -> str:
    admin = ctx.admin()
    out = []
    for query in children(operation, "queries"):
        for properties in metadata.list_components(ctx.store, child_text(query, "type") or "", admin):
            fields = "".join(leaf(name, value) for name, value in properties.items())
            out.append(f"<result>{fields}</result>")
    return "".join(out)


_OPERATIONS: dict[str, Any] = {
    "createMetadata": _save("create"), "updateMetadata": _save("update"), "upsertMetadata": _save("upsert"),
    "deleteMetadata": _delete, "readMetadata": _read, "listMetadata": _list,
    "checkDeployStatus": deploy.check_status, "retrieve": deploy.retrieve,
    "checkRetrieveStatus": deploy.check_retrieve_status,
}
