"""The web server flow: ``/services/oauth2/authorize``'s checks and one-time codes, and the code grant.

The web server flow needs a person, as on Salesforce [D real-orgs-2026.md §4: a caller with no session
gets a login page, never a code]. ``/services/oauth2/authorize`` first checks the client and the
callback (errors on the org's own page), then what no login can fix (errors sent to the callback:
response type, PKCE method, a missing ``code_challenge`` when the app has ``isPkceRequired``). A caller
without a session cookie gets an HTML login form; ``login_hint`` only fills in its username. Posting the
right password sets an HttpOnly, Secure session cookie (kept by digest) and redirects to the callback
with a one-time code (valid 15 minutes, kept by digest); a wrong one shows the form again with
Salesforce's message. A later GET with the cookie gets a code at once, unless it asks ``prompt=login``.
The approval is recorded when the code is issued ([U] there is no "Allow Access?" page), so a
self-authorize app then also allows that user's JWT logins. The token endpoint's ``authorization_code``
grant checks the code, ``client_id``, ``redirect_uri``, the PKCE ``code_verifier`` (S256; Salesforce's
default when no method is sent; required when the app has ``isPkceRequired``) and ``client_secret``
unless the app has ``isConsumerSecretOptional``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from runbook.localorg.api import oauth_refresh
from runbook.localorg.api.oauth_grant import (
    OAuthError,
    check_access,
    check_client_secret,
    check_enabled,
    invalid,
    token_response,
)
from runbook.localorg.model import oauth_apps, web_logins
from runbook.localorg.model.components import OAuthApp
from runbook.localorg.model.context import OrgContext

AUTHORIZATION_CODE = "authorization_code"


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class AuthorizeRequest:
    """An authorize request whose client and callback are known, so errors can go back to the callback."""

    client_id: str
    redirect_uri: str
    app: OAuthApp
    settings: oauth_apps.WebSettings
    args: Mapping[str, str]

    def back(self, **params: str) -> str:
        """The callback URL with ``params`` and the client's ``state``."""
        state = {"state": self.args["state"]} if self.args.get("state") else {}
        separator = "&" if "?" in self.redirect_uri else "?"
        return f"{self.redirect_uri}{separator}{urlencode({**params, **state})}"


def authorize_request(ctx: OrgContext, args: Mapping[str, str]) -> AuthorizeRequest:
    """The checked client and callback of an authorize request; raises OAuthError when they are not trusted.

    These errors are shown on the org's own page, never sent to the callback: the redirect URL is not
    the app's, or the client is unknown (also while a new or changed app propagates).
    """
    client_id, redirect_uri = args.get("client_id") or "", args.get("redirect_uri") or ""
    app = oauth_apps.known_app(ctx, client_id)
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    check_enabled(app)
    settings = oauth_apps.web_settings(ctx, client_id)
    if redirect_uri not in settings.callbacks:
        raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
    return AuthorizeRequest(client_id, redirect_uri, app, settings, args)


def request_error(request: AuthorizeRequest) -> str | None:
    """The callback URL with the error for a request no login can fix, or None for a good request."""
    args = request.args
    if args.get("response_type") != "code":
        return request.back(error="unsupported_response_type", error_description="response type not supported")
    if args.get("code_challenge_method", "S256") != "S256":  # [U] the wording
        return request.back(error="invalid_request", error_description="code_challenge_method must be S256")
    if request.settings.pkce_required and not args.get("code_challenge"):
        # [D] real-orgs-2026.md §4; the wording [O] HappySoup.io#252, activepieces#15615
        return request.back(error="invalid_request", error_description="missing required code challenge")
    return None


def callback_with_code(ctx: OrgContext, request: AuthorizeRequest, user: dict[str, Any]) -> str:
    """The callback URL with a one-time code for ``user``, who has logged in and allowed the app.

    [U] There is no "Allow Access?" page: a logged-in user allows at once, and the approval is recorded
    (so a self-authorize app then also allows that user's JWT logins).
    """
    if request.app.admin_approved:
        try:
            check_access(ctx, request.app, user)
        except OAuthError as error:
            return request.back(error="access_denied", error_description=error.description)
    ctx.store.record_approval(request.app.entity_id, user["Id"])
    code = web_logins.issue_code(ctx, client_id=request.client_id, redirect_uri=request.redirect_uri,
                                 user_id=user["Id"], challenge=request.args.get("code_challenge") or "",
                                 scope=request.args.get("scope"))
    return request.back(code=code)


def _redeemed_code(ctx: OrgContext, form: Mapping[str, str]) -> tuple[OAuthApp, dict[str, Any], str | None]:
    """The app, user and requested scope an authorization code was issued for; the code is spent either way."""
    issued = web_logins.spend_code(ctx, form.get("code") or "")
    if issued is None:
        raise invalid("invalid authorization code")
    client_id = form.get("client_id") or ""
    app = oauth_apps.known_app(ctx, client_id)
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    check_enabled(app)
    if client_id != issued["client_id"]:
        raise invalid("invalid authorization code")
    if (form.get("redirect_uri") or "") != issued["redirect_uri"]:
        raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
    settings = oauth_apps.web_settings(ctx, client_id)
    check_client_secret(form.get("client_secret") or "", settings.secret, required=not settings.secret_optional)
    # A challenge sent is always checked; an app requiring PKCE also refuses a code issued without one
    # (it was changed after the code was issued). [O] the wording: salesforce.stackexchange.com/q/330168
    if (issued["challenge"] or settings.pkce_required) and not hmac.compare_digest(
            _challenge(form.get("code_verifier") or ""), issued["challenge"]):
        raise invalid("invalid code verifier")
    user = ctx.store.get("User", issued["user_id"])
    if user is None or not user["IsActive"]:
        raise invalid("inactive user")
    return app, user, issued.get("scope")


def _granted_scopes(app: OAuthApp, requested: str | None) -> str:
    """The scopes a code exchange grants: those asked for that the app has; all the app's when none asked.

    [D] a request's scopes are a subset of the app's; [U] one naming none of the app's gets the app's.
    """
    if not (requested or "").strip():
        return " ".join(app.scopes)
    asked = {oauth_refresh.REFRESH_TOKEN if scope == "offline_access" else scope for scope in (requested or "").split()}
    return " ".join([scope for scope in app.scopes if scope in asked] or app.scopes)


def grant(ctx: OrgContext, form: Mapping[str, str]) -> dict[str, Any]:
    """The authorization code exchange: a session, and a refresh token when the app and the request allow one."""
    app, user, requested = _redeemed_code(ctx, form)
    scopes = _granted_scopes(app, requested)
    if oauth_refresh.REFRESH_TOKEN not in scopes.split():
        return token_response(ctx, app, user, kind="web", scopes=scopes)
    grant_id = secrets.token_hex(16)
    body = token_response(ctx, app, user, kind="web", scopes=scopes, grant_id=grant_id)
    body["refresh_token"] = oauth_refresh.new_refresh_token(ctx, grant_id=grant_id, user_id=user["Id"], app=app,
                                                            scopes=scopes, granted_at=ctx.now())
    return body
