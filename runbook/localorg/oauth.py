"""The OAuth 2.0 endpoints: JWT bearer and web server (authorization code + PKCE) flows, identity, userinfo.

The token endpoint checks an assertion the way Salesforce does, in this order: well-formed RS256 JWT,
``iss`` is a consumer key, the signature verifies against the certificate uploaded to that app,
``aud``, ``exp``, ``sub``, then the app's permitted-users policy. Errors are Salesforce's
``{"error", "error_description"}`` pairs with HTTP 400.

Clients differ in what they send and all of it is accepted: ``exp`` as an int or a numeric string
(simple-salesforce), in milliseconds (the Salesforce CLI sends ``Date.now() + 300``, so any value over
10^11 is read as ms) or far in the future; ``aud`` as login/test.salesforce.com or the org's own URL,
with or without a trailing slash (the CLI's first attempt uses its ``--instance-url``).

The web server flow runs without a browser page: ``GET /services/oauth2/authorize`` logs in as the user
named by ``login_hint`` (default: the admin), as if that user had entered their password and clicked
"Allow", records the approval (so a self-authorize app then also allows that user's JWT logins) and
redirects to the app's callback URL with a one-time code (valid 15 minutes, kept by digest in the
store). The token endpoint's ``authorization_code`` grant checks the code, ``client_id``,
``redirect_uri``, the PKCE ``code_verifier`` (S256; Salesforce's default when no method is sent) and
``client_secret`` unless the app has ``isConsumerSecretOptional``. No refresh token is issued (unverified
choice: the local org has no refresh grant).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from werkzeug import Request, Response

from runbook.localorg import credentials, ids, metadata, seed
from runbook.localorg.components import OAuthApp, as_bool, child, load_certificate, text, texts
from runbook.localorg.context import Call, OrgContext, Session, bearer_token
from runbook.localorg.external_client_apps import permission_set_ids

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUTHORIZATION_CODE = "authorization_code"
CODE_SECONDS = 15 * 60
CLOCK_SKEW_SECONDS = 180
_MILLISECONDS_ABOVE = 10**11
_LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
_SIGNATURE_ONLY = {f"verify_{claim}": False for claim in ("exp", "aud", "iat", "nbf", "iss", "sub", "jti")}
# Unverified choice: Salesforce answers an unknown ``sub`` with this text too (the real reply for a
# username that does not exist is not documented; "user hasn't approved this consumer" is what
# clients see for most user-side problems).
UNKNOWN_USER = "user hasn't approved this consumer"


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
        return _token_response(ctx, *_redeemed_code(ctx, form), kind="web")
    if grant != JWT_BEARER:
        raise OAuthError("unsupported_grant_type", "grant type not supported")
    claims, app = _verified_assertion(ctx, form.get("assertion") or "")
    _check_audience(ctx, claims.get("aud"))
    _check_expiry(claims.get("exp"))
    user = _check_user(ctx, claims.get("sub"))
    _check_access(ctx, app, user)
    return _token_response(ctx, app, user, kind="jwt")


def _token_response(ctx: OrgContext, app: OAuthApp, user: dict[str, Any], *, kind: str) -> dict[str, Any]:
    scopes = " ".join(app.scopes)
    access_token = ctx.open_session(user["Id"], app_id=app.entity_id, scopes=scopes, kind=kind)
    id_url = f"{ctx.url}/id/{ctx.org_id}/{user['Id']}"
    issued_at = str(int(time.time() * 1000))
    return {"access_token": access_token, "scope": scopes, "instance_url": ctx.url, "id": id_url,
            "token_type": "Bearer", "issued_at": issued_at,
            "signature": credentials.sign(ctx.store.get_setting("org_secret"), id_url, issued_at)}


def _verified_assertion(ctx: OrgContext, assertion: str) -> tuple[dict[str, Any], OAuthApp]:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _invalid() from None
    if header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise _invalid()
    issuer = claims.get("iss")
    app = metadata.oauth_app_for_key(ctx.store, issuer) if isinstance(issuer, str) and issuer else None
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


def _check_audience(ctx: OrgContext, audience: Any) -> None:
    allowed = {*_LOGIN_AUDIENCES, ctx.url, ctx.url.replace("127.0.0.1", "localhost")}
    values = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(value, str) and value.rstrip("/") in allowed for value in values):
        raise _invalid("audience is invalid")


def _check_expiry(exp: Any) -> None:
    if isinstance(exp, str):
        try:
            exp = float(exp.strip())
        except ValueError:
            raise _invalid() from None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise _invalid()
    seconds = exp / 1000 if exp > _MILLISECONDS_ABOVE else exp
    if seconds < time.time() - CLOCK_SKEW_SECONDS:
        raise _invalid("expired authorization code")


def _check_user(ctx: OrgContext, subject: Any) -> dict[str, Any]:
    users = ctx.store.find("User", Username=subject) if isinstance(subject, str) and subject else []
    if not users:
        raise _invalid(UNKNOWN_USER)
    if not users[0]["IsActive"]:
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


# --- web server flow -----------------------------------------------------------------------------

def _web_settings(ctx: OrgContext, consumer_key: str) -> tuple[list[str], str | None, bool]:
    """The app's callback URLs, its consumer secret and whether the secret is optional."""
    component = ctx.store.component_by_consumer_key(consumer_key)
    if component is None:
        return [], None, False
    oauth = child(component.definition, "oauthConfig") or component.definition
    urls = [u.strip() for value in texts(oauth, "callbackUrl") for u in value.splitlines() if u.strip()]
    return urls, component.consumer_secret, as_bool(text(oauth, "isConsumerSecretOptional"))


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize(ctx: OrgContext, args: Mapping[str, str]) -> str:
    """The redirect URL for an authorize request (a code, or an error the client reads); raises OAuthError.

    Errors that make the redirect URL untrustworthy (unknown client, mismatched redirect_uri) are raised;
    the others go back to the client as ``?error=...`` the way Salesforce sends them.
    """
    client_id, redirect_uri = args.get("client_id") or "", args.get("redirect_uri") or ""
    app = metadata.oauth_app_for_key(ctx.store, client_id) if client_id else None
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    callbacks, _secret, _optional = _web_settings(ctx, client_id)
    if redirect_uri not in callbacks:
        raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
    state = {"state": args["state"]} if args.get("state") else {}

    def back(**params: str) -> str:
        return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode({**params, **state})}"

    if args.get("response_type") != "code":
        return back(error="unsupported_response_type", error_description="response type not supported")
    if args.get("code_challenge_method", "S256") != "S256":
        return back(error="invalid_request", error_description="code_challenge_method must be S256")
    try:
        user = _check_user(ctx, args.get("login_hint") or seed.ADMIN_USERNAME)
        if app.admin_approved:
            _check_access(ctx, app, user)
    except OAuthError as error:
        return back(error="access_denied" if error.error == "invalid_app_access" else error.error,
                    error_description=error.description)
    ctx.store.record_approval(app.entity_id, user["Id"])  # the user clicked "Allow"
    code = secrets.token_urlsafe(32)
    ctx.store.set_setting(_code_key(code), {
        "client_id": client_id, "redirect_uri": redirect_uri, "user_id": user["Id"],
        "challenge": args.get("code_challenge") or "", "expires": time.time() + CODE_SECONDS})
    return back(code=code)


def _code_key(code: str) -> str:
    return "authcode:" + hashlib.sha256(code.encode()).hexdigest()


def _redeemed_code(ctx: OrgContext, form: Mapping[str, str]) -> tuple[OAuthApp, dict[str, Any]]:
    """The app and user an authorization code was issued for; the code is spent either way."""
    key = _code_key(form.get("code") or "")
    issued = ctx.store.get_setting(key)
    if not issued or issued.get("spent") or issued["expires"] < time.time():
        raise _invalid("invalid authorization code")
    ctx.store.set_setting(key, {**issued, "spent": True})
    client_id = form.get("client_id") or ""
    app = metadata.oauth_app_for_key(ctx.store, client_id) if client_id else None
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if client_id != issued["client_id"]:
        raise _invalid("invalid authorization code")
    if (form.get("redirect_uri") or "") != issued["redirect_uri"]:
        raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
    _callbacks, secret, optional = _web_settings(ctx, client_id)
    given = form.get("client_secret") or ""
    if (given or not optional) and not (secret and hmac.compare_digest(given.encode(), secret.encode())):
        raise OAuthError("invalid_client", "invalid client credentials")
    verifier = form.get("code_verifier") or ""
    if issued["challenge"] and not hmac.compare_digest(_challenge(verifier), issued["challenge"]):
        raise _invalid("invalid code verifier")
    user = ctx.store.get("User", issued["user_id"])
    if user is None or not user["IsActive"]:
        raise _invalid("inactive user")
    return app, user


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
    try:
        return _json(token(ctx, request.form))
    except OAuthError as error:
        return _json(error.body(), 400)


def authorize_endpoint(ctx: OrgContext, request: Request, call: Call) -> Response:
    """``GET /services/oauth2/authorize``: a 302 back to the callback with a code, or an error page."""
    call.operation = "oauth.authorize"
    try:
        location = authorize(ctx, request.args)
    except OAuthError as error:  # Salesforce shows these on its own page: the callback is not trusted
        return Response(f"error={error.error}&error_description={error.description}", status=400,
                        content_type="text/plain")
    return Response("", status=302, headers={"Location": location, "Cache-Control": "no-store"})


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
