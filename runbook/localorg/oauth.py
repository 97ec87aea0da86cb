"""The OAuth 2.0 endpoints: JWT bearer token exchange, identity URL and userinfo.

The token endpoint checks an assertion the way Salesforce does, in this order: well-formed RS256 JWT,
``iss`` is a consumer key, the signature verifies against the certificate uploaded to that app,
``aud``, ``exp``, ``sub``, then the app's permitted-users policy. Errors are Salesforce's
``{"error", "error_description"}`` pairs with HTTP 400.

Clients differ in what they send and all of it is accepted: ``exp`` as an int or a numeric string
(simple-salesforce), in milliseconds (the Salesforce CLI sends ``Date.now() + 300``, so any value over
10^11 is read as ms) or far in the future; ``aud`` as login/test.salesforce.com or the org's own URL,
with or without a trailing slash (the CLI's first attempt uses its ``--instance-url``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from werkzeug import Request, Response

from runbook.localorg import credentials, ids, metadata
from runbook.localorg.components import OAuthApp, load_certificate
from runbook.localorg.context import Call, OrgContext, Session, bearer_token
from runbook.localorg.external_client_apps import permission_set_ids

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
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
    if form.get("grant_type") != JWT_BEARER:
        raise OAuthError("unsupported_grant_type", "grant type not supported")
    claims, app = _verified_assertion(ctx, form.get("assertion") or "")
    _check_audience(ctx, claims.get("aud"))
    _check_expiry(claims.get("exp"))
    user = _check_user(ctx, claims.get("sub"))
    _check_access(ctx, app, user)
    scopes = " ".join(app.scopes)
    access_token = ctx.open_session(user["Id"], app_id=app.entity_id, scopes=scopes, kind="jwt")
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
