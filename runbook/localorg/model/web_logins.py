"""The web server flow's state: one-time authorization codes and the login page's browser sessions.

Both are kept as org settings named by their digest, never by the value itself, and timed on the org's clock.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from runbook.localorg.model.context import OrgContext

CODE_SECONDS = 15 * 60


def issue_code(ctx: OrgContext, *, client_id: str, redirect_uri: str, user_id: str, challenge: str = "",
               scope: str | None = None) -> str:
    """A one-time authorization code for ``user_id`` and the app ``client_id``; only its digest is stored.

    The web server flow issues one once the user has logged in and allowed the app, with the request's PKCE
    ``challenge`` and ``scope``. A scratch org signup's ``AuthCode`` [D ScratchOrgInfo] is one issued without a
    browser: the Salesforce CLI redeems it with the ``authorization_code`` grant, ``client_id`` and
    ``redirect_uri``, without PKCE (wire reference §1.6b).
    """
    code = secrets.token_urlsafe(32)
    ctx.store.set_setting(_digest_key("authcode", code), {
        "client_id": client_id, "redirect_uri": redirect_uri, "user_id": user_id, "challenge": challenge,
        "scope": scope, "expires": ctx.now() + CODE_SECONDS})
    return code


def spend_code(ctx: OrgContext, code: str) -> dict[str, Any] | None:
    """What an unspent, unexpired ``code`` was issued for, spending it; None for any other code."""
    key = _digest_key("authcode", code)
    issued = ctx.store.get_setting(key)
    if not issued or issued.get("spent") or issued["expires"] < ctx.now():
        return None
    ctx.store.set_setting(key, {**issued, "spent": True})
    return issued


def open_browser_session(ctx: OrgContext, user_id: str) -> str:
    """A new session cookie value for ``user_id``; only its digest is stored, and it is no API token."""
    value = secrets.token_urlsafe(32)
    ctx.store.set_setting(_digest_key("browser", value),
                          {"user_id": user_id, "expires": ctx.now() + ctx.session_seconds})
    return value


def browser_user(ctx: OrgContext, cookie: str | None) -> dict[str, Any] | None:
    """The active user a session cookie belongs to, or None (no cookie, unknown, expired, deactivated)."""
    issued = ctx.store.get_setting(_digest_key("browser", cookie)) if cookie else None
    if not issued or issued["expires"] < ctx.now():
        return None
    user = ctx.store.get("User", issued["user_id"])
    return user if user is not None and user["IsActive"] else None


def _digest_key(kind: str, secret: str) -> str:
    """The setting name a code or browser session is kept under: its digest, never the value itself."""
    return f"{kind}:" + hashlib.sha256(secret.encode()).hexdigest()
