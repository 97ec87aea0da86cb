"""The refresh token grant, and ``/services/oauth2/revoke``.

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
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from runbook.localorg.api.oauth_grant import (
    OAuthError,
    check_access,
    check_client_secret,
    check_enabled,
    invalid,
    token_response,
)
from runbook.localorg.model import credentials, oauth_apps
from runbook.localorg.model.components import OAuthApp
from runbook.localorg.model.context import OrgContext

REFRESH_TOKEN = "refresh_token"
EXPIRED_REFRESH = "expired access/refresh token"  # [D] OAuth 2.0 Flow Errors; [O] restforce#81
# [O] Salesforce refresh tokens start with 5Aep861 (jsforce and restforce issue transcripts); the rest is
# what sfdx-core's auth URL pattern takes ([a-zA-Z0-9._-], AuthInfo.parseSfdxAuthUrl [V]).
REFRESH_TOKEN_PREFIX = "5Aep861"


def new_refresh_token(ctx: OrgContext, *, grant_id: str, user_id: str, app: OAuthApp, scopes: str,
                      granted_at: float) -> str:
    """A new refresh token in ``grant_id``; only its digest is stored."""
    value = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(60).replace("-", ".")
    ctx.store.save_refresh_token(credentials.token_digest(value), grant_id=grant_id, user_id=user_id,
                                 app_id=app.entity_id, scopes=scopes, granted_at=granted_at, issued_at=ctx.now())
    return value


def grant(ctx: OrgContext, form: Mapping[str, str]) -> dict[str, Any]:
    """``grant_type=refresh_token``: a new session for the token's user (and a new token under rotation)."""
    client_id = form.get("client_id") or ""
    app = oauth_apps.known_app(ctx, client_id)
    if app is None:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    check_enabled(app)
    settings = oauth_apps.refresh_settings(ctx, client_id)
    check_client_secret(form.get("client_secret") or "", settings.secret, required=settings.secret_required)
    digest = credentials.token_digest(form.get("refresh_token") or "")
    now = ctx.now()
    token = _live_refresh_token(ctx, digest, app, settings.policy, now)
    user = ctx.store.get("User", token["user_id"])
    if user is None or not user["IsActive"]:  # [U] a deactivated user's tokens answer as expired ones
        raise invalid(EXPIRED_REFRESH)
    if app.admin_approved:  # [U] a user no longer pre-authorized is refused as the JWT flow refuses them
        check_access(ctx, app, user)
    if not ctx.store.use_refresh_token(digest, now, replace=settings.rotation):
        ctx.store.revoke_grant(token["grant_id"])  # a concurrent rotation spent it first: a reuse
        raise invalid(EXPIRED_REFRESH)
    body = token_response(ctx, app, user, kind="refresh", scopes=token["scopes"], grant_id=token["grant_id"])
    if settings.rotation:
        body["refresh_token"] = new_refresh_token(ctx, grant_id=token["grant_id"], user_id=user["Id"], app=app,
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
        raise invalid(EXPIRED_REFRESH)
    if token["replaced"]:
        ctx.store.revoke_grant(token["grant_id"])
        raise invalid(EXPIRED_REFRESH)
    if policy.refuses(token, now):
        ctx.store.drop_refresh_tokens(token["grant_id"])
        raise invalid(EXPIRED_REFRESH)
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
