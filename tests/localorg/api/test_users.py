"""User inserts as the runbook and simple-salesforce make them (sObject create, Composite), Salesforce's refusals,
and the new user as a JWT subject once an app pre-authorizes it through a permission set."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce.exceptions import SalesforceMalformedRequest

from runbook.localorg.model.records import DUPLICATE_USERNAME
from runbook.localorg.model.seed import ADMIN_USERNAME, API_ONLY_PROFILE

from ..conftest import soap_login
from ..scratch_support import make_dev_hub
from ..support import assertion, bearer, consumer_key, create_connected_app, first_id, token_request, unique

REQUIRED = ["Username", "LastName", "Email", "Alias", "TimeZoneSidKey", "LocaleSidKey", "EmailEncodingKey",
            "ProfileId", "LanguageLocaleKey"]  # in the order Salesforce lists them


def rest(org, token, method, path, **kwargs) -> requests.Response:
    return requests.request(method, f"{org.url}/services/data/v62.0/{path}", headers=bearer(token),
                            verify=org.ca_bundle, timeout=5, **kwargs)


@pytest.fixture(scope="module")
def api_only_profile(sf) -> str:
    return first_id(sf, f"SELECT Id FROM Profile WHERE Name = '{API_ONLY_PROFILE}'")


def user_fields(profile_id: str, **changes) -> dict:
    """What runbook.phases.access sends for a new CI user, with a fresh username."""
    username = f"{unique('ci').lower()}@example.com"
    return {"Username": username, "LastName": "CI", "FirstName": "Runbook", "Email": username, "Alias": "ci",
            "ProfileId": profile_id, "TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8",
            "LanguageLocaleKey": "en_US", **changes}


def refused(sf, fields: dict) -> dict:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.User.create(fields)
    assert len(caught.value.content) == 1
    return caught.value.content[0]


def test_a_user_insert_without_fields_names_every_required_one_in_salesforces_order(org, admin_token):
    response = rest(org, admin_token, "POST", "sobjects/User", json={})
    assert response.status_code == 400
    assert response.json() == [{"message": f"Required fields are missing: [{', '.join(REQUIRED)}]",
                                "errorCode": "REQUIRED_FIELD_MISSING", "fields": REQUIRED}]


def test_a_new_user_gets_its_profile_and_is_active_without_a_password(sf, api_only_profile):
    fields = user_fields(api_only_profile, Username="Mixed.Case@Example.com")
    created = sf.User.create(fields)
    assert created["success"] is True and created["id"].startswith("005")
    user = sf.query(f"SELECT Username, Name, IsActive, UserType, Alias, TimeZoneSidKey, Profile.Name FROM User "
                    f"WHERE Id = '{created['id']}'")["records"][0]
    assert user["Username"] == "mixed.case@example.com" and user["Name"] == "Runbook CI"
    assert user["IsActive"] is True and user["UserType"] == "Standard" and user["Alias"] == "ci"
    assert user["Profile"]["Name"] == API_ONLY_PROFILE and user["TimeZoneSidKey"] == "GMT"


def test_a_taken_username_is_duplicate_username_in_any_case(sf, api_only_profile):
    error = refused(sf, user_fields(api_only_profile, Username=ADMIN_USERNAME.upper()))
    assert error == {"message": DUPLICATE_USERNAME, "errorCode": "DUPLICATE_USERNAME", "fields": ["Username"]}
    assert error["message"].startswith("Duplicate Username.<br>The username already exists in this or another "
                                       "Salesforce organization. Usernames must be unique across all Salesforce")


def test_a_scratch_orgs_username_is_taken_for_its_dev_hubs_users_too(fresh_org, keys):
    """Usernames are unique across all orgs: the hub knows the ones its scratch orgs were signed up with."""
    hub = make_dev_hub(fresh_org, soap_login(fresh_org), keys)
    record = hub.create()
    assert record["Status"] == "Active", record
    profile_id = hub.query("SELECT Id FROM Profile WHERE Name = 'Standard User'").json()["records"][0]["Id"]
    response = hub.rest("POST", "sobjects/User", json=user_fields(profile_id, Username=record["SignupUsername"]))
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "DUPLICATE_USERNAME"


@pytest.mark.parametrize("username", ["ci", "ci@", "@example.com", "ci@example", "c i@example.com"])
def test_a_username_that_is_no_email_address_is_refused(sf, api_only_profile, username):
    error = refused(sf, user_fields(api_only_profile, Username=username))
    assert error == {"errorCode": "FIELD_INTEGRITY_EXCEPTION", "fields": ["Username"], "message":
                     "Username must be in the form of an email address (for example, john@acme.com): Username"}


def test_a_username_with_a_second_at_sign_passes_as_on_salesforce(sf, api_only_profile):
    assert sf.User.create(user_fields(api_only_profile, Username=f"{unique('x')}@example.com@partner.dev"))["success"]


def test_a_bad_email_is_invalid_email_address(sf, api_only_profile):
    error = refused(sf, user_fields(api_only_profile, Email="ci.example.com"))
    assert error == {"message": "Email: invalid email address: ci.example.com", "errorCode": "INVALID_EMAIL_ADDRESS",
                     "fields": ["Email"]}


def test_a_profile_id_that_names_no_profile_is_invalid_cross_reference_key(sf, api_only_profile):
    permission_set = first_id(sf, "SELECT Id FROM PermissionSet LIMIT 1")
    for value in (permission_set, "00eLC0000000999AAA", "nope"):
        error = refused(sf, user_fields(api_only_profile, ProfileId=value))
        assert error["errorCode"] == "INVALID_CROSS_REFERENCE_KEY" and error["fields"] == ["ProfileId"], value


@pytest.mark.parametrize(("field", "value", "code"), [
    ("Alias", "ninechars", "STRING_TOO_LONG"), ("Username", "u" * 70 + "@example.com", "STRING_TOO_LONG"),
    ("TimeZoneSidKey", "Mars/Olympus", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ("EmailEncodingKey", "UTF-9", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ("LanguageLocaleKey", "English", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ("IsActive", "yes", "JSON_PARSER_ERROR"), ("Name", "Runbook CI", "INVALID_FIELD_FOR_INSERT_UPDATE"),
    ("CommunityNickname", "ci", "INVALID_FIELD")])
def test_fields_salesforce_refuses(sf, api_only_profile, field, value, code):
    error = refused(sf, user_fields(api_only_profile, **{field: value}))
    assert error["errorCode"] == code and error["fields"] == [field], error
    if code == "STRING_TOO_LONG":
        limit = 8 if field == "Alias" else 80
        assert error["message"] == f"{field}: data value too large: {value} (max length={limit})"


def test_a_user_cannot_be_deleted_only_deactivated(org, admin_token, sf, api_only_profile):
    user_id = sf.User.create(user_fields(api_only_profile))["id"]
    response = rest(org, admin_token, "DELETE", f"sobjects/User/{user_id}")
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"


def _composite(sf, fields: dict, set_name: str) -> dict:
    base = "/services/data/v62.0/sobjects"
    return sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": f"{base}/User/", "referenceId": "user", "body": fields},
        {"method": "POST", "url": f"{base}/PermissionSet/", "referenceId": "set",
         "body": {"Name": set_name, "Label": set_name}},
        {"method": "POST", "url": f"{base}/PermissionSetAssignment/", "referenceId": "assign",
         "body": {"AssigneeId": "@{user.id}", "PermissionSetId": "@{set.id}"}}]})["compositeResponse"]


def test_composite_creates_a_user_and_assigns_it_a_new_permission_set_all_or_none(sf, api_only_profile):
    fields, name = user_fields(api_only_profile), unique("Ci_Set")
    answers = _composite(sf, fields, name)
    assert [a["httpStatusCode"] for a in answers] == [201, 201, 201]
    assert answers[0]["httpHeaders"]["Location"].endswith(answers[0]["body"]["id"])
    held = sf.query(f"SELECT PermissionSet.Name FROM PermissionSetAssignment WHERE Assignee.Username = "
                    f"'{fields['Username']}'")["records"]
    assert [r["PermissionSet"]["Name"] for r in held] == [name]
    again = _composite(sf, fields, unique("Ci_Set"))  # the same username again: nothing of it stays
    assert again[0]["body"][0]["errorCode"] == "DUPLICATE_USERNAME"
    assert [a["body"][0]["errorCode"] for a in again[1:]] == ["PROCESSING_HALTED"] * 2
    assert sf.query(f"SELECT COUNT() FROM User WHERE Username = '{fields['Username']}'")["totalSize"] == 1


def test_a_new_user_is_a_jwt_subject_once_its_permission_set_is_preauthorized_and_not_when_inactive(
        org, sf, keys, api_only_profile):
    set_name = unique("Jwt_Set")
    set_id = sf.PermissionSet.create({"Name": set_name, "Label": set_name})["id"]
    app = create_connected_app(sf, keys, profiles=(), permission_sets=(set_name,))
    key = consumer_key(sf, app)
    users = {}
    for state, active in (("active", True), ("inactive", False), ("unassigned", True)):
        fields = user_fields(api_only_profile, IsActive=active)
        users[state] = (fields["Username"], sf.User.create(fields)["id"])
        if state != "unassigned":
            sf.PermissionSetAssignment.create({"AssigneeId": users[state][1], "PermissionSetId": set_id})
    granted = token_request(org, assertion(keys, iss=key, sub=users["active"][0]))
    assert granted.status_code == 200, granted.text
    assert granted.json()["id"].endswith(f"/{users['active'][1]}")
    assert token_request(org, assertion(keys, iss=key, sub=users["inactive"][0])).json() == {
        "error": "invalid_grant", "error_description": "inactive user"}
    assert token_request(org, assertion(keys, iss=key, sub=users["unassigned"][0])).json() == {
        "error": "invalid_app_access", "error_description": "user is not admin approved to access this app"}
