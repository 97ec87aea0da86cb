"""What every rule and request handler gets: the org (store, URL, ids, session length, clock) and its sessions.

The org keeps its own clock: this machine's time plus the org setting ``clock_offset_s`` (0 on a fresh org),
so a test moves it forward (``LocalOrg.advance_clock``) instead of sleeping. Sessions, authorization
codes, the login page's session and refresh tokens are timed on it. A JWT's ``exp`` is not: it is the
client's clock, which moved as much as the org's in the time the offset stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbook.localorg.model import credentials, seed
from runbook.localorg.model.store import Store

if TYPE_CHECKING:
    from runbook.localorg.model.scratch import ScratchOrgs

CLOCK_OFFSET_SETTING = "clock_offset_s"  # seconds the org's clock runs ahead of this machine's


@dataclass(frozen=True)
class Session:
    """A live access token: whose it is, through which app (None for SOAP login), with which scopes."""

    user: dict[str, Any]
    app_id: str | None
    scopes: str
    is_admin: bool


@dataclass(frozen=True)
class OrgContext:
    store: Store
    url: str  # https://127.0.0.1:<port>
    org_id: str  # 18 characters
    session_seconds: int
    propagation_s: float = 0  # a new or changed app is unknown to OAuth this long (0: at once)
    scratch_orgs: ScratchOrgs | None = None  # a Dev Hub's scratch orgs; None in a scratch org

    @property
    def org_id15(self) -> str:
        return self.org_id[:15]

    def now(self) -> float:
        """The org's time, POSIX seconds: this machine's clock plus ``clock_offset_s``."""
        return self.store.clock(CLOCK_OFFSET_SETTING)

    def open_session(self, user_id: str, *, app_id: str | None, scopes: str, kind: str,
                     grant_id: str | None = None) -> str:
        """A new access token for ``user_id`` (tied to a refresh token's ``grant_id``); only its digest is stored."""
        token = credentials.new_access_token(self.org_id)
        self.store.save_token_at(credentials.token_digest(token), user_id=user_id, app_id=app_id, scopes=scopes,
                                 kind=kind, issued_at=self.now(), seconds=self.session_seconds, grant_id=grant_id)
        return token

    def session(self, token: str | None) -> Session | None:
        """The session behind ``token``, or None if it is unknown, expired, or its user was deactivated."""
        if not token:
            return None
        row = self.store.token_at(credentials.token_digest(token.strip()), self.now())
        user = self.store.get("User", row["user_id"]) if row else None
        if row is None or user is None or not user["IsActive"]:
            return None
        return Session(user, row["app_id"], row["scopes"], self.is_admin(user))

    def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        """The active user with this username and password, or None: what every password login checks.

        One answer for an unknown user, an inactive one and a wrong password, so a caller cannot tell
        which usernames exist (Salesforce's login refusals do not say either [O]).
        """
        users = self.store.find("User", Username=username) if username else []
        user = users[0] if users else None
        if user is None or not user["IsActive"]:
            return None
        return user if credentials.verify_password(password, self.store.password_hash(user["Id"])) else None

    def is_admin(self, user: dict[str, Any]) -> bool:
        profile = self.store.get("Profile", user["ProfileId"]) if user.get("ProfileId") else None
        return bool(profile and profile["Name"] == seed.ADMIN_PROFILE)

    def admin(self) -> dict[str, Any]:
        """The org's admin: the Dev Hub's seeded one, or the user a scratch org was signed up for."""
        return self.store.find("User", Username=self.store.get_setting(seed.ADMIN_SETTING, seed.ADMIN_USERNAME))[0]
