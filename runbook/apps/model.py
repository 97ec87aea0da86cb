"""What the phases say about an app, whatever its kind: the desired app, its state in the org, grants.

These are the seam's data: phase 2 builds an ``AppSpec``, a kind reads an ``AppState``, phase 3 reads an
``AccessState``; the kinds translate them to and from their own metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from runbook.work.sfdx_project import ProjectChange

Action = Literal["create", "update", "none"]
PermittedUsers = Literal["admin_approved", "all_users"]

# Friendly OAuth scope names (as Setup and the wire show them) → ConnectedAppOauthAccessScope values.
SCOPES = {
    "api": "Api",
    "web": "Web",
    "full": "Full",
    "refresh_token offline_access": "RefreshToken",
    "refresh_token": "RefreshToken",
    "offline_access": "RefreshToken",
    "openid": "OpenID",
    "id": "Basic",
    "profile": "Profile",
    "email": "Email",
    "address": "Address",
    "phone": "Phone",
    "chatter_api": "Chatter",
    "custom_permissions": "CustomPermissions",
    "wave_api": "Wave",
    "eclair_api": "Eclair",
    "pardot_api": "Pardot",
    "lightning": "Lightning",
    "content": "Content",
    "cdp_query_api": "CDPQuery",
    "cdp_profile_api": "CDPProfile",
    "cdp_ingest_api": "CDPIngest",
    "einstein_gpt_api": "EinsteinGPT",
}
# How the Metadata API reads scopes back [D ConnectedApp doc, wire facts §1.3]: these behave as (and are
# retrieved as) the scope on the right, so plans compare the normalised sets or a rerun would never converge.
SCOPE_READ_AS = {"Profile": "Basic", "Email": "Basic", "Address": "Basic", "Phone": "Basic",
                 "OfflineAccess": "RefreshToken"}


def normalised_scopes(values) -> str:
    """Scope enum values as the org reads them back, sorted and joined, for comparing plans with the org."""
    return ", ".join(sorted({SCOPE_READ_AS.get(v.strip(), v.strip()) for v in values if v and v.strip()}))


# Appended to the description of every app the runbook saves: the org's own record of who made the app, so a
# rerun from another work folder (or after a lost one) still knows it is the runbook's, and an app of the same
# name someone else made is not overwritten unless adopted. Both kinds keep a free-text description.
OWNER_MARKER = "[managed by sf-connected-app-runbook]"


def with_owner_marker(description: str) -> str:
    """``description`` with the owner marker once, at the end."""
    text = description.replace(OWNER_MARKER, "").strip()
    return f"{text} {OWNER_MARKER}" if text else OWNER_MARKER


@dataclass(frozen=True)
class Ownership:
    """What phase 2 knows of an app's owner before reading the org: its work folder's record, and ``adopt``."""

    recorded_app: str = ""  # the app phase 2 recorded in the work folder ("" for none)
    workdir: str = ""  # that work folder, for the teardown command of an app left behind by a rename
    adopt: bool = False  # take over an app of this name that the runbook did not create

    def records(self, app_name: str) -> bool:
        """Whether the work folder's record names ``app_name`` (API names compare ignoring case)."""
        return bool(self.recorded_app) and self.recorded_app.lower() == app_name.lower()


@dataclass(frozen=True)
class AppSpec:
    """The validated, desired app (phase 2's fields only); ``app_kind`` is a kind's name or "auto"."""

    full_name: str
    label: str
    contact_email: str
    description: str
    callback_url: str
    callback_port: int
    scopes: tuple[str, ...]  # metadata enum values, e.g. ("Api", "Web", "RefreshToken")
    certificate: str  # PEM; empty when the jwt flow is not asked for
    flows: tuple[str, ...] = ("jwt",)
    app_kind: str = "auto"
    consumer_secret_by: str = "runbook"  # who makes the consumer secret on create (web flow)
    sfdx_project: ProjectChange | None = None
    ownership: Ownership = Ownership()

    @property
    def web_flow(self) -> bool:
        return "web" in self.flows


@dataclass(frozen=True)
class Change:
    field: str
    old: str
    new: str


@dataclass
class AppState:
    """An app as the org holds it, read by its kind.

    ``fields`` are phase 2's fields as display strings, keyed as the kind's ``desired`` keys them, so a
    plan is a comparison of two dicts; ``raw`` is what the kind needs to update the app declaratively
    (never a consumer secret).
    """

    kind: str
    full_name: str
    label: str
    fields: dict[str, str]
    certificate: str  # PEM, "" when the app has none
    consumer_key: str
    raw: dict = field(default_factory=dict, repr=False)
    access_hint: str = ""  # the kind's own locator of the app's access data, for phase 3 to read it at once

    @property
    def marked(self) -> bool:
        """Whether the app carries the runbook's owner marker in its description."""
        return OWNER_MARKER in self.fields.get("description", "")


@dataclass
class Grant:
    """One pre-authorization: a profile or permission set, and the permission set that carries it."""

    kind: Literal["profile", "permission_set"]
    name: str  # profile name or permission set API name
    parent_id: str  # PermissionSet Id (profile-owned for profiles); "" when not looked up or not created yet

    @property
    def key(self) -> tuple[str, str]:
        """Names compare as Salesforce compares them: ignoring case."""
        return self.kind, self.name.lower()


@dataclass
class AccessState:
    """Who may use the app, as its kind read it: the policies in phase 3's words, and the grants.

    ``policies`` holds ``permitted_users`` ("admin_approved" | "all_users"), ``ip_relaxation`` and
    ``refresh_token_policy`` in the parameters' vocabulary; ``raw`` is what the kind updates from.
    """

    policies: dict[str, str]
    grants: list[Grant]
    raw: dict | None = field(default=None, repr=False)
