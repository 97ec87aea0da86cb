"""The OAuth 2.0 endpoints: JWT bearer and web server (authorization code + PKCE) flows, identity, userinfo.

The token endpoint checks an assertion the way Salesforce does, in this order: well-formed RS256 JWT,
``iss`` is a consumer key, the signature verifies against the certificate uploaded to that app
(none uploaded, or cleared by a deploy without ``<certificate>``: "invalid assertion" [V systemprompt]),
the app is enabled (an External Client App and its OAuth plugin: ``APP_DISABLED``,
``OAUTH_PLUGIN_DISABLED``), ``aud``, ``exp``, ``sub``, then the app's permitted-users policy. Errors are Salesforce's
``{"error", "error_description"}`` pairs with HTTP 400.

Clients differ in what they send and all of it is accepted: ``exp`` as an int or a numeric string
(simple-salesforce), in milliseconds (the Salesforce CLI sends ``Date.now() + 300``, so any value over
10^11 is read as ms) or far in the future; ``aud`` as login/test.salesforce.com or the org's own URL,
with or without a trailing slash (the CLI's first attempt uses its ``--instance-url``).

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

Refresh tokens ([D] help "OAuth 2.0 Refresh Token Flow for Renewed Sessions"): the code exchange returns a
``refresh_token`` when the app has the RefreshToken scope and the authorize request asked for it
(``refresh_token`` or ``offline_access`` in ``scope``, or no ``scope`` at all, which asks for every scope the
app has [D Mobile SDK "Scope Parameter Values"]). ``grant_type=refresh_token`` takes ``refresh_token``,
``client_id`` and ``client_secret`` unless the app clears ``isSecretRequiredForRefreshToken`` (default
true [D Metadata API ConnectedAppOauthConfig]; ExtlClntAppGlobalOauthSettings has the same field). It
answers a new access token and no refresh token, unless ``isRefreshTokenRotationEnabled``: then a new
refresh token too, and the one sent is spent [D]; a spent one sent again revokes the whole grant, since
someone else may hold its successor [V sfdx-core AuthInfo.refreshWithTokenRotationLock]. The app's
refresh token policy is enforced on the org's clock at each use, as the app has it then: ConnectedApp
``oauthPolicy.refreshTokenPolicy`` (``infinite``, ``zero``, ``specific_lifetime:N:UNIT``,
``specific_inactivity:N:UNIT`` [D]) or the External Client App's OAuth policies
(``refreshTokenPolicyType``/``Period``/``Unit`` [D]). ``zero`` refuses the token at its first use while the
session it came with lasts ([D] "Manage OAuth Access Policies"; [U] that the token is issued at all);
a lifetime runs from the user's authorization, not from a rotation ([U]); inactivity counts refresh
grants only ([U]); a month is 30 days ([U]). Refusals are Salesforce's bodies: an unknown, expired,
revoked or foreign token ``invalid_grant``/"expired access/refresh token" ([D] help "OAuth 2.0 Flow
Errors"; [O] restforce#81, jsforce#1656), an unknown client ``invalid_client_id``, a missing or wrong
secret ``invalid_client``/"invalid client credentials" ([O] restforce#338; [U] for a missing one).
Refresh tokens are kept by digest only, each in a grant that revocation ends with its access tokens.

``/services/oauth2/revoke`` (POST ``token=`` form-encoded, or GET ``?token=`` [D] Mobile SDK "Revoking OAuth
Tokens", developer blog 2011-11 "blind GET") revokes a refresh token with every access token of its grant,
or one access token; HTTP 200 with an empty body. Refusals are HTTP 400 form-encoded, as jsforce parses them
[V jsforce OAuth2.revokeToken]: ``invalid_token`` for a token of a known shape the org does not hold ([D]
the code; [U] "invalid token"), ``unsupported_token_type``/"this token type is not supported" for
anything else ([O] forrest#213).

With ``propagation_s`` set, a new or changed app is unknown (``invalid_client_id``) to every flow for
that long after its last save, as real orgs take 2–10 minutes [O wire facts §1.6].
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from werkzeug import Request, Response

from runbook.localorg.api.handler import Call, bearer_token
from runbook.localorg.model import credentials, ids, oauth_apps, web_logins
from runbook.localorg.model.components import OAuthApp, load_certificate
from runbook.localorg.model.context import OrgContext, Session
from runbook.localorg.model.external_client_apps import permission_set_ids

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
EXPIRED_REFRESH = "expired access/refresh token"  # [D] OAuth 2.0 Flow Errors; [O] restforce#81
# [O] Salesforce refresh tokens start with 5Aep861 (jsforce and restforce issue transcripts); the rest is
# what sfdx-core's auth URL pattern takes ([a-zA-Z0-9._-], AuthInfo.parseSfdxAuthUrl [V]).
REFRESH_TOKEN_PREFIX = "5Aep861"
CLOCK_SKEW_SECONDS = 180
_MILLISECONDS_ABOVE = 10**11
_LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
_SIGNATURE_ONLY = {f"verify_{claim}": False for claim in ("exp", "aud", "iat", "nbf", "iss", "sub", "jti")}
# Unverified choice: Salesforce answers an unknown ``sub`` with this text too (the real reply for a
# username that does not exist is not documented; "user hasn't approved this consumer" is what
# clients see for most user-side problems).
UNKNOWN_USER = "user hasn't approved this consumer"
# [O] The session cookie of a Salesforce UI login is ``sid``; the refusal is the login page's own text.
SESSION_COOKIE = "sid"
LOGIN_REFUSED = ("Please check your username and password. If you still can't log in, contact your "
                 "Salesforce administrator.")
# [V Electivus] disabling an External Client App (ExtlClntAppConfigurablePolicies.isEnabled=false) or its
# OAuth plugin (isOauthPluginEnabled=false) blocks new logins. [O n8n#21589] a connected app blocked by its
# admin answers OAUTH_APP_BLOCKED "this app is blocked by admin"; [U] that a disabled ECA answers the same,
# and the text for a disabled OAuth plugin (one text per cause, so a tool can name the fix). Never
# invalid_client, which clients read as a wrong consumer secret.
APP_BLOCKED = "OAUTH_APP_BLOCKED"
APP_DISABLED = "this app is blocked by admin"
OAUTH_PLUGIN_DISABLED = "OAuth is disabled for this external client app"


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _invalid(description: str = "invalid assertion") -> OAuthError:
    return OAuthError("invalid_grant", description)


def token(ctx: OrgContext, form: Mapping[str, str]) -> dict[str, Any]:
    """The token response for a form-encoded token request; raises OAuthError."""
    grant = form.get("grant_type")
    if grant == AUTHORIZATION_CODE:
        return _code_grant(ctx, form)
    if grant == REFRESH_TOKEN:
        return _refresh_grant(ctx, form)
    if grant != JWT_BEARER:
        raise OAuthError("unsupported_grant_type", "grant type not supported")
    claims, app = _verified_assertion(ctx, form.get("assertion") or "")
    _check_enabled(app)
    _check_audience(ctx, claims.get("aud"))
    _check_expiry(claims.get("exp"))
    user = _check_user(ctx, claims.get("sub"))
    _check_access(ctx, app, user)
    return _token_response(ctx, app, user, kind="jwt")


def _token_response(ctx: OrgContext, app: OAuthApp, user: dict[str, Any], *, kind: str, scopes: str = "",
                    grant_id: str | None = None) -> dict[str, Any]:
    """A new session's answer: with the app's scopes unless ``scopes`` names the granted ones."""
    scopes = scopes or " ".join(app.scopes)
    access_token = ctx.open_session(user["Id"], app_id=app.entity_id, scopes=scopes, kind=kind, grant_id=grant_id)
    id_url = f"{ctx.url}/id/{ctx.org_id}/{user['Id']}"
    issued_at = str(int(ctx.now() * 1000))
    return {"access_token": access_token, "scope": scopes, "instance_url": ctx.url, "id": id_url,
            "token_type": "Bearer", "issued_at": issued_at,
            "signature": credentials.sign(ctx.store.get_setting("org_secret"), id_url, issued_at)}


# [U] Salesforce's limits: a JWT bearer assertion is ~1 KB (RS256 signature, a few claims; an x5c chain a few KB)
MAX_ASSERTION_CHARS = 16 * 1024
MAX_TOKEN_REQUEST_BYTES = 64 * 1024


def _verified_assertion(ctx: OrgContext, assertion: str) -> tuple[dict[str, Any], OAuthApp]:
    if len(assertion) > MAX_ASSERTION_CHARS:  # before any decoding: a 10 MB one took 2 s to decode and verify
        raise _invalid()
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _invalid() from None
    if header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise _invalid()
    issuer = claims.get("iss")
    app = oauth_apps.known_app(ctx, issuer) if isinstance(issuer, str) else None
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    try:
        public_key = load_certificate(app.certificate or "").public_key()
    except ValueError:
        raise _invalid() from None  # no certificate uploaded: nothing can verify the signature
    if not isinstance(public_key, RSAPublicKey):
        raise _invalid()
    try:
        # Only the signature: the claims are checked below, with Salesforce's rules rather than PyJWT's.
        jwt.decode(assertion, key=public_key, algorithms=["RS256"], options=_SIGNATURE_ONLY)
    except jwt.PyJWTError:
        raise _invalid() from None
    return claims, app


def _check_enabled(app: OAuthApp) -> None:
    """Refuse an External Client App that is disabled, or whose OAuth plugin is (every flow checks this)."""
    if not app.enabled:
        raise OAuthError(APP_BLOCKED, APP_DISABLED)
    if not app.oauth_plugin_enabled:
        raise OAuthError(APP_BLOCKED, OAUTH_PLUGIN_DISABLED)


def _check_audience(ctx: OrgContext, audience: Any) -> None:
    allowed = {*_LOGIN_AUDIENCES, ctx.url, ctx.url.replace("127.0.0.1", "localhost")}
    values = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(value, str) and value.rstrip("/") in allowed for value in values):
        raise _invalid("audience is invalid")


def _check_expiry(exp: Any) -> None:
    """``exp`` must be a finite number (or a numeric string) of seconds, or milliseconds, since 1970.

    "nan" and "inf" parse as floats but are no time: NaN compares false with every time (it never
    expired) and inf never comes. Both, and an integer too large for a float, are "invalid assertion" [U].
    """
    from math import isfinite

    if isinstance(exp, str):
        try:
            exp = float(exp.strip())
        except ValueError:
            raise _invalid() from None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise _invalid()
    try:
        exp = float(exp)
    except OverflowError:  # an int past float's range
        raise _invalid() from None
    if not isfinite(exp):
        raise _invalid()
    seconds = exp / 1000 if exp > _MILLISECONDS_ABOVE else exp
    if seconds < time.time() - CLOCK_SKEW_SECONDS:
        raise _invalid("expired authorization code")


def _check_user(ctx: OrgContext, subject: Any) -> dict[str, Any]:
    users = ctx.store.find("User", Username=subject) if isinstance(subject, str) and subject else []
    if not users:
        raise _invalid(UNKNOWN_USER)
    if not users[0]["IsActive"]:  # [O] restforce#303: "invalid_grant: inactive user"
        raise _invalid("inactive user")
    return users[0]


def _check_access(ctx: OrgContext, app: OAuthApp, user: dict[str, Any]) -> None:
    """Admin-approved apps need a grant to one of the user's permission sets; others a prior approval."""
    if not app.admin_approved:
        if not ctx.store.has_approval(app.entity_id, user["Id"]):
            raise _invalid("user hasn't approved this consumer")
        return
    held = ctx.store.permission_set_ids_of(user["Id"])
    granted = {row["ParentId"] for row in ctx.store.find("SetupEntityAccess", SetupEntityId=app.entity_id)}
    granted |= permission_set_ids(ctx.store, app.permission_sets)
    profile = ctx.store.get("Profile", user["ProfileId"]) if user.get("ProfileId") else None
    by_profile = bool(profile) and profile["Name"].lower() in {p.lower() for p in app.profiles}
    if not (held & granted or by_profile):
        raise OAuthError("invalid_app_access", "user is not admin approved to access this app")


# --- apps as OAuth sees them ----------------------------------------------------------------------


# --- web server flow -----------------------------------------------------------------------------


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


def _authorize_request(ctx: OrgContext, args: Mapping[str, str]) -> AuthorizeRequest:
    """The checked client and callback of an authorize request; raises OAuthError when they are not trusted.

    These errors are shown on the org's own page, never sent to the callback: the redirect URL is not
    the app's, or the client is unknown (also while a new or changed app propagates).
    """
    client_id, redirect_uri = args.get("client_id") or "", args.get("redirect_uri") or ""
    app = oauth_apps.known_app(ctx, client_id)
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    _check_enabled(app)
    settings = oauth_apps.web_settings(ctx, client_id)
    if redirect_uri not in settings.callbacks:
        raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
    return AuthorizeRequest(client_id, redirect_uri, app, settings, args)


def _request_error(request: AuthorizeRequest) -> str | None:
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


def _issue_code(ctx: OrgContext, request: AuthorizeRequest, user: dict[str, Any]) -> str:
    """The callback URL with a one-time code for ``user``, who has logged in and allowed the app.

    [U] There is no "Allow Access?" page: a logged-in user allows at once, and the approval is recorded
    (so a self-authorize app then also allows that user's JWT logins).
    """
    if request.app.admin_approved:
        try:
            _check_access(ctx, request.app, user)
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
        raise _invalid("invalid authorization code")
    client_id = form.get("client_id") or ""
    app = oauth_apps.known_app(ctx, client_id)
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    _check_enabled(app)
    if client_id != issued["client_id"]:
        raise _invalid("invalid authorization code")
    if (form.get("redirect_uri") or "") != issued["redirect_uri"]:
        raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
    settings = oauth_apps.web_settings(ctx, client_id)
    _check_client_secret(form.get("client_secret") or "", settings.secret, required=not settings.secret_optional)
    # A challenge sent is always checked; an app requiring PKCE also refuses a code issued without one
    # (it was changed after the code was issued). [O] the wording: salesforce.stackexchange.com/q/330168
    if (issued["challenge"] or settings.pkce_required) and not hmac.compare_digest(
            _challenge(form.get("code_verifier") or ""), issued["challenge"]):
        raise _invalid("invalid code verifier")
    user = ctx.store.get("User", issued["user_id"])
    if user is None or not user["IsActive"]:
        raise _invalid("inactive user")
    return app, user, issued.get("scope")


def _check_client_secret(given: str, secret: str | None, *, required: bool) -> None:
    """A secret sent is always checked; none sent passes only where the app does not require one."""
    if (given or required) and not (secret and hmac.compare_digest(given.encode(), secret.encode())):
        raise OAuthError("invalid_client", "invalid client credentials")


# --- refresh tokens -------------------------------------------------------------------------------


def _granted_scopes(app: OAuthApp, requested: str | None) -> str:
    """The scopes a code exchange grants: those asked for that the app has; all the app's when none asked.

    [D] a request's scopes are a subset of the app's; [U] one naming none of the app's gets the app's.
    """
    if not (requested or "").strip():
        return " ".join(app.scopes)
    asked = {REFRESH_TOKEN if scope == "offline_access" else scope for scope in (requested or "").split()}
    return " ".join([scope for scope in app.scopes if scope in asked] or app.scopes)


def _new_refresh_token(ctx: OrgContext, *, grant_id: str, user_id: str, app: OAuthApp, scopes: str,
                       granted_at: float) -> str:
    """A new refresh token in ``grant_id``; only its digest is stored."""
    value = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(60).replace("-", ".")
    ctx.store.save_refresh_token(credentials.token_digest(value), grant_id=grant_id, user_id=user_id,
                                 app_id=app.entity_id, scopes=scopes, granted_at=granted_at, issued_at=ctx.now())
    return value


def _code_grant(ctx: OrgContext, form: Mapping[str, str]) -> dict[str, Any]:
    """The authorization code exchange: a session, and a refresh token when the app and the request allow one."""
    app, user, requested = _redeemed_code(ctx, form)
    scopes = _granted_scopes(app, requested)
    if REFRESH_TOKEN not in scopes.split():
        return _token_response(ctx, app, user, kind="web", scopes=scopes)
    grant_id = secrets.token_hex(16)
    body = _token_response(ctx, app, user, kind="web", scopes=scopes, grant_id=grant_id)
    body["refresh_token"] = _new_refresh_token(ctx, grant_id=grant_id, user_id=user["Id"], app=app, scopes=scopes,
                                               granted_at=ctx.now())
    return body


def _refresh_grant(ctx: OrgContext, form: Mapping[str, str]) -> dict[str, Any]:
    """``grant_type=refresh_token``: a new session for the token's user (and a new token under rotation)."""
    client_id = form.get("client_id") or ""
    app = oauth_apps.known_app(ctx, client_id)
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    _check_enabled(app)
    settings = oauth_apps.refresh_settings(ctx, client_id)
    _check_client_secret(form.get("client_secret") or "", settings.secret, required=settings.secret_required)
    digest = credentials.token_digest(form.get("refresh_token") or "")
    now = ctx.now()
    token = _live_refresh_token(ctx, digest, app, settings.policy, now)
    user = ctx.store.get("User", token["user_id"])
    if user is None or not user["IsActive"]:  # [U] a deactivated user's tokens answer as expired ones
        raise _invalid(EXPIRED_REFRESH)
    if app.admin_approved:  # [U] a user no longer pre-authorized is refused as the JWT flow refuses them
        _check_access(ctx, app, user)
    if not ctx.store.use_refresh_token(digest, now, replace=settings.rotation):
        ctx.store.revoke_grant(token["grant_id"])  # a concurrent rotation spent it first: a reuse
        raise _invalid(EXPIRED_REFRESH)
    body = _token_response(ctx, app, user, kind="refresh", scopes=token["scopes"], grant_id=token["grant_id"])
    if settings.rotation:
        body["refresh_token"] = _new_refresh_token(ctx, grant_id=token["grant_id"], user_id=user["Id"], app=app,
                                                   scopes=token["scopes"], granted_at=token["granted_at"])
    return body


def _live_refresh_token(ctx: OrgContext, digest: str, app: OAuthApp, policy: oauth_apps.RefreshPolicy,
                        now: float) -> dict[str, Any]:
    """The refresh token with ``digest`` if it is the app's, unspent and within its policy; raises otherwise.

    A spent (rotated) token coming back revokes its grant; one the policy refuses is forgotten, since an
    expired token stays expired, while the session it came with lasts.
    """
    token = ctx.store.refresh_token(digest)
    if token is None or token["app_id"] != app.entity_id:
        raise _invalid(EXPIRED_REFRESH)
    if token["replaced"]:
        ctx.store.revoke_grant(token["grant_id"])
        raise _invalid(EXPIRED_REFRESH)
    if policy.refuses(token, now):
        ctx.store.drop_refresh_tokens(token["grant_id"])
        raise _invalid(EXPIRED_REFRESH)
    return token


def revoke(ctx: OrgContext, value: str) -> None:
    """Revoke a refresh token (its whole grant, access tokens too) or one access token; raises OAuthError."""
    digest = credentials.token_digest(value)
    token = ctx.store.refresh_token(digest) if value else None
    if token is not None:
        ctx.store.revoke_grant(token["grant_id"])
        return
    if value.startswith(REFRESH_TOKEN_PREFIX) or (value.startswith("00D") and "!" in value):
        if value.startswith("00D") and ctx.store.revoke_access_token(digest):
            return
        raise OAuthError("invalid_token", "invalid token")
    raise OAuthError("unsupported_token_type", "this token type is not supported")


# --- the login page and its session ---------------------------------------------------------------


def _login_page(action: str, *, username: str = "", error: str = "") -> str:
    """The login form, posting back to ``action`` (the authorize URL with its query, so nothing is lost).

    [O] The element names are login.salesforce.com's, which browser automation scripts rely on:
    ``username``, ``pw`` (id ``password``), the ``Login`` button, an ``error`` box. The layout is not.
    """
    box = f'<div id="error" class="loginError" role="alert">{html.escape(error)}</div>\n' if error else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Login | Salesforce</title></head>\n'
        f'<body><form id="login_form" name="login" method="post" action="{html.escape(action)}">\n{box}'
        '<label for="username">Username</label>\n'
        f'<input type="email" id="username" name="username" value="{html.escape(username)}" '
        'autocomplete="username">\n<label for="password">Password</label>\n'
        '<input type="password" id="password" name="pw" autocomplete="current-password">\n'
        '<input type="submit" id="Login" name="Login" value="Log In">\n</form></body></html>\n')


# --- identity -------------------------------------------------------------------------------------

def _urls(ctx: OrgContext, user_id: str) -> dict[str, str]:
    base, org = ctx.url, ctx.org_id15
    data = f"{base}/services/data/v{{version}}"
    return {"enterprise": f"{base}/services/Soap/c/{{version}}/{org}",
            "metadata": f"{base}/services/Soap/m/{{version}}/{org}",
            "partner": f"{base}/services/Soap/u/{{version}}/{org}",
            "rest": f"{data}/", "sobjects": f"{data}/sobjects/", "search": f"{data}/search/",
            "query": f"{data}/query/", "recent": f"{data}/recent/",
            "tooling_soap": f"{base}/services/Soap/T/{{version}}/{org}", "tooling_rest": f"{data}/tooling/",
            "profile": f"{base}/{user_id[:15]}", "users": f"{data}/chatter/users", "custom_domain": base}


def identity(ctx: OrgContext, user: dict[str, Any]) -> dict[str, Any]:
    """The identity URL's answer (``GET /id/<orgId>/<userId>``)."""
    return {"id": f"{ctx.url}/id/{ctx.org_id}/{user['Id']}", "asserted_user": True, "user_id": user["Id"],
            "organization_id": ctx.org_id, "username": user["Username"],
            "nick_name": user["Username"].split("@")[0], "display_name": user["Name"], "email": user["Email"],
            "email_verified": True, "first_name": user["FirstName"], "last_name": user["LastName"],
            "timezone": "GMT", "active": user["IsActive"], "user_type": "STANDARD", "language": "en_US",
            "locale": "en_US", "utcOffset": 0, "last_modified_date": user["LastModifiedDate"],
            "is_app_installed": True, "urls": _urls(ctx, user["Id"])}


def userinfo(ctx: OrgContext, session: Session) -> dict[str, Any]:
    """The OpenID Connect userinfo answer for the session's user."""
    user = session.user
    return {"sub": f"{ctx.url}/id/{ctx.org_id}/{user['Id']}", "user_id": user["Id"],
            "organization_id": ctx.org_id, "preferred_username": user["Username"],
            "nickname": user["Username"].split("@")[0], "name": user["Name"], "email": user["Email"],
            "email_verified": True, "given_name": user["FirstName"], "family_name": user["LastName"],
            "zoneinfo": "GMT", "active": user["IsActive"], "user_type": "STANDARD", "language": "en_US",
            "locale": "en_US", "utcOffset": 0, "updated_at": user["LastModifiedDate"],
            "is_app_installed": True, "urls": _urls(ctx, user["Id"])}


def identity_user(ctx: OrgContext, org_id: str, user_id: str) -> dict[str, Any] | None:
    """The user an identity URL names, if it is this org's."""
    if ids.normalize(org_id) != ctx.org_id:
        return None
    normalized = ids.normalize(user_id)
    return ctx.store.get("User", normalized) if normalized else None


# --- HTTP -----------------------------------------------------------------------------------------

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
        revoke(ctx, (source.get("token") or "").strip())
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
        authorize = _authorize_request(ctx, request.args)
    except OAuthError as error:  # Salesforce shows these on its own page: the callback is not trusted
        return Response(f"error={error.error}&error_description={error.description}", status=400,
                        content_type="text/plain")
    refused = _request_error(authorize)
    if refused is not None:
        return _redirect(refused)
    action = f"{request.path}?{request.query_string.decode('latin-1')}"
    if request.method == "POST":
        return _submitted_login(ctx, request, authorize, action)
    reauthenticate = "login" in (request.args.get("prompt") or "").split()  # [D] prompt=login
    user = None if reauthenticate else web_logins.browser_user(ctx, request.cookies.get(SESSION_COOKIE))
    if user is None:
        return _page(_login_page(action, username=request.args.get("login_hint") or ""))
    return _redirect(_issue_code(ctx, authorize, user))


def _submitted_login(ctx: OrgContext, request: Request, authorize: AuthorizeRequest, action: str) -> Response:
    """The posted login form: the form again with the refusal, or the code redirect with a session cookie."""
    username = request.form.get("username") or ""
    user = ctx.authenticate(username, request.form.get("pw") or "")
    if user is None:
        return _page(_login_page(action, username=username, error=LOGIN_REFUSED))
    response = _redirect(_issue_code(ctx, authorize, user))
    # [U] Salesforce's own cookie attributes are not documented; these are what a login cookie should be.
    response.set_cookie(SESSION_COOKIE, web_logins.open_browser_session(ctx, user["Id"]), path="/", secure=True,
                        httponly=True, samesite="Lax")
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
    return _json(userinfo(ctx, session)) if session else _bad_token()


def identity_endpoint(ctx: OrgContext, request: Request, call: Call, org_id: str, user_id: str) -> Response:
    call.operation = "oauth.identity"
    session = ctx.session(bearer_token(request.headers.get("Authorization")))
    if session is None:
        return _bad_token()
    user = identity_user(ctx, org_id, user_id)
    if user is None:
        return Response("Bad_Id", status=404, content_type="text/plain")
    body = identity(ctx, user)
    version = request.args.get("version", "")
    if version:  # Salesforce fills the urls' {version} when asked to
        version = version.removeprefix("v")
        body["urls"] = {name: url.replace("{version}", version) for name, url in body["urls"].items()}
    return _json(body)


# --- codes issued without a browser ---------------------------------------------------------------

