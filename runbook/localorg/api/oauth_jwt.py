"""The JWT bearer grant: a token for an assertion signed with the key of the app's certificate.

The grant checks an assertion the way Salesforce does, in this order: well-formed RS256 JWT,
``iss`` is a consumer key, the signature verifies against the certificate uploaded to that app
(none uploaded, or cleared by a deploy without ``<certificate>``: "invalid assertion" [V systemprompt]),
the app is enabled (an External Client App and its OAuth plugin: ``APP_DISABLED``,
``OAUTH_PLUGIN_DISABLED``), ``aud``, ``exp``, ``sub``, then the app's permitted-users policy.

Clients differ in what they send and all of it is accepted: ``exp`` as an int or a numeric string
(simple-salesforce), in milliseconds (the Salesforce CLI sends ``Date.now() + 300``, so any value over
10^11 is read as ms) or far in the future; ``aud`` as login/test.salesforce.com or the org's own URL,
with or without a trailing slash (the CLI's first attempt uses its ``--instance-url``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from runbook.localorg.api.oauth_grant import OAuthError, check_access, check_enabled, invalid, token_response
from runbook.localorg.model import oauth_apps
from runbook.localorg.model.components import OAuthApp, load_certificate
from runbook.localorg.model.context import OrgContext

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOCK_SKEW_SECONDS = 180
_MILLISECONDS_ABOVE = 10**11
_LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
_SIGNATURE_ONLY = {f"verify_{claim}": False for claim in ("exp", "aud", "iat", "nbf", "iss", "sub", "jti")}
# Unverified choice: Salesforce answers an unknown ``sub`` with this text too (the real reply for a
# username that does not exist is not documented; "user hasn't approved this consumer" is what
# clients see for most user-side problems).
UNKNOWN_USER = "user hasn't approved this consumer"
# [U] Salesforce's limits: a JWT bearer assertion is ~1 KB (RS256 signature, a few claims; an x5c chain a few KB)
MAX_ASSERTION_CHARS = 16 * 1024


def grant(ctx: OrgContext, form: Mapping[str, str]) -> dict[str, Any]:
    """The JWT bearer grant: the token response for a signed assertion, checked in Salesforce's order."""
    claims, app = _verified_assertion(ctx, form.get("assertion") or "")
    check_enabled(app)
    _check_audience(ctx, claims.get("aud"))
    _check_expiry(claims.get("exp"))
    user = _check_user(ctx, claims.get("sub"))
    check_access(ctx, app, user)
    return token_response(ctx, app, user, kind="jwt")


def _verified_assertion(ctx: OrgContext, assertion: str) -> tuple[dict[str, Any], OAuthApp]:
    if len(assertion) > MAX_ASSERTION_CHARS:  # before any decoding: a 10 MB one took 2 s to decode and verify
        raise invalid()
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid() from None
    if header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise invalid()
    issuer = claims.get("iss")
    app = oauth_apps.known_app(ctx, issuer) if isinstance(issuer, str) else None
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    try:
        public_key = load_certificate(app.certificate or "").public_key()
    except ValueError:
        raise invalid() from None  # no certificate uploaded: nothing can verify the signature
    if not isinstance(public_key, RSAPublicKey):
        raise invalid()
    try:
        # Only the signature: the claims are checked below, with Salesforce's rules rather than PyJWT's.
        jwt.decode(assertion, key=public_key, algorithms=["RS256"], options=_SIGNATURE_ONLY)
    except jwt.PyJWTError:
        raise invalid() from None
    return claims, app


def _check_audience(ctx: OrgContext, audience: Any) -> None:
    allowed = {*_LOGIN_AUDIENCES, ctx.url, ctx.url.replace("127.0.0.1", "localhost")}
    values = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(value, str) and value.rstrip("/") in allowed for value in values):
        raise invalid("audience is invalid")


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
            raise invalid() from None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise invalid()
    try:
        exp = float(exp)
    except OverflowError:  # an int past float's range
        raise invalid() from None
    if not isfinite(exp):
        raise invalid()
    seconds = exp / 1000 if exp > _MILLISECONDS_ABOVE else exp
    if seconds < time.time() - CLOCK_SKEW_SECONDS:
        raise invalid("expired authorization code")


def _check_user(ctx: OrgContext, subject: Any) -> dict[str, Any]:
    users = ctx.store.find("User", Username=subject) if isinstance(subject, str) and subject else []
    if not users:
        raise invalid(UNKNOWN_USER)
    if not users[0]["IsActive"]:  # [O] restforce#303: "invalid_grant: inactive user"
        raise invalid("inactive user")
    return users[0]
