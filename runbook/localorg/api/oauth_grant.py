"""What every OAuth grant shares: Salesforce's OAuth refusals, the checks of the app and of its users, and
the token answer.

Errors are Salesforce's ``{"error", "error_description"}`` pairs, answered with HTTP 400.
"""

from __future__ import annotations

import hmac
from typing import Any

from runbook.localorg.model import credentials
from runbook.localorg.model.components import OAuthApp
from runbook.localorg.model.context import OrgContext
from runbook.localorg.model.external_client_apps import permission_set_ids

# [V Electivus] disabling an External Client App (ExtlClntAppConfigurablePolicies.isEnabled=false) or its
# OAuth plugin (isOauthPluginEnabled=false) blocks new logins. [O n8n#21589] a connected app blocked by its
# admin answers OAUTH_APP_BLOCKED "this app is blocked by admin"; [U] that a disabled ECA answers the same,
# and the text for a disabled OAuth plugin (one text per cause, so a tool can name the fix). Never
# invalid_client, which clients read as a wrong consumer secret.
APP_BLOCKED = "OAUTH_APP_BLOCKED"
APP_DISABLED = "this app is blocked by admin"
OAUTH_PLUGIN_DISABLED = "OAuth is disabled for this external client app"


class OAuthError(Exception):
    """A refusal in Salesforce's OAuth shape: its ``error`` code and ``error_description``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid(description: str = "invalid assertion") -> OAuthError:
    return OAuthError("invalid_grant", description)


def token_response(ctx: OrgContext, app: OAuthApp, user: dict[str, Any], *, kind: str, scopes: str = "",
                   grant_id: str | None = None) -> dict[str, Any]:
    """A new session's answer: with the app's scopes unless ``scopes`` names the granted ones."""
    scopes = scopes or " ".join(app.scopes)
    access_token = ctx.open_session(user["Id"], app_id=app.entity_id, scopes=scopes, kind=kind, grant_id=grant_id)
    id_url = f"{ctx.url}/id/{ctx.org_id}/{user['Id']}"
    issued_at = str(int(ctx.now() * 1000))
    return {"access_token": access_token, "scope": scopes, "instance_url": ctx.url, "id": id_url,
            "token_type": "Bearer", "issued_at": issued_at,
            "signature": credentials.sign(ctx.store.get_setting("org_secret"), id_url, issued_at)}


def check_enabled(app: OAuthApp) -> None:
    """Refuse an External Client App that is disabled, or whose OAuth plugin is (every flow checks this)."""
    if not app.enabled:
        raise OAuthError(APP_BLOCKED, APP_DISABLED)
    if not app.oauth_plugin_enabled:
        raise OAuthError(APP_BLOCKED, OAUTH_PLUGIN_DISABLED)


def check_access(ctx: OrgContext, app: OAuthApp, user: dict[str, Any]) -> None:
    """Admin-approved apps need a grant to one of the user's permission sets; others a prior approval."""
    if not app.admin_approved:
        if not ctx.store.has_approval(app.entity_id, user["Id"]):
            raise invalid("user hasn't approved this consumer")
        return
    held = ctx.store.permission_set_ids_of(user["Id"])
    granted = {row["ParentId"] for row in ctx.store.find("SetupEntityAccess", SetupEntityId=app.entity_id)}
    granted |= permission_set_ids(ctx.store, app.permission_sets)
    profile = ctx.store.get("Profile", user["ProfileId"]) if user.get("ProfileId") else None
    by_profile = bool(profile) and profile["Name"].lower() in {p.lower() for p in app.profiles}
    if not (held & granted or by_profile):
        raise OAuthError("invalid_app_access", "user is not admin approved to access this app")


def check_client_secret(given: str, secret: str | None, *, required: bool) -> None:
    """A secret sent is always checked; none sent passes only where the app does not require one."""
    if (given or required) and not (secret and hmac.compare_digest(given.encode(), secret.encode())):
        raise OAuthError("invalid_client", "invalid client credentials")
