"""The sObjects the local org serves: their fields, types and relationships.

One description feeds the SQLite tables (store), SOQL (field names, types, relationship paths),
REST (describe, create checks) and query column metadata, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.localorg.ids import KEY_PREFIXES

# Field types, as describe() names them.
ID, REFERENCE, STRING, BOOLEAN, INT, DATETIME, DATE, PICKLIST, EMAIL = (
    "id", "reference", "string", "boolean", "int", "datetime", "date", "picklist", "email")
TEXT_TYPES = frozenset({STRING, PICKLIST, EMAIL})
ID_TYPES = frozenset({ID, REFERENCE})


@dataclass(frozen=True)
class Field:
    """One sObject field; ``relationship`` names the path segment that follows a reference."""

    name: str
    type: str = STRING
    reference_to: str | None = None
    relationship: str | None = None
    createable: bool = False
    nillable: bool = True


@dataclass(frozen=True)
class SObject:
    """One sObject type and the operations the local org allows on it."""

    name: str
    label: str
    fields: tuple[Field, ...]
    createable: bool = False
    deletable: bool = False
    data_queryable: bool = True  # False: SOQL only through the Tooling API (``tooling/query``)
    _by_lower: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_lower.update({f.name.lower(): f for f in self.fields})

    @property
    def key_prefix(self) -> str:
        return KEY_PREFIXES[self.name]

    def field(self, name: str) -> Field | None:
        """The field called ``name`` in any letter case."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        """The reference field whose relationship is called ``name`` in any letter case."""
        return next((f for f in self.fields if (f.relationship or "").lower() == name.lower()), None)


def _audit() -> tuple[Field, ...]:
    return (Field("CreatedDate", DATETIME, nillable=False),
            Field("LastModifiedDate", DATETIME, nillable=False))


SOBJECTS: dict[str, SObject] = {o.name: o for o in (
    SObject("Organization", "Organization", (
        Field("Id", ID, nillable=False), Field("Name"), Field("OrganizationType", PICKLIST),
        Field("IsSandbox", BOOLEAN, nillable=False), Field("InstanceName"), Field("NamespacePrefix"),
        Field("TrialExpirationDate", DATETIME), *_audit())),
    SObject("Profile", "Profile", (
        Field("Id", ID, nillable=False), Field("Name"), Field("UserType", PICKLIST), *_audit())),
    SObject("PermissionSet", "Permission Set", (
        Field("Id", ID, nillable=False), Field("Name", createable=True, nillable=False),
        Field("Label", createable=True, nillable=False), Field("Description", createable=True),
        Field("IsOwnedByProfile", BOOLEAN, nillable=False),
        Field("ProfileId", REFERENCE, "Profile", "Profile"), Field("IsCustom", BOOLEAN, nillable=False),
        Field("NamespacePrefix"), *_audit()), createable=True, deletable=True),
    SObject("PermissionSetAssignment", "Permission Set Assignment", (
        Field("Id", ID, nillable=False),
        Field("AssigneeId", REFERENCE, "User", "Assignee", createable=True, nillable=False),
        Field("PermissionSetId", REFERENCE, "PermissionSet", "PermissionSet", createable=True,
              nillable=False),
        Field("SystemModstamp", DATETIME, nillable=False)), createable=True, deletable=True),
    SObject("User", "User", (
        Field("Id", ID, nillable=False), Field("Username", nillable=False), Field("Name"), Field("FirstName"),
        Field("LastName"), Field("Email", EMAIL), Field("IsActive", BOOLEAN, nillable=False),
        Field("ProfileId", REFERENCE, "Profile", "Profile"), Field("UserType", PICKLIST), *_audit())),
    SObject("ConnectedApplication", "Connected App", (
        Field("Id", ID, nillable=False), Field("Name", nillable=False),
        Field("OptionsAllowAdminApprovedUsersOnly", BOOLEAN, nillable=False),
        Field("OptionsRefreshTokenValidityMetric", BOOLEAN, nillable=False),
        Field("RefreshTokenValidityPeriod", INT), Field("StartUrl"), Field("MobileStartUrl"), *_audit())),
    # [D] the object reference lists describeSObjects(), retrieve() and search(), not query(): SOQL goes
    # through the Tooling API, as Electivus's scripts query it [V]. Some scripts report the data API
    # answering too [O]; the docs win here. (Electivus also reads ContactEmail: not here yet, as an older
    # state's table would lack the column.)
    SObject("ExternalClientApplication", "External Client App", (
        Field("Id", ID, nillable=False), Field("MasterLabel", nillable=False),
        Field("DeveloperName", nillable=False), Field("Description"), *_audit()), data_queryable=False),
    SObject("SetupEntityAccess", "Setup Entity Access", (
        Field("Id", ID, nillable=False),
        Field("ParentId", REFERENCE, "PermissionSet", "Parent", createable=True, nillable=False),
        Field("SetupEntityId", REFERENCE, createable=True, nillable=False),
        Field("SetupEntityType", PICKLIST), Field("SystemModstamp", DATETIME, nillable=False)),
        createable=True, deletable=True),
    SObject("ScratchOrgInfo", "Scratch Org Info", (
        Field("Id", ID, nillable=False), Field("OrgName"), Field("ScratchOrg"), Field("SignupUsername"),
        Field("Status", PICKLIST), Field("ExpirationDate", DATE), *_audit())),
    # A Tooling API object; the CLI asks for it when it cannot tell a Dev Hub from a sandbox. Always empty.
    SObject("SandboxProcess", "Sandbox Process", (
        Field("Id", ID, nillable=False), Field("Status", PICKLIST), Field("SandboxName"),
        Field("SandboxInfoId"),
        Field("LicenseType", PICKLIST), Field("CopyProgress", INT), Field("SandboxOrganization"),
        Field("SourceId"), Field("Description"), Field("EndDate", DATETIME), Field("Features"),
        Field("CreatedDate", DATETIME, nillable=False))),
)}
_BY_LOWER = {name.lower(): sobject for name, sobject in SOBJECTS.items()}


def sobject(name: str) -> SObject | None:
    """The sObject called ``name`` in any letter case."""
    return _BY_LOWER.get(name.lower())
