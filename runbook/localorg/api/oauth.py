"""The OAuth 2.0 endpoints: token, authorize (the web server flow and its login page), revoke, identity and
userinfo.

The token endpoint takes three grants, each in its own module: the JWT bearer (``oauth_jwt``), the
authorization code of the web server flow (``oauth_code``, which also answers ``/services/oauth2/authorize``)
and the refresh token (``oauth_refresh``, which also answers ``/services/oauth2/revoke``). Refusals are
Salesforce's (``oauth_grant``).

With ``propagation_s`` set, a new or changed app is unknown (``invalid_client_id``) to every flow for
that long after its last save, as real orgs take 2–10 minutes [O wire facts §1.6].
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from werkzeug import Request, Response

from runbook.localorg.api import identity, login_page, oauth_code, oauth_jwt, oauth_refresh
from runbook.localorg.api.handler import Call, bearer_token
from runbook.localorg.api.oauth_grant import OAuthError
from runbook.localorg.model import web_logins
from runbook.localorg.model.context import OrgContext

MAX_TOKEN_REQUEST_BYTES = 64 * 1024  # [U] a token request is a few KB at most


def token(ctx: OrgContext, form: Mapping[str, str]) -> dict[str, Any]:
    """The token response for a form-encoded token request; raises OAuthError."""
    grant = form.get("grant_type")
    if grant == oauth_code.AUTHORIZATION_CODE:
        return oauth_code.grant(ctx, form)
    if grant == oauth_refresh.REFRESH_TOKEN:
        return oauth_refresh.grant(ctx, form)
    if grant != oauth_jwt.JWT_BEARER:
        raise OAuthError("unsupported_grant_type", "grant type not supported")
    return oauth_jwt.grant(ctx, form)


def _json(body: Any, status: int = 200) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json;charset=UTF-8")
    response.headers["Cache-Control"] = "no-cache,must-revalidate,max-age=0,no-store,private"
    return response


def token_endpoint(ctx: OrgContext, request: Request, call: Call) -> Response:
    """``POST /services/oauth2/token`` (form-encoded; the Salesforce CLI sends it chunked)."""
    call.operation = "oauth.token"
    if request.method != "POST":
        return _json({"error": "invalid_request", "error_description": "must use HTTP POST"}, 400)
    if len(request.get_data(cache=True)) > MAX_TOKEN_REQUEST_BYTES:  # read already (the server caps it); not parsed
        return _json({"error": "invalid_request", "error_description": "request too large"}, 413)  # [U]
    try:
        return _json(token(ctx, request.form))
    except OAuthError as error:
        return _json(error.body(), 400)


def revoke_endpoint(ctx: OrgContext, request: Request, call: Call) -> Response:
    """``/services/oauth2/revoke``: POST ``token=`` (form-encoded) or GET ``?token=``; 200 with no body."""
    call.operation = "oauth.revoke"
    if request.method not in ("GET", "POST"):
        return _form_error(OAuthError("invalid_request", "must use HTTP POST or GET"))
    source = request.form if request.method == "POST" else request.args
    try:
        oauth_refresh.revoke(ctx, (source.get("token") or "").strip())
    except OAuthError as error:
        return _form_error(error)
    return Response("", status=200, headers={"Cache-Control": "no-store"})


def _form_error(error: OAuthError) -> Response:
    """A revoke refusal: HTTP 400, form-encoded ([O] forrest#213; [V] jsforce parses it as a query string)."""
    return Response(urlencode(error.body()), status=400, content_type="application/x-www-form-urlencoded",
                    headers={"Cache-Control": "no-store"})


def authorize_endpoint(ctx: OrgContext, request: Request, call: Call) -> Response:
    """``/services/oauth2/authorize``: the login page, or a 302 to the callback with a code or an error.

    A GET with a live session cookie (and no ``prompt=login``) goes straight to the code; any other GET
    gets the login form, which POSTs the username and password back here.
    """
    call.operation = "oauth.authorize"
    try:
        authorize = oauth_code.authorize_request(ctx, request.args)
    except OAuthError as error:  # Salesforce shows these on its own page: the callback is not trusted
        return Response(f"error={error.error}&error_description={error.description}", status=400,
                        content_type="text/plain")
    refused = oauth_code.request_error(authorize)
    if refused is not None:
        return _redirect(refused)
    action = f"{request.path}?{request.query_string.decode('latin-1')}"
    if request.method == "POST":
        return _submitted_login(ctx, request, authorize, action)
    reauthenticate = "login" in (request.args.get("prompt") or "").split()  # [D] prompt=login
    user = None if reauthenticate else web_logins.browser_user(ctx, request.cookies.get(login_page.SESSION_COOKIE))
    if user is None:
        return _page(login_page.login_form(action, username=request.args.get("login_hint") or ""))
    return _redirect(oauth_code.callback_with_code(ctx, authorize, user))


def _submitted_login(ctx: OrgContext, request: Request, authorize: oauth_code.AuthorizeRequest,
                     action: str) -> Response:
    """The posted login form: the form again with the refusal, or the code redirect with a session cookie."""
    username = request.form.get("username") or ""
    user = ctx.authenticate(username, request.form.get("pw") or "")
    if user is None:
        return _page(login_page.login_form(action, username=username, error=login_page.LOGIN_REFUSED))
    response = _redirect(oauth_code.callback_with_code(ctx, authorize, user))
    # [U] Salesforce's own cookie attributes are not documented; these are what a login cookie should be.
    response.set_cookie(login_page.SESSION_COOKIE, web_logins.open_browser_session(ctx, user["Id"]), path="/",
                        secure=True, httponly=True, samesite="Lax")
    return response


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _page(body: str) -> Response:
    return Response(body, status=200, content_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


def _bad_token() -> Response:
    """Unverified choice: the identity endpoints' refusal of a bad token (Salesforce answers plain text)."""
    return Response("Bad_OAuth_Token", status=403, content_type="text/plain")


def userinfo_endpoint(ctx: OrgContext, request: Request, call: Call) -> Response:
    call.operation = "oauth.userinfo"
    session = ctx.session(bearer_token(request.headers.get("Authorization")))
    return _json(identity.userinfo(ctx, session)) if session else _bad_token()


def identity_endpoint(ctx: OrgContext, request: Request, call: Call, org_id: str, user_id: str) -> Response:
    call.operation = "oauth.identity"
    session = ctx.session(bearer_token(request.headers.get("Authorization")))
    if session is None:
        return _bad_token()
    user = identity.identity_user(ctx, org_id, user_id)
    if user is None:
        return Response("Bad_Id", status=404, content_type="text/plain")
    body = identity.identity(ctx, user)
    version = request.args.get("version", "")
    if version:  # Salesforce fills the urls' {version} when asked to
        version = version.removeprefix("v")
        body["urls"] = {name: url.replace("{version}", version) for name, url in body["urls"].items()}
    return _json(body)


