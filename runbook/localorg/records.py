"""sObject writes over REST: the rules for creating and deleting the records pre-authorization needs.

Creatable: SetupEntityAccess (ParentId + SetupEntityId; SetupEntityType follows from the id),
PermissionSet (API-name rules, unique Name), PermissionSetAssignment (not for profile-owned
sets) and ObjectPermissions (see ``permissions``). ScratchOrgInfo inserts go through ``scratch``,
which uses ``check_fields`` here. Errors carry Salesforce's error codes; texts marked [U] below are
best guesses.
"""

from __future__ import annotations

from typing import Any

from runbook.localorg import ids, permissions
from runbook.localorg.components import API_NAME_RULES, is_api_name
from runbook.localorg.schema import SOBJECTS, SObject
from runbook.localorg.store import Store

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


_CREATORS = {"SetupEntityAccess": _create_setup_entity_access, "PermissionSet": _create_permission_set,
             "PermissionSetAssignment": _create_assignment, "ObjectPermissions": _create_object_permissions}


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
