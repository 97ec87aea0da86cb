"""sObject writes over REST: the rules for creating and deleting the records pre-authorization needs.

Creatable: SetupEntityAccess (ParentId + SetupEntityId; SetupEntityType follows from the id),
PermissionSet (API-name rules, unique Name), PermissionSetAssignment (not for profile-owned
sets), ObjectPermissions (see ``permissions``) and User (below). ScratchOrgInfo inserts go through
``scratch``, which uses ``check_fields`` here. Errors carry Salesforce's error codes; texts marked [U]
below are best guesses.

A User insert (sObject create or a Composite subrequest, as an admin: "Manage Users"):
- the required fields (``schema``) missing: REQUIRED_FIELD_MISSING, listed in Salesforce's order [O];
- ``Username`` "in the form of an email address" [D User], checked loosely: text, one ``@``, a domain with a dot;
  more ``@`` pass [O salesforce.stackexchange.com/q/136843]; else FIELD_INTEGRITY_EXCEPTION "Username must be in
  the form of an email address (for example, john@acme.com): Username" [O Okta KB "Salesforce Provisioning
  Error", the same text in an Apex DmlException quoted in public code];
- ``Username`` unique "across all Salesforce organizations": DUPLICATE_USERNAME with Salesforce's text [O
  afawcett/githubsfdeploy#20, patronmanager/apex-dml-manager#14]; here that is this org's users and its scratch
  orgs' usernames (``username_taken``), in any letter case; [U] a new username is kept lower-case;
- ``Email``: INVALID_EMAIL_ADDRESS "Email: invalid email address: <value>" [O Apex messages in public code];
- ``Username`` at most 80 characters, ``Alias`` at most 8 [D User field lengths]: STRING_TOO_LONG "<Field>: data
  value too large: <value> (max length=<n>)" [O the text's form];
- ``ProfileId`` a Profile of this org: else INVALID_CROSS_REFERENCE_KEY, as for the other references here [U];
- ``TimeZoneSidKey``, ``LocaleSidKey``, ``EmailEncodingKey``, ``LanguageLocaleKey`` are restricted picklists
  [D]: INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST "bad value for restricted picklist field: <value>" [O the text];
  which values pass is [U]: an IANA time zone (or GMT), a locale or language code of Salesforce's shape
  (``en_US``, ``de``), and the email encodings of the User object's picklist;
- ``IsActive`` true unless sent false; ``Name`` is "FirstName LastName" and ``UserType`` the profile's [U]. A new user
  has no password: it logs in by OAuth only, e.g. by the JWT bearer flow once an app pre-authorizes it.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from runbook.localorg.model import ids, permissions
from runbook.localorg.model.components import API_NAME_RULES, is_api_name
from runbook.localorg.model.schema import SOBJECTS, SObject
from runbook.localorg.model.store import Store

_SETUP_ENTITIES = ("ConnectedApplication", "ExternalClientApplication")
_READ_ONLY_FIELD = ("Unable to create/update fields: {}. Please check the security settings of this field "
                    "and verify that it is read/write for your profile or permission set.")


class RecordError(Exception):
    """A refused write: HTTP ``status`` with ``[{"message", "errorCode", "fields"}]``."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.fields, self.status = code, message, fields or [], status

    def body(self) -> list[dict[str, Any]]:
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]


def check_fields(schema: SObject, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with canonical field names; refuses Id, unknown, read-only and missing required fields."""
    values = {}
    for name, value in data.items():
        if name.lower() == "id":
            raise RecordError("INVALID_FIELD", "The Id field should not be specified in the sobject data.")
        found = schema.field(name)
        if found is None:
            raise RecordError("INVALID_FIELD", f"No such column '{name}' on sobject of type {schema.name}",
                              [name])
        if not found.createable:
            raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", _READ_ONLY_FIELD.format(found.name),
                              [found.name])
        values[found.name] = value
    missing = [f.name for f in schema.fields
               if f.createable and not f.nillable and not f.defaulted and values.get(f.name) in (None, "")]
    if missing:
        raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                          missing)
    return values


def _reference(store: Store, value: Any, field: str, allowed: tuple[str, ...]) -> tuple[str, str]:
    """The 18-character id and sObject type of a reference; refuses ids of other types or missing records."""
    record_id = ids.normalize(value)
    sobject = ids.sobject_of(record_id) if record_id else None
    if record_id is None or sobject not in allowed or store.get(sobject, record_id) is None:
        raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {value}", [field])
    return record_id, sobject


def _duplicate(record_id: str, field: str = "<unknown>") -> RecordError:
    return RecordError("DUPLICATE_VALUE",
                       f"duplicate value found: {field} duplicates value on record with id: {record_id}")


def _create_setup_entity_access(store: Store, values: dict[str, Any]) -> str:
    parent, _ = _reference(store, values["ParentId"], "ParentId", ("PermissionSet",))
    entity, entity_type = _reference(store, values["SetupEntityId"], "SetupEntityId", _SETUP_ENTITIES)
    existing = store.find("SetupEntityAccess", ParentId=parent, SetupEntityId=entity)
    if existing:
        raise _duplicate(existing[0]["Id"])
    return store.insert("SetupEntityAccess", {"ParentId": parent, "SetupEntityId": entity,
                                              "SetupEntityType": entity_type})


def _create_permission_set(store: Store, values: dict[str, Any]) -> str:
    name = str(values["Name"])
    if not is_api_name(name):
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", f"The Name field {API_NAME_RULES}", ["Name"])
    existing = store.find("PermissionSet", Name=name)
    if existing:  # [U] the field is named here, where SetupEntityAccess says <unknown>
        raise _duplicate(existing[0]["Id"], "Name")
    return store.insert("PermissionSet", {"PermissionsViewSetup": False, **values, "IsOwnedByProfile": False,
                                          "ProfileId": None, "IsCustom": True, "NamespacePrefix": None})


def _create_assignment(store: Store, values: dict[str, Any]) -> str:
    assignee, _ = _reference(store, values["AssigneeId"], "AssigneeId", ("User",))
    permission_set, _ = _reference(store, values["PermissionSetId"], "PermissionSetId", ("PermissionSet",))
    if store.get("PermissionSet", permission_set)["IsOwnedByProfile"]:  # [U] wording
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "You can't assign or unassign this permission set "
                          "because it's associated with a profile.", ["PermissionSetId"])
    existing = store.find("PermissionSetAssignment", AssigneeId=assignee, PermissionSetId=permission_set)
    if existing:
        raise _duplicate(existing[0]["Id"])
    return store.insert("PermissionSetAssignment",
                        {"AssigneeId": assignee, "PermissionSetId": permission_set})


def _create_object_permissions(store: Store, values: dict[str, Any]) -> str:
    """One permission set's access to one object (see ``permissions`` for the rules and their sources)."""
    parent, _ = _reference(store, values["ParentId"], "ParentId", ("PermissionSet",))
    if store.get("PermissionSet", parent)["IsOwnedByProfile"]:  # [U] wording: the seeded profiles are standard
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "You can't edit the object permissions of a standard "
                          "profile.", ["ParentId"])
    sobject = SOBJECTS.get(str(values["SobjectType"]))
    if sobject is None or sobject.name not in permissions.GUARDED:  # [O] restricted picklist wording
        raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                          f"bad value for restricted picklist field: {values['SobjectType']}", ["SobjectType"])
    granted = {}
    for name in permissions.PERMISSION_FIELDS:
        value = values.get(name, False)
        if not isinstance(value, bool):  # [U] wording
            raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of boolean from {value!r}",
                              [name])
        granted[name] = value
    if not any(granted.values()):  # [O] never all false; [U] wording
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "An object permissions record needs at least one "
                          "permission. To remove all access to the object, delete the record.")
    problems = permissions.dependency_problems(granted, sobject.name)
    if problems:
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "; ".join(problems))
    existing = store.find("ObjectPermissions", ParentId=parent, SobjectType=sobject.name)
    if existing:
        raise _duplicate(existing[0]["Id"])
    return store.insert("ObjectPermissions", {"ParentId": parent, "SobjectType": sobject.name, **granted})


# --- User -------------------------------------------------------------------------------------------

DUPLICATE_USERNAME = ("Duplicate Username.<br>The username already exists in this or another Salesforce "
                      "organization. Usernames must be unique across all Salesforce organizations. To resolve, use "
                      "a different username (it doesn't need to match the user's email address). ")  # [O] the space too
USERNAME_NOT_EMAIL = ("Username must be in the form of an email address (for example, john@acme.com): Username")
_USERNAME = re.compile(r"[^@\s]+@\S+\.\S+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MAX_LENGTHS = {"Username": 80, "Alias": 8}  # [D] User: Username string(80), Alias string(8)
_LOCALE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?(_[A-Za-z0-9]+)*")
_EMAIL_ENCODINGS = ("UTF-8", "ISO-8859-1", "Shift_JIS", "ISO-2022-JP", "EUC-JP", "ks_c_5601-1987", "Big5",
                    "GB2312", "Big5-HKSCS", "x-SJIS_0213")
_TIME_ZONE = re.compile(r"GMT|[A-Z][A-Za-z_]+(/[A-Za-z0-9_+-]+)+")  # when this machine has no tz database


def username_taken(store: Store, username: str) -> bool:
    """Whether a user of this org or one of its scratch orgs (not deleted, not failed) has ``username``."""
    if store.find("User", Username=username):
        return True
    return any(row["Status"] in ("Active", "Creating", "New")
               for row in store.find("ScratchOrgInfo", SignupUsername=username))


def _picklist_ok(name: str, value: str) -> bool:
    if name == "TimeZoneSidKey":
        zones = zoneinfo.available_timezones()
        return value in zones or value == "GMT" if zones else bool(_TIME_ZONE.fullmatch(value))
    if name == "EmailEncodingKey":
        return value in _EMAIL_ENCODINGS
    return bool(_LOCALE.fullmatch(value))  # LocaleSidKey, LanguageLocaleKey


def _checked_user(values: dict[str, Any]) -> dict[str, Any]:
    """The user's field values as text, refused as Salesforce refuses them (all but the references)."""
    for name, value in values.items():
        if name != "IsActive" and not isinstance(value, str):  # [U] wording
            raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of string from {value!r}", [name])
    if "IsActive" in values and not isinstance(values["IsActive"], bool):  # [U] wording
        raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of boolean from {values['IsActive']!r}",
                          ["IsActive"])
    for name, limit in _MAX_LENGTHS.items():
        if len(values[name]) > limit:
            raise RecordError("STRING_TOO_LONG", f"{name}: data value too large: {values[name]} (max length={limit})",
                              [name])
    if not _USERNAME.fullmatch(values["Username"]):
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", USERNAME_NOT_EMAIL, ["Username"])
    if not _EMAIL.fullmatch(values["Email"]):
        raise RecordError("INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {values['Email']}", ["Email"])
    for name in ("TimeZoneSidKey", "LocaleSidKey", "EmailEncodingKey", "LanguageLocaleKey"):
        if not _picklist_ok(name, values[name]):
            raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                              f"bad value for restricted picklist field: {values[name]}", [name])
    return values


def _create_user(store: Store, values: dict[str, Any]) -> str:
    values = _checked_user(values)
    profile_id, _ = _reference(store, values["ProfileId"], "ProfileId", ("Profile",))
    username = values["Username"].lower()
    if username_taken(store, username):
        raise RecordError("DUPLICATE_USERNAME", DUPLICATE_USERNAME, ["Username"])
    profile = store.get("Profile", profile_id)
    name = " ".join(part for part in (values.get("FirstName"), values["LastName"]) if part)
    return store.insert("User", {**values, "Username": username, "ProfileId": profile_id, "Name": name,
                                 "IsActive": values.get("IsActive", True), "UserType": profile["UserType"]})


_CREATORS = {"SetupEntityAccess": _create_setup_entity_access, "PermissionSet": _create_permission_set,
             "PermissionSetAssignment": _create_assignment, "ObjectPermissions": _create_object_permissions,
             "User": _create_user}


def create(store: Store, sobject: str, data: dict[str, Any]) -> str:
    """Create one record of ``sobject`` from REST JSON; returns its Id."""
    schema = SOBJECTS[sobject]
    if sobject not in _CREATORS:
        raise RecordError("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                          f"entity type cannot be inserted: {schema.label}")
    with store.transaction():
        return _CREATORS[sobject](store, check_fields(schema, data))


def delete(store: Store, sobject: str, record_id: str) -> None:
    """Delete one record. Deleting a permission set also removes its grants and assignments [U]."""
    schema = SOBJECTS[sobject]
    if not schema.deletable:  # [U] wording, modelled on the insert refusal
        raise RecordError("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                          f"entity type cannot be deleted: {schema.label}")
    with store.transaction():
        record = store.get(sobject, record_id)
        if record is None:
            raise RecordError("NOT_FOUND", "The requested resource does not exist", status=404)
        if sobject == "PermissionSet":
            if record["IsOwnedByProfile"]:  # [U] wording
                raise RecordError("FIELD_INTEGRITY_EXCEPTION",
                                  "You can't delete a permission set that's owned by a profile.")
            store.delete("SetupEntityAccess", ParentId=record_id)
            store.delete("PermissionSetAssignment", PermissionSetId=record_id)
            store.delete("ObjectPermissions", ParentId=record_id)
        store.delete(sobject, Id=record_id)
