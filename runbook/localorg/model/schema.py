"""The sObjects the local org serves: their fields, types and relationships.

One description feeds the SQLite tables (store), SOQL (field names, types, relationship paths),
REST (describe, create checks) and query column metadata, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.localorg.model.ids import KEY_PREFIXES

# Field types, as describe() names them.
ID, REFERENCE, STRING, BOOLEAN, INT, DATETIME, DATE, PICKLIST, EMAIL, TEXTAREA = (
    "id", "reference", "string", "boolean", "int", "datetime", "date", "picklist", "email", "textarea")
TEXT_TYPES = frozenset({STRING, PICKLIST, EMAIL, TEXTAREA})
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
    defaulted: bool = False  # "Defaulted on create": required, but an insert may leave it out


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


def _owned() -> tuple[Field, ...]:
    """The system fields of a record users own: owner, creator, last modifier, deleted flag, modstamp."""
    return (Field("OwnerId", REFERENCE, "User", "Owner", nillable=False),
            Field("IsDeleted", BOOLEAN, nillable=False),
            Field("Name", nillable=False),  # an auto number ("00000001")
            Field("CreatedById", REFERENCE, "User", "CreatedBy", nillable=False),
            Field("LastModifiedById", REFERENCE, "User", "LastModifiedBy", nillable=False),
            Field("SystemModstamp", DATETIME, nillable=False))


def _permission(name: str) -> Field:
    return Field(name, BOOLEAN, createable=True, nillable=False, defaulted=True)


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
        Field("NamespacePrefix"),
        # [D] "View Setup and Configuration", which GET /limits needs; a System Administrator has it
        _permission("PermissionsViewSetup"), *_audit()), createable=True, deletable=True),
    SObject("PermissionSetAssignment", "Permission Set Assignment", (
        Field("Id", ID, nillable=False),
        Field("AssigneeId", REFERENCE, "User", "Assignee", createable=True, nillable=False),
        Field("PermissionSetId", REFERENCE, "PermissionSet", "PermissionSet", createable=True,
              nillable=False),
        Field("SystemModstamp", DATETIME, nillable=False)), createable=True, deletable=True),
    # [D] User: create (no delete: a user is deactivated, never deleted). The required fields, in the order
    # REQUIRED_FIELD_MISSING lists them [O an Apex DmlException quoted in public code: "Required fields are
    # missing: [Username, LastName, Email, Alias, TimeZoneSidKey, LocaleSidKey, EmailEncodingKey, ProfileId,
    # LanguageLocaleKey]"]; ``users`` has the insert's other rules.
    SObject("User", "User", (
        Field("Id", ID, nillable=False), Field("Username", createable=True, nillable=False), Field("Name"),
        Field("FirstName", createable=True), Field("LastName", createable=True, nillable=False),
        Field("Email", EMAIL, createable=True, nillable=False), Field("Alias", createable=True, nillable=False),
        Field("TimeZoneSidKey", PICKLIST, createable=True, nillable=False),
        Field("LocaleSidKey", PICKLIST, createable=True, nillable=False),
        Field("EmailEncodingKey", PICKLIST, createable=True, nillable=False),
        Field("IsActive", BOOLEAN, createable=True, nillable=False, defaulted=True),
        Field("ProfileId", REFERENCE, "Profile", "Profile", createable=True, nillable=False),
        Field("LanguageLocaleKey", PICKLIST, createable=True, nillable=False),
        Field("UserType", PICKLIST), *_audit()), createable=True),
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
    # [D] object reference (ScratchOrgInfo, ActiveScratchOrg, ObjectPermissions) and the field reference for
    # names, types and which fields an insert may set. ScratchOrgInfo: create, delete, query, retrieve;
    # ActiveScratchOrg: delete, query, retrieve, no create. Both exist only in a Dev Hub ("not available in
    # sandboxes or scratch orgs" [D]); ``dev_hub`` and ``permissions`` decide who sees them.
    SObject("ScratchOrgInfo", "Scratch Org Info", (
        Field("Id", ID, nillable=False), *_owned(),
        Field("AdminEmail", EMAIL, createable=True), Field("AuthCode"),
        # [D] "Required" both; [O] cli#3515: the key without the callback is REQUIRED_FIELD_MISSING
        Field("ConnectedAppCallbackUrl", TEXTAREA, createable=True, nillable=False),
        Field("ConnectedAppConsumerKey", createable=True, nillable=False),
        Field("Country", createable=True), Field("DeletedBy"), Field("DeletedDate", DATE),
        Field("Description", TEXTAREA, createable=True), Field("DurationDays", INT, createable=True),
        Field("Edition", PICKLIST, createable=True), Field("ErrorCode"), Field("ExpirationDate", DATE),
        Field("Features", TEXTAREA, createable=True),
        Field("HasSampleData", BOOLEAN, createable=True, nillable=False, defaulted=True),
        Field("Language", PICKLIST, createable=True), Field("LastLoginDate", DATE), Field("LoginUrl"),
        Field("Namespace", createable=True), Field("OrgName", createable=True),
        Field("Package2AncestorIds", TEXTAREA, createable=True), Field("Release", PICKLIST, createable=True),
        Field("ScratchOrg"), Field("SignupEmail", EMAIL), Field("SignupInstance"), Field("SignupUsername"),
        Field("Snapshot", createable=True), Field("SourceOrg", createable=True),
        Field("Status", PICKLIST, nillable=False), Field("Username", createable=True), *_audit()),
        createable=True, deletable=True),
    SObject("ActiveScratchOrg", "Active Scratch Org", (
        Field("Id", ID, nillable=False), *_owned(),
        Field("Description", TEXTAREA), Field("Edition", PICKLIST), Field("ExpirationDate", DATE),
        Field("Features", TEXTAREA), Field("HasSampleData", BOOLEAN, nillable=False),
        Field("LastLoginDate", DATE), Field("Namespace"), Field("OrgName"), Field("ScratchOrg"),
        Field("ScratchOrgInfoId", REFERENCE, "ScratchOrgInfo", "ScratchOrgInfo", nillable=False),
        Field("SignupEmail", EMAIL), Field("SignupInstance"), Field("SignupTrialDays", INT),
        Field("SignupUsername"), *_audit()), deletable=True),
    # [D] ObjectPermissions: create, delete, query, retrieve (update/upsert too; the local org has no update)
    SObject("ObjectPermissions", "Object Permissions", (
        Field("Id", ID, nillable=False),
        Field("ParentId", REFERENCE, "PermissionSet", "Parent", createable=True, nillable=False),
        Field("SobjectType", PICKLIST, createable=True, nillable=False),
        _permission("PermissionsCreate"), _permission("PermissionsRead"), _permission("PermissionsEdit"),
        _permission("PermissionsDelete"), _permission("PermissionsViewAllRecords"),
        _permission("PermissionsModifyAllRecords"), Field("SystemModstamp", DATETIME, nillable=False),
        *_audit()), createable=True, deletable=True),
    # [D] Tooling API SourceMember: source tracking's changed components. [V sfdx-core updateRevisionCounterToZero]
    # after a settings deploy the CLI asks "SELECT Id FROM SourceMember WHERE RevisionCounter > 0" and fails the
    # create if the query fails; [U] a deploy here tracks nothing, so it is always empty (no update follows).
    SObject("SourceMember", "Source Member", (
        Field("Id", ID, nillable=False), Field("MemberName"), Field("MemberType"), Field("MemberIdOrName"),
        Field("ChangedBy"), Field("IsNameObsolete", BOOLEAN, nillable=False),
        Field("IsNewMember", BOOLEAN, nillable=False), Field("RevisionCounter", INT), Field("RevisionNum", INT),
        *_audit()), data_queryable=False),
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
