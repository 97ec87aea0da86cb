"""What a fresh local org contains: the organization, five standard profiles and five users.

Only the admin can log in with a password (random, written to ``admin-credentials.json``); the other
users exist to exercise pre-authorization, so they sign in by JWT bearer only.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_USERNAME = "admin@local.devhub"
ADMIN_PROFILE = "System Administrator"
ADMIN_SETTING = "admin_username"  # the store setting naming another admin (a scratch org's signup username)

ORGANIZATION = {
    "Name": "Local Dev Hub",
    "OrganizationType": "Developer Edition",
    "IsSandbox": False,
    "InstanceName": "LOCAL1",
    "NamespacePrefix": None,
    "TrialExpirationDate": None,
}

# [D] "Minimum Access - API Only Integrations": the profile of Salesforce Integration users, API access
# only, no object access of its own (what a dedicated CI user starts from; a permission set adds the rest).
API_ONLY_PROFILE = "Minimum Access - API Only Integrations"
PROFILES: tuple[str, ...] = (
    "System Administrator", "Standard User", "Read Only", "Minimum Access - Salesforce", API_ONLY_PROFILE)


def user_settings(alias: str) -> dict[str, str]:
    """A User's other required fields [D User], valued as a new Developer Edition's admin has them [U]."""
    return {"Alias": alias[:8], "TimeZoneSidKey": "America/Los_Angeles", "LocaleSidKey": "en_US",
            "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}


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
