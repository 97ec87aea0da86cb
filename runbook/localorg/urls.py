"""Every emulated endpoint in one werkzeug ``Map``, and the WSGI app of one org that routes each request through it.

A rule's endpoint names its handler in ``api`` (``HANDLERS``); the values it matched (``version``, ``name``,
``record_id``, …) are the handler's keyword arguments. Paths are matched with or without a trailing slash
(simple-salesforce adds one, the Salesforce CLI does not), and the data API takes slashes doubled after the
version as one, as it took them before it had rules. A path no rule matches answers REST's NOT_FOUND, 404.

Every request is written to the call log with the operation its handler named. A body over the server's
``MAX_BODY_BYTES`` (32 MiB) is refused with 413 before it is read, in the API's own shape (``api.errors``); no
bad input answers werkzeug's HTML 500 page.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug import Request, Response
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import BaseConverter, Map, Rule

from runbook.localorg.api import composite, connect_rest, dev_hub, errors, oauth, rest, soap
from runbook.localorg.api.handler import Call, Handler
from runbook.localorg.faults import Injection
from runbook.localorg.model.context import OrgContext
from runbook.localorg.server import MAX_BODY_BYTES, hold

log = logging.getLogger(__name__)


class _Version(BaseConverter):
    """An API version as the paths write it: ``62.0``."""

    regex = r"\d{2}\.\d"


class _Segment(BaseConverter):
    """One path segment, possibly empty (``sobjects//User`` names the sObject ``""``, which does not exist)."""

    regex = r"[^/]*"
    part_isolating = True


class _Word(BaseConverter):
    """Letters, digits and underscores: an id of an identity URL."""

    regex = r"\w+"


class _Tail(BaseConverter):
    """The rest of the path, slashes and all; rules with one yield to every more specific rule."""

    regex = r".*"
    part_isolating = False
    weight = 200


class _DevHubObject(BaseConverter):
    """ScratchOrgInfo or ActiveScratchOrg in any letter case: their rules go before the other sObjects'."""

    regex = r"(?i:ScratchOrgInfo|ActiveScratchOrg)"
    weight = 50


DATA = "/services/data/v<version:version>"
URLS = Map([
    # OAuth 2.0 and identity (api/oauth.py)
    Rule("/services/oauth2/token", endpoint="oauth.token"),
    Rule("/services/oauth2/authorize", endpoint="oauth.authorize"),
    Rule("/services/oauth2/revoke", endpoint="oauth.revoke"),
    Rule("/services/oauth2/userinfo", endpoint="oauth.userinfo"),
    Rule("/id/<word:org_id>/<word:user_id>", endpoint="oauth.identity"),
    # SOAP: partner login and the Metadata API (api/soap.py); what follows the version is not read
    Rule("/services/Soap/u/<version:version>", endpoint="soap.partner"),
    Rule("/services/Soap/u/<version:version>/<tail:tail>", endpoint="soap.partner"),
    Rule("/services/Soap/m/<version:version>", endpoint="soap.metadata"),
    Rule("/services/Soap/m/<version:version>/<tail:tail>", endpoint="soap.metadata"),
    # the REST data API (api/rest.py)
    Rule("/services/data", endpoint="rest.versions"),
    Rule(DATA, endpoint="rest.resources"),
    Rule(f"{DATA}/query", endpoint="rest.query", defaults={"resource": "query"}),
    Rule(f"{DATA}/queryAll", endpoint="rest.query", defaults={"resource": "queryAll"}),
    Rule(f"{DATA}/tooling/query", endpoint="rest.query", defaults={"resource": "tooling/query"}),
    Rule(f"{DATA}/sobjects", endpoint="rest.describe_global"),
    Rule(f"{DATA}/sobjects/<name>", endpoint="rest.sobject"),
    Rule(f"{DATA}/sobjects/<name>/describe", endpoint="rest.describe"),
    Rule(f"{DATA}/sobjects/<name>/<record_id>", endpoint="rest.record"),
    Rule(f"{DATA}/sobjects/<name>/<tail:tail>", endpoint="rest.beyond_record"),
    Rule(f"{DATA}/composite", endpoint="rest.composite"),  # api/composite.py
    # the Dev Hub's objects and allocations (api/dev_hub.py)
    Rule(f"{DATA}/limits", endpoint="dev_hub.limits"),
    Rule(f"{DATA}/sobjects/<dev_hub_object:name>", endpoint="dev_hub.sobject"),
    Rule(f"{DATA}/sobjects/<dev_hub_object:name>/describe", endpoint="dev_hub.describe"),
    Rule(f"{DATA}/sobjects/<dev_hub_object:name>/<record_id>", endpoint="dev_hub.record"),
    Rule(f"{DATA}/sobjects/<dev_hub_object:name>/<tail:tail>", endpoint="dev_hub.beyond_record"),
    # Connect REST's OAuth credentials of External Client Apps (api/connect_rest.py)
    Rule(f"{DATA}/apps/oauth/usage", endpoint="connect.oauth_usage"),
    Rule(f"{DATA}/apps/oauth/credentials/<app_id>", endpoint="connect.oauth_credentials"),
    Rule(f"{DATA}/apps/oauth/credentials/<app_id>/<consumer_id>", endpoint="connect.oauth_consumer_credentials"),
    Rule(f"{DATA}/apps", endpoint="connect.unknown"),
    Rule(f"{DATA}/apps/<tail:tail>", endpoint="connect.unknown"),
    Rule(f"{DATA}/<tail:tail>", endpoint="rest.unknown"),
], converters={"default": _Segment, "version": _Version, "word": _Word, "tail": _Tail,
               "dev_hub_object": _DevHubObject},
    strict_slashes=False, merge_slashes=False, redirect_defaults=False)
_PATHS = URLS.bind("127.0.0.1")
_DATA_TAIL = re.compile(r"(/services/data/v\d{2}\.\d)/{2,}")


def _subrequest(ctx: OrgContext, request: Request, call: Call, version: str, path: str) -> Response:
    """A Composite subrequest to ``/services/data/v<version>/<path>``, served as that REST call would be."""
    return _dispatch(SUBREQUEST_HANDLERS, ctx, request, call, f"/services/data/v{version}/{path}")


# The data API's handlers, as a Composite subrequest reaches them.
_DATA_API: dict[str, Handler] = {
    "rest.resources": rest.resources, "rest.query": rest.query, "rest.describe_global": rest.describe_global,
    "rest.sobject": rest.sobject_resource, "rest.describe": rest.describe, "rest.record": rest.record,
    "rest.beyond_record": rest.beyond_record, "rest.unknown": rest.unknown,
    "rest.composite": functools.partial(composite.composite_resource, dispatch=_subrequest),
    "connect.oauth_usage": connect_rest.oauth_usage, "connect.oauth_credentials": connect_rest.oauth_credentials,
    "connect.oauth_consumer_credentials": connect_rest.oauth_consumer_credentials,
    "connect.unknown": connect_rest.unknown,
}
HANDLERS: dict[str, Handler] = {
    "oauth.token": oauth.token_endpoint, "oauth.authorize": oauth.authorize_endpoint,
    "oauth.revoke": oauth.revoke_endpoint, "oauth.userinfo": oauth.userinfo_endpoint,
    "oauth.identity": oauth.identity_endpoint,
    "soap.partner": soap.partner, "soap.metadata": soap.metadata_api,
    "rest.versions": rest.versions,
    **_DATA_API,
    "rest.query": dev_hub.query,  # a query of the Dev Hub's objects needs their Read permission
    "dev_hub.limits": dev_hub.limits_resource, "dev_hub.sobject": dev_hub.sobject_resource,
    "dev_hub.describe": dev_hub.describe, "dev_hub.record": dev_hub.record,
    "dev_hub.beyond_record": dev_hub.beyond_record,
}
# A Composite subrequest reaches the data API without the Dev Hub's rules: its /limits is an unknown resource and
# ScratchOrgInfo and ActiveScratchOrg are plain sObjects there, as they were before these rules (Salesforce
# presumably applies them inside a Composite too [U]).
SUBREQUEST_HANDLERS: dict[str, Handler] = {
    **_DATA_API, "dev_hub.limits": rest.unknown, "dev_hub.sobject": rest.sobject_resource,
    "dev_hub.describe": rest.describe, "dev_hub.record": rest.record, "dev_hub.beyond_record": rest.beyond_record,
}


def _dispatch(handlers: dict[str, Handler], ctx: OrgContext, request: Request, call: Call, path: str) -> Response:
    """The answer of the handler whose rule matches ``path``; NOT_FOUND when none does."""
    path = _DATA_TAIL.sub(r"\1/", path.rstrip("/"), count=1) or "/"
    try:
        endpoint, values = _PATHS.match(path)
    except NotFound:
        return rest.json_response(rest.NOT_FOUND, 404)
    handler = handlers.get(endpoint)
    if handler is None:  # a subrequest to an endpoint outside the data API
        return rest.json_response(rest.NOT_FOUND, 404)
    return handler(ctx, request, call, **values)


class _Request(Request):
    max_content_length = MAX_BODY_BYTES


def make_app(ctx: OrgContext, injection: Injection | None = None,
             ) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The WSGI application serving ``ctx``'s org, with ``injection``'s latency and faults applied."""
    injection = injection or Injection()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = _Request(environ)
        call = Call()
        try:
            injection.delay()
            fault = injection.plan.take(request.method, request.path, _body(request))
            if fault is not None and fault.kind == "timeout":
                hold(environ, fault.seconds)
            if fault is not None and not fault.after and fault.kind != "timeout":
                call.operation = f"fault.{fault.kind}"  # the org did nothing: the log names the fault
                response = errors.fault_response(fault.kind, request)
            else:
                response = _dispatch(HANDLERS, ctx, request, call, request.path)
                if fault is not None and fault.after and fault.kind != "timeout":
                    response = errors.fault_response(fault.kind, request)
        except RequestEntityTooLarge:  # a body over MAX_BODY_BYTES, refused before it is read
            call.operation = "too_large"
            response = errors.too_large(request, MAX_BODY_BYTES)
        except HTTPException as exc:
            response = exc.get_response(environ)
        except Exception:
            log.exception("local org: %s %s failed", request.method, request.path)
            response = errors.unexpected()
        ctx.store.log_call(request.method, request.path, call.operation, call.is_write, response.status_code)
        return response(environ, start_response)

    return app


def _body(request: Request) -> bytes:
    """The request body, read once and cached for the handler (only POSTs carry one here)."""
    return request.get_data(cache=True) if request.method in ("POST", "PATCH", "PUT") else b""
