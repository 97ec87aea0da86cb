"""Object permissions: who may read, create, edit and delete the Dev Hub's scratch org objects.

A System Administrator may do everything (Modify All Data). Any other user holds what the
ObjectPermissions rows of their permission sets grant (the profile's own set included), as Salesforce
computes it [D ObjectPermissions: "To grant a user access to an object, associate an ObjectPermissions
record with a PermissionSet that's assigned to a user"]. The Dev Hub guide names what scratch orgs need
[D sfdx_setup_permission_set: "Scratch Org Infos > Read, Create, Edit, and Delete", "Active Scratch Orgs >
Read, Edit, and Delete"]; none of the seeded profiles but System Administrator grants them.

Only the objects in GUARDED are checked: the local org's other objects keep their older rule (REST
writes need an administrator). [U] Sharing is not emulated: a user who may read these objects reads
every record, not only the ones they own.

ObjectPermissions rows are created over REST (``records``) with Salesforce's rules: a permission needs
the ones it depends on [D: Create, Edit and Read All need Read; Delete needs Read and Edit; Modify All
needs Read, Edit, Delete and Read All], refused as "Permission <p> depends on permission(s): <q>" [O
wiki.sfxd.org, a data-load error], one row per permission set and object, and never all false [O the
same page; the wording is U].
"""

from __future__ import annotations

from runbook.localorg.model import seed
from runbook.localorg.model.context import Session
from runbook.localorg.model.schema import sobject
from runbook.localorg.model.store import Store

GUARDED = ("ScratchOrgInfo", "ActiveScratchOrg")
READ, CREATE, EDIT, DELETE = "Read", "Create", "Edit", "Delete"
_FIELD = {READ: "PermissionsRead", CREATE: "PermissionsCreate", EDIT: "PermissionsEdit", DELETE: "PermissionsDelete"}
# field -> the fields it needs, and how the dependency error names it
DEPENDS: dict[str, tuple[str, ...]] = {
    "PermissionsCreate": ("PermissionsRead",), "PermissionsEdit": ("PermissionsRead",),
    "PermissionsDelete": ("PermissionsRead", "PermissionsEdit"), "PermissionsViewAllRecords": ("PermissionsRead",),
    "PermissionsModifyAllRecords": ("PermissionsRead", "PermissionsEdit", "PermissionsDelete",
                                    "PermissionsViewAllRecords")}
LABELS = {"PermissionsRead": "Read", "PermissionsCreate": "Create", "PermissionsEdit": "Edit",
          "PermissionsDelete": "Delete", "PermissionsViewAllRecords": "Read All",
          "PermissionsModifyAllRecords": "Modify All"}
PERMISSION_FIELDS = tuple(LABELS)


def allowed(store: Store, session: Session, sobject_name: str, action: str) -> bool:
    """Whether the session's user may ``action`` (Read, Create, Edit, Delete) records of ``sobject_name``."""
    if session.is_admin:
        return True
    held = store.permission_set_ids_of(session.user["Id"])
    for row in store.find("ObjectPermissions", SobjectType=sobject_name):
        if row["ParentId"] not in held:
            continue
        if row[_FIELD[action]] or row["PermissionsModifyAllRecords"] or (
                action == READ and row["PermissionsViewAllRecords"]):
            return True
    return False


def can_view_setup(store: Store, session: Session) -> bool:
    """Whether the user has "View Setup and Configuration" (an administrator, or a permission set granting it)."""
    if session.is_admin:
        return True
    held = store.permission_set_ids_of(session.user["Id"])
    return any(store.get("PermissionSet", set_id)["PermissionsViewSetup"] for set_id in held)


def dependency_problems(values: dict[str, bool], sobject_name: str) -> list[str]:
    """Salesforce's text for each granted permission whose dependencies are not granted with it."""
    schema = sobject(sobject_name)
    label = schema.label if schema else sobject_name
    problems = []
    for name in PERMISSION_FIELDS:
        missing = [need for need in DEPENDS.get(name, ()) if values.get(name) and not values.get(need)]
        if missing:
            needs = ", ".join(f"{LABELS[need]} {label}" for need in missing)  # [U] the separator
            problems.append(f"Permission {LABELS[name]} {label} depends on permission(s): {needs}")
    return problems


def upgrade(store: Store) -> None:
    """Bring a state an older version seeded up to a fresh org's profiles and permission-set fields."""
    with store.transaction():
        for name in seed.PROFILES:
            if not store.find("Profile", Name=name):
                profile_id = store.insert("Profile", {"Name": name, "UserType": "Standard"})
                store.insert("PermissionSet", {"Name": f"X{profile_id[:15]}", "Label": profile_id[:15],
                                               "IsOwnedByProfile": True, "ProfileId": profile_id, "IsCustom": False})
        for row in store.find("PermissionSet", PermissionsViewSetup=None):
            profile = store.get("Profile", row["ProfileId"]) if row["ProfileId"] else None
            store.update("PermissionSet", row["Id"],
                         {"PermissionsViewSetup": bool(profile and profile["Name"] == seed.ADMIN_PROFILE)})
