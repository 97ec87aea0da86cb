"""What a fresh local org contains: the organization, four standard profiles and five users.

Only the admin can log in with a password (random, written to ``admin-credentials.json``); the other
users exist to exercise pre-authorization, so they sign in by JWT bearer only.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_USERNAME = "admin@local.devhub"
ADMIN_PROFILE = "System Administrator"

ORGANIZATION = {
    "Name": "Local Dev Hub",
    "OrganizationType": "Developer Edition",
    "IsSandbox": False,
    "InstanceName": "LOCAL1",
    "NamespacePrefix": None,
    "TrialExpirationDate": None,
}

PROFILES: tuple[str, ...] = (
    "System Administrator", "Standard User", "Read Only", "Minimum Access - Salesforce")


@dataclass(frozen=True)
class SeedUser:
    """A user every fresh local org has; ``profile`` is a name from PROFILES."""

    username: str
    profile: str
    active: bool = True

    @property
    def first_name(self) -> str:
        return self.username.split("@")[0].capitalize()

    @property
    def last_name(self) -> str:
        return "User"


SEED_USERS: list[SeedUser] = [
    SeedUser(ADMIN_USERNAME, ADMIN_PROFILE),
    SeedUser("dev@local.devhub", "Standard User"),
    SeedUser("ci@local.devhub", "Standard User"),
    SeedUser("readonly@local.devhub", "Read Only"),
    SeedUser("inactive@local.devhub", "Standard User", active=False),
]
