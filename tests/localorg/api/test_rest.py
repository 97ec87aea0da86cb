"""The REST data API through simple-salesforce and plain requests: query, sObject writes, errors."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest

from runbook.localorg.model.seed import PROFILES

from ..support import app_id, bearer, create_connected_app, first_id, unique


def rest(org, token, method, path, **kwargs) -> requests.Response:
    return requests.request(method, f"{org.url}/services/data/v62.0/{path}", headers=bearer(token),
                            verify=org.ca_bundle, timeout=5, **kwargs)


@pytest.fixture(scope="module")
def connected_app(sf, keys) -> str:
    return app_id(sf, create_connected_app(sf, keys, profiles=()))


def test_query_with_and_without_trailing_slash_and_columns(org, admin_token):
    for path in ("query", "query/"):
        body = rest(org, admin_token, "GET", path, params={"q": "SELECT Id, Name FROM Profile"}).json()
        assert body["totalSize"] == len(PROFILES) and body["done"] is True
    columns = rest(org, admin_token, "GET", "query",
                   params={"q": "SELECT Id FROM Profile", "columns": "true"}).json()
    assert columns["columnMetadata"][0]["columnName"] == "Id" and columns["entityName"] == "Profile"


def test_dev_hub_answers_scratch_org_info(org, admin_token):
    response = rest(org, admin_token, "GET", "query", params={"q": "SELECT Id FROM ScratchOrgInfo limit 1"})
    assert response.status_code == 200 and response.json()["records"] == []


def test_query_errors_are_salesforce_arrays(org, admin_token):
    cases = {"SELECT Id FRM Profile": "MALFORMED_QUERY", "SELECT Id FROM Account": "INVALID_TYPE",
             "SELECT Nope FROM Profile": "INVALID_FIELD"}
    for query, code in cases.items():
        response = rest(org, admin_token, "GET", "query", params={"q": query})
        assert response.status_code == 400
        assert response.json()[0]["errorCode"] == code and "ERROR at Row:1" in response.json()[0]["message"]
    assert rest(org, admin_token, "GET", "query").json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_no_or_bad_token_is_401_invalid_session_id(org):
    for headers in ({}, bearer("00Dx!nope")):
        response = requests.get(f"{org.url}/services/data/v62.0/query", headers=headers,
                                params={"q": "SELECT Id FROM Profile"}, verify=org.ca_bundle, timeout=5)
        assert response.status_code == 401
        assert response.json() == [{"message": "Session expired or invalid",
                                    "errorCode": "INVALID_SESSION_ID"}]


def test_setup_entity_access_create_duplicate_query_and_delete(sf, connected_app):
    admin_set = sf.query("SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND "
                         "Profile.Name = 'System Administrator'")["records"][0]["Id"]
    created = sf.SetupEntityAccess.create({"ParentId": admin_set[:15], "SetupEntityId": connected_app})
    assert created["success"] is True and created["errors"] == [] and created["id"].startswith("0J0")
    with pytest.raises(SalesforceMalformedRequest) as duplicate:
        sf.SetupEntityAccess.create({"ParentId": admin_set, "SetupEntityId": connected_app})
    assert duplicate.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    assert duplicate.value.content[0]["message"] == (
        f"duplicate value found: <unknown> duplicates value on record with id: {created['id']}")
    row = sf.query(f"SELECT ParentId, SetupEntityType, Parent.Profile.Name FROM SetupEntityAccess "
                   f"WHERE Id = '{created['id']}'")["records"][0]
    assert row["ParentId"] == admin_set and row["SetupEntityType"] == "ConnectedApplication"
    assert row["Parent"]["Profile"]["Name"] == "System Administrator"
    assert sf.SetupEntityAccess.delete(created["id"]) == 204
    assert sf.query(f"SELECT COUNT() FROM SetupEntityAccess WHERE Id = '{created['id']}'")["totalSize"] == 0


@pytest.mark.parametrize(("body", "code"), [
    ({"ParentId": "0PS000000000001AAA", "SetupEntityId": "x"}, "INVALID_CROSS_REFERENCE_KEY"),
    ({"ParentId": "0PS"}, "REQUIRED_FIELD_MISSING"),
    ({"ParentId": "0PS", "SetupEntityId": "0H4", "SetupEntityType": "ConnectedApplication"},
     "INVALID_FIELD_FOR_INSERT_UPDATE"),
    ({"Id": "0J0000000000001AAA"}, "INVALID_FIELD"),
    ({"Nope": 1}, "INVALID_FIELD"),
])
def test_setup_entity_access_refusals(org, admin_token, body, code):
    response = rest(org, admin_token, "POST", "sobjects/SetupEntityAccess/", json=body)
    assert response.status_code == 400 and response.json()[0]["errorCode"] == code


def test_permission_set_rules_and_assignments(sf, org, admin_token):
    name = unique("Runbook_CI")
    set_id = sf.PermissionSet.create({"Name": name, "Label": "Runbook CI"})["id"]
    record = sf.PermissionSet.get(set_id)
    assert (record["Name"], record["IsOwnedByProfile"], record["IsCustom"], record["ProfileId"]) == (
        name, False, True, None)
    for bad in ("has space", "1starts_with_digit", "double__underscore", "trailing_"):
        response = rest(org, admin_token, "POST", "sobjects/PermissionSet", json={"Name": bad, "Label": "x"})
        assert response.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION", bad
    duplicate = rest(org, admin_token, "POST", "sobjects/PermissionSet",
                     json={"Name": name.upper(), "Label": "x"})
    assert duplicate.json()[0]["errorCode"] == "DUPLICATE_VALUE"

    user_id = sf.query("SELECT Id FROM User WHERE Username = 'readonly@local.devhub'")["records"][0]["Id"]
    assignment = sf.PermissionSetAssignment.create({"AssigneeId": user_id, "PermissionSetId": set_id})["id"]
    assert assignment.startswith("0Pa")
    again = rest(org, admin_token, "POST", "sobjects/PermissionSetAssignment",
                 json={"AssigneeId": user_id, "PermissionSetId": set_id})
    assert again.json()[0]["errorCode"] == "DUPLICATE_VALUE"
    profile_set = first_id(sf, "SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true LIMIT 1")
    refused = rest(org, admin_token, "POST", "sobjects/PermissionSetAssignment",
                   json={"AssigneeId": user_id, "PermissionSetId": profile_set})
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert sf.PermissionSet.delete(set_id) == 204
    left = sf.query(f"SELECT COUNT() FROM PermissionSetAssignment WHERE Id = '{assignment}'")
    assert left["totalSize"] == 0


def test_read_only_objects_and_missing_records(org, admin_token, sf):
    refused = rest(org, admin_token, "POST", "sobjects/Profile", json={"Name": "x"})
    assert refused.json()[0] == {"message": "entity type cannot be inserted: Profile",
                                 "errorCode": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "fields": []}
    missing = rest(org, admin_token, "GET", "sobjects/User/005000000000000AAA")
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    assert rest(org, admin_token, "GET", "sobjects/Nope/005000000000000AAA").status_code == 404
    gone = rest(org, admin_token, "DELETE", "sobjects/SetupEntityAccess/0J0000000000000AAA")
    assert gone.status_code == 404


def test_retrieve_user_like_the_cli_after_userinfo(org, admin_token, sf):
    user_id = sf.query("SELECT Id FROM User WHERE Username = 'admin@local.devhub'")["records"][0]["Id"]
    record = rest(org, admin_token, "GET", f"sobjects/User/{user_id[:15]}").json()
    assert record["Username"] == "admin@local.devhub" and record["attributes"]["type"] == "User"
    some = rest(org, admin_token, "GET", f"sobjects/User/{user_id}", params={"fields": "Username"}).json()
    assert some == {"attributes": record["attributes"], "Username": "admin@local.devhub"}


def test_describe_global_describe_and_resources(org, admin_token):
    names = {s["name"] for s in rest(org, admin_token, "GET", "sobjects").json()["sobjects"]}
    assert {"SetupEntityAccess", "ConnectedApplication", "PermissionSet"} <= names
    describe = rest(org, admin_token, "GET", "sobjects/SetupEntityAccess/describe").json()
    fields = {f["name"]: f for f in describe["fields"]}
    assert fields["ParentId"]["relationshipName"] == "Parent"
    assert fields["SetupEntityType"]["createable"] is False
    assert "sobjects" in rest(org, admin_token, "GET", "").json()


def test_expired_session_error_reaches_simple_salesforce_as_expired_session(sf):
    from simple_salesforce import Salesforce

    broken = Salesforce(instance_url=f"https://{sf.sf_instance}", session_id="00Dx!gone")
    with pytest.raises(SalesforceExpiredSession):
        broken.query("SELECT Id FROM Profile")
