"""Routing, and the WSGI app of one org: every request routed to its handler in ``api``, faults injected, logged.

Paths are matched with or without a trailing slash (simple-salesforce adds one, the Salesforce CLI does not).
Every request is written to the call log with the operation its handler named. A body over the server's
``MAX_BODY_BYTES`` (32 MiB) is refused with 413 before it is read, in the API's own shape (``api.errors``); no
bad input answers werkzeug's HTML 500 page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug import Request, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from runbook.localorg.api import dev_hub, errors, oauth, rest, soap
from runbook.localorg.api.handler import Call
from runbook.localorg.faults import Injection
from runbook.localorg.model.context import OrgContext
from runbook.localorg.server import MAX_BODY_BYTES, hold

log = logging.getLogger(__name__)

_VERSION = r"(?P<version>\d{2}\.\d)"
Handler = Callable[..., Response]
_ROUTES: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(r"/services/oauth2/token"), oauth.token_endpoint),
    (re.compile(r"/services/oauth2/authorize"), oauth.authorize_endpoint),
    (re.compile(r"/services/oauth2/revoke"), oauth.revoke_endpoint),
    (re.compile(r"/services/oauth2/userinfo"), oauth.userinfo_endpoint),
    (re.compile(r"/id/(?P<org_id>\w+)/(?P<user_id>\w+)"), oauth.identity_endpoint),
    (re.compile(rf"/services/Soap/u/{_VERSION}(?:/.*)?"), soap.partner),
    (re.compile(rf"/services/Soap/m/{_VERSION}(?:/.*)?"), lambda ctx, request, call, version:
        soap.metadata_api(ctx, request, call)),
    (re.compile(r"/services/data"), rest.versions),
    (re.compile(rf"/services/data/v{_VERSION}/(?P<tail>{dev_hub.PATHS})"), dev_hub.handle),
    (re.compile(rf"/services/data/v{_VERSION}(?:/(?P<rest>.*))?"),
     lambda ctx, request, call, version, tail:
        rest.handle(ctx, request, call, version, (tail or "").strip("/"))),
]


class _Request(Request):
    max_content_length = MAX_BODY_BYTES


def _route(ctx: OrgContext, request: Request, call: Call) -> Response:
    path = request.path.rstrip("/") or "/"
    for pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if path.startswith(errors.SOAP_PREFIX) and request.method != "POST":
                call.operation = "soap.unknown"
                return Response("SOAP endpoints accept POST only", status=405, content_type="text/plain")
            return handler(ctx, request, call, *match.groups())
    return rest.json_response(rest.NOT_FOUND, 404)


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
                response = _route(ctx, request, call)
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

