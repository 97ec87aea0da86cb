"""Who may use the Dev Hub: object permissions on ScratchOrgInfo and ActiveScratchOrg, granted by a permission set's
ObjectPermissions rows, refused as Salesforce refuses; the "Minimum Access - API Only Integrations" profile.

[D] sfdx_setup_permission_set: "Scratch Org Infos > Read, Create, Edit, and Delete", "Active Scratch Orgs >
Read, Edit, and Delete". The users here are seeded ones logged in through a JWT app pre-authorized for their
profile; the permission sets are made over REST as phase 3 would.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

import pytest

from runbook.localorg import LocalOrg

from ..conftest import soap_login
from ..scratch_support import DevHub, jwt_token, make_dev_hub
from ..support import unique

SCRATCH_DEV_HUB = {"ScratchOrgInfo": ("Read", "Create", "Edit", "Delete"),
                   "ActiveScratchOrg": ("Read", "Edit", "Delete")}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, keys) -> Iterator[DevHub]:
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("hub"), daily_scratch_orgs=100, active_scratch_orgs=50) as org:
        os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
        yield make_dev_hub(org, soap_login(org), keys, profiles=("System Administrator", "Standard User", "Read Only"))
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


def login(hub: DevHub, username: str) -> str:
    response = jwt_token(hub.org.url, hub.org.ca_bundle, hub.keys, iss=hub.consumer_key, sub=username)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def permission_set(hub: DevHub, grants: dict[str, tuple[str, ...]], *, assignee: str | None = None,
                   **fields) -> str:
    """A permission set with ObjectPermissions rows for ``grants``, assigned to ``assignee``; its Id."""
    name = unique("DevHub")
    created = hub.rest("POST", "sobjects/PermissionSet", json={"Name": name, "Label": name, **fields})
    assert created.status_code == 201, created.text
    set_id = created.json()["id"]
    for sobject, actions in grants.items():
        row = hub.rest("POST", "sobjects/ObjectPermissions", json={
            "ParentId": set_id, "SobjectType": sobject, **{f"Permissions{a}": True for a in actions}})
        assert row.status_code == 201, row.text
    if assignee:
        user_id = hub.query(f"SELECT Id FROM User WHERE Username = '{assignee}'").json()["records"][0]["Id"]
        assigned = hub.rest("POST", "sobjects/PermissionSetAssignment",
                            json={"AssigneeId": user_id, "PermissionSetId": set_id})
        assert assigned.status_code == 201, assigned.text
    return set_id


@contextlib.contextmanager
def granted(hub: DevHub, grants: dict[str, tuple[str, ...]], assignee: str, **fields) -> Iterator[str]:
    """``permission_set`` for the length of a ``with`` block: deleting the set takes its rows and assignment."""
    set_id = permission_set(hub, grants, assignee=assignee, **fields)
    try:
        yield set_id
    finally:
        hub.rest("DELETE", f"sobjects/PermissionSet/{set_id}")


def test_the_api_only_integration_profile_is_seeded_with_no_object_access(hub):
    profiles = hub.query("SELECT Id, Name FROM Profile WHERE Name = 'Minimum Access - API Only Integrations'")
    assert profiles.json()["totalSize"] == 1
    owned = hub.query("SELECT Id, PermissionsViewSetup FROM PermissionSet WHERE IsOwnedByProfile = true AND "
                      "Profile.Name = 'Minimum Access - API Only Integrations'").json()["records"]
    assert len(owned) == 1 and owned[0]["PermissionsViewSetup"] is False
    grants = hub.query(f"SELECT Id FROM ObjectPermissions WHERE ParentId = '{owned[0]['Id']}'")
    assert grants.json()["totalSize"] == 0


def test_a_user_without_the_dev_hub_permissions_does_not_see_the_scratch_org_objects(hub):
    token = login(hub, "dev@local.devhub")  # Standard User, no permission set
    check = hub.query("SELECT Id FROM ScratchOrgInfo limit 1", token=token)  # the CLI's isDevHub check
    assert check.status_code == 400 and check.json()[0]["errorCode"] == "INVALID_TYPE"
    assert "sObject type 'ScratchOrgInfo' is not supported" in check.json()[0]["message"]
    active = hub.query("SELECT Id FROM ActiveScratchOrg WHERE SignupUsername = 'x@example.com'", token=token)
    assert active.status_code == 400 and active.json()[0]["errorCode"] == "INVALID_TYPE"
    semi_join = hub.query("SELECT Id FROM User WHERE Id IN (SELECT OwnerId FROM ScratchOrgInfo)", token=token)
    assert semi_join.json()[0]["errorCode"] == "INVALID_TYPE"
    insert = hub.insert(hub.cli_body(), token=token)
    assert insert.status_code == 404 and insert.json()[0]["errorCode"] == "NOT_FOUND"
    assert hub.rest("GET", "sobjects/ScratchOrgInfo/describe", token=token).status_code == 404
    limits = hub.rest("GET", "limits", token=token)
    assert limits.status_code == 403 and limits.json()[0]["errorCode"] == "INSUFFICIENT_ACCESS"


def test_read_without_create_lets_a_user_query_but_not_sign_up(hub):
    permission_set(hub, {"ScratchOrgInfo": ("Read",)}, assignee="readonly@local.devhub")
    token = login(hub, "readonly@local.devhub")  # readonly@ and ci@ keep their sets: no other test uses them
    assert hub.query("SELECT Id FROM ScratchOrgInfo limit 1", token=token).status_code == 200
    insert = hub.insert(hub.cli_body(), token=token)
    assert insert.status_code == 400 and insert.json()[0] == {
        "message": "entity type cannot be inserted: Scratch Org Info",
        "errorCode": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "fields": []}
    describe = hub.rest("GET", "sobjects/ScratchOrgInfo/describe", token=token).json()
    assert describe["createable"] is False and describe["deletable"] is False


def test_the_dev_hub_permission_set_lets_a_ci_user_create_and_delete_scratch_orgs(hub):
    permission_set(hub, SCRATCH_DEV_HUB, assignee="ci@local.devhub")
    token = login(hub, "ci@local.devhub")
    record = hub.create(token=token)
    assert record["Status"] == "Active" and record["SignupEmail"] == "ci@local.devhub"
    active_id = hub.query(f"SELECT Id FROM ActiveScratchOrg WHERE SignupUsername = '{record['SignupUsername']}'",
                          token=token).json()["records"][0]["Id"]
    assert hub.rest("DELETE", f"sobjects/ActiveScratchOrg/{active_id}", token=token).status_code == 204
    after = hub.rest("GET", f"sobjects/ScratchOrgInfo/{record['Id']}", token=token).json()
    ci_id = hub.query("SELECT Id FROM User WHERE Username = 'ci@local.devhub'").json()["records"][0]["Id"]
    assert after["Status"] == "Deleted" and after["DeletedBy"] == ci_id[:15] and after["CreatedById"] == ci_id


def test_delete_without_the_delete_permission_is_insufficient_access(hub):
    admin_made = hub.create()
    with granted(hub, {"ScratchOrgInfo": ("Read", "Create"), "ActiveScratchOrg": ("Read",)}, "dev@local.devhub"):
        token = login(hub, "dev@local.devhub")
        active_id = hub.active_id(admin_made["SignupUsername"])
        refused = hub.rest("DELETE", f"sobjects/ActiveScratchOrg/{active_id}", token=token)
        assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
        assert hub.rest("GET", f"sobjects/ActiveScratchOrg/{active_id}").status_code == 200  # still there


def test_view_setup_lets_a_user_read_the_limits(hub):
    with granted(hub, {"ScratchOrgInfo": ("Read",)}, "dev@local.devhub", PermissionsViewSetup=True) as set_id:
        limits = hub.rest("GET", "limits", token=login(hub, "dev@local.devhub"))
        assert limits.status_code == 200 and set(limits.json()) == {"ActiveScratchOrgs", "DailyScratchOrgs"}
    assert hub.query(f"SELECT Id FROM ObjectPermissions WHERE ParentId = '{set_id}'").json()["totalSize"] == 0


@pytest.mark.parametrize(("grant", "code", "text"), [
    ({"PermissionsCreate": True}, "FIELD_INTEGRITY_EXCEPTION",
     "Permission Create Scratch Org Info depends on permission(s): Read Scratch Org Info"),
    ({"PermissionsRead": True, "PermissionsDelete": True}, "FIELD_INTEGRITY_EXCEPTION",
     "Permission Delete Scratch Org Info depends on permission(s): Edit Scratch Org Info"),
    ({"PermissionsRead": False}, "FIELD_INTEGRITY_EXCEPTION",
     "An object permissions record needs at least one permission."),
    ({"PermissionsRead": "yes"}, "JSON_PARSER_ERROR", "Cannot deserialize instance of boolean"),
    ({"PermissionsRead": True, "SobjectType": "Account"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
     "bad value for restricted picklist field: Account"),
    ({"PermissionsRead": True, "Nope": True}, "INVALID_FIELD", "No such column 'Nope' on sobject"),
])
def test_object_permissions_rules(hub, grant, code, text):
    set_id = permission_set(hub, {})
    response = hub.rest("POST", "sobjects/ObjectPermissions",
                        json={"ParentId": set_id, "SobjectType": "ScratchOrgInfo", **grant})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code and response.json()[0]["message"].startswith(text)


def test_object_permissions_once_per_set_and_object_and_not_on_a_profile(hub):
    set_id = permission_set(hub, {"ActiveScratchOrg": ("Read",)})
    again = hub.rest("POST", "sobjects/ObjectPermissions",
                     json={"ParentId": set_id, "SobjectType": "ActiveScratchOrg", "PermissionsRead": True})
    assert again.json()[0]["errorCode"] == "DUPLICATE_VALUE"
    owned = hub.query("SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND "
                      "Profile.Name = 'Minimum Access - API Only Integrations'").json()["records"][0]["Id"]
    on_profile = hub.rest("POST", "sobjects/ObjectPermissions",
                          json={"ParentId": owned, "SobjectType": "ScratchOrgInfo", "PermissionsRead": True})
    assert on_profile.status_code == 400 and on_profile.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    rows = hub.query(f"SELECT Id, SobjectType, PermissionsRead, PermissionsDelete, Parent.Name FROM ObjectPermissions "
                     f"WHERE ParentId = '{set_id}'").json()["records"]
    assert [(r["SobjectType"], r["PermissionsRead"], r["PermissionsDelete"]) for r in rows] == [
        ("ActiveScratchOrg", True, False)]
    assert rows[0]["Id"].startswith("110")


def test_a_state_from_an_older_version_gains_the_new_fields_and_profile(tmp_path, keys, monkeypatch):
    with LocalOrg(tmp_path / "hub"):
        pass
    with sqlite3.connect(tmp_path / "hub" / "org.sqlite3") as db:  # as the version before scratch orgs left it
        for column in ("OwnerId", "ConnectedAppConsumerKey", "ConnectedAppCallbackUrl", "LoginUrl", "AuthCode"):
            db.execute(f'ALTER TABLE "ScratchOrgInfo" DROP COLUMN "{column}"')
        db.execute('ALTER TABLE "PermissionSet" DROP COLUMN "PermissionsViewSetup"')
        db.execute('DROP TABLE "ActiveScratchOrg"')
        profile_id = db.execute("SELECT Id FROM Profile WHERE Name = 'Minimum Access - API Only Integrations'"
                                ).fetchone()[0]
        db.execute("DELETE FROM PermissionSet WHERE ProfileId = ?", (profile_id,))
        db.execute("DELETE FROM Profile WHERE Id = ?", (profile_id,))
    with LocalOrg(tmp_path / "hub") as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_bundle))
        hub = make_dev_hub(org, soap_login(org), keys)
        assert hub.query("SELECT Id FROM ScratchOrgInfo limit 1").status_code == 200
        assert hub.create()["Status"] == "Active"
        assert hub.query("SELECT Id FROM Profile WHERE Name = 'Minimum Access - API Only Integrations'").json()[
            "totalSize"] == 1
