"""The local org as a Dev Hub: ScratchOrgInfo signups that start a second local org, the scratch org, which the
Dev Hub app's JWT and the record's AuthCode log in to, and deletes through ActiveScratchOrg.

Each test states a behaviour of the wire reference (shared/reference/scratch-org-wire.md) and drives the orgs
over HTTPS as the Salesforce CLI does; the source notes are in ``runbook.localorg.model.signup`` and ``scratch``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from simple_salesforce import Salesforce

from runbook.localorg import ADMIN_USERNAME, LocalOrg
from runbook.localorg.model import ids

from ..conftest import soap_login
from ..scratch_support import CLI_CALLBACK, DevHub, call, code_token, jwt_token, make_dev_hub
from ..support import KeyPair

ORGANIZATION = ("SELECT Name, InstanceName, IsSandbox, TrialExpirationDate, NamespacePrefix, OrganizationType "
                "FROM Organization")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, keys) -> Iterator[DevHub]:
    """A Dev Hub of this module's own, with room for every scratch org the module makes."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("hub"), daily_scratch_orgs=100, active_scratch_orgs=50) as org:
        os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
        yield make_dev_hub(org, soap_login(org), keys)
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="module")
def active(hub) -> dict:
    """One scratch org signed up through the hub's JWT app, as ``sf org create scratch`` asks."""
    return hub.create()


def scratch_token(hub: DevHub, record: dict) -> str:
    response = jwt_token(record["LoginUrl"], hub.org.ca_bundle, hub.keys, iss=hub.consumer_key,
                         sub=record["SignupUsername"])
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_insert_answers_at_once_and_the_signup_becomes_active_with_what_the_cli_reads(hub):
    response = hub.insert(hub.cli_body())
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and body["errors"] == [] and body["id"].startswith("2SR")
    record = hub.wait(body["id"])
    assert record["Status"] == "Active" and record["ErrorCode"] is None
    assert record["attributes"] == {"type": "ScratchOrgInfo",
                                    "url": f"/services/data/v66.0/sobjects/ScratchOrgInfo/{body['id']}"}
    assert re.fullmatch(r"00D\w{12}", record["ScratchOrg"])  # 15 characters
    assert re.fullmatch(r"test-[a-z0-9]{12}@example\.com", record["SignupUsername"])
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", record["LoginUrl"])  # no trailing slash
    assert record["LoginUrl"] != hub.org.url and record["SignupInstance"].endswith("S")
    assert record["Edition"] == "Developer" and record["OrgName"] == "Company" and record["Name"].isdigit()
    assert record["ConnectedAppConsumerKey"] == hub.consumer_key and record["ConnectedAppCallbackUrl"] == CLI_CALLBACK
    assert record["AuthCode"] is None  # the app has a certificate: the CLI logs in by JWT
    created = datetime.strptime(record["CreatedDate"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert record["ExpirationDate"] == (created + timedelta(days=7)).date().isoformat()
    assert record["SignupEmail"] == ADMIN_USERNAME and record["CreatedById"] == record["OwnerId"]


def test_scratch_org_takes_a_jwt_signed_with_the_dev_hub_apps_key(hub, active):
    response = jwt_token(active["LoginUrl"], hub.org.ca_bundle, hub.keys, iss=hub.consumer_key,
                         sub=active["SignupUsername"])
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["instance_url"] == active["LoginUrl"]
    org_id, user_id = token["id"].rsplit("/", 2)[-2:]
    assert org_id[:15] == active["ScratchOrg"] and user_id.startswith("005")
    refused = jwt_token(active["LoginUrl"], hub.org.ca_bundle, KeyPair.generate(), iss=hub.consumer_key,
                        sub=active["SignupUsername"])  # another key: the certificate went with the app
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    stranger = jwt_token(active["LoginUrl"], hub.org.ca_bundle, hub.keys, iss=hub.consumer_key, sub=ADMIN_USERNAME)
    assert stranger.json()["error_description"] == "user hasn't approved this consumer"  # a hub user


def test_scratch_org_answers_what_the_cli_asks_after_its_login(hub, active):
    token, url, ca = scratch_token(hub, active), active["LoginUrl"], hub.org.ca_bundle
    dev_hub_check = requests.get(f"{url}/services/data/v51.0/query", headers={"Authorization": f"Bearer {token}"},
                                 params={"q": "SELECT Id FROM ScratchOrgInfo limit 1"}, verify=ca, timeout=10)
    assert dev_hub_check.status_code == 400 and dev_hub_check.json()[0]["errorCode"] == "INVALID_TYPE"
    assert "sObject type 'ScratchOrgInfo' is not supported" in dev_hub_check.json()[0]["message"]
    assert requests.get(f"{url}/services/data", verify=ca, timeout=10).status_code == 200
    organization = call(url, token, "GET", "query", ca=ca, params={"q": ORGANIZATION}).json()["records"][0]
    assert organization["IsSandbox"] is True  # with a TrialExpirationDate: the CLI's "isScratch"
    assert organization["TrialExpirationDate"].startswith(active["ExpirationDate"])
    assert organization["Name"] == "Company" and organization["OrganizationType"] == "Developer Edition"
    assert organization["InstanceName"] == active["SignupInstance"]
    users = call(url, token, "GET", "query", ca=ca, params={"q": "SELECT Id, Username, Profile.Name FROM User"})
    assert [(u["Username"], u["Profile"]["Name"]) for u in users.json()["records"]] == [
        (active["SignupUsername"], "System Administrator")]
    columns = call(url, token, "GET", "query", ca=ca, params={"q": "SELECT Id FROM Organization", "columns": "true"})
    assert columns.json()["columnMetadata"][0]["columnName"] == "Id"
    assert call(url, token, "GET", "sobjects/ActiveScratchOrg/describe", ca=ca).status_code == 404


def test_scratch_org_admin_reads_its_metadata_with_the_replicated_app_in_it(hub, active):
    sf = Salesforce(instance_url=active["LoginUrl"], session_id=scratch_token(hub, active), version="62.0")
    names = sorted(p.fullName for p in sf.mdapi.list_metadata(sf.mdapi.ListMetadataQuery(type="ConnectedApp")))
    assert "PlatformCLI" in names and len(names) == 2  # Salesforce's CLI app and the hub's, nothing else


def test_dev_hub_queries_of_the_cli_find_the_scratch_org(hub, active):
    shown = hub.query(  # sf org display / sf org list
        "SELECT CreatedDate, Edition, Status, ExpirationDate, Namespace, OrgName, CreatedBy.Username, "
        f"SignupUsername, LoginUrl, ScratchOrg FROM ScratchOrgInfo WHERE ScratchOrg IN ('{active['ScratchOrg']}')")
    record = shown.json()["records"][0]
    assert record["CreatedBy"]["Username"] == ADMIN_USERNAME and record["LoginUrl"] == active["LoginUrl"]
    identify = hub.query("select Id, ExpirationDate, ScratchOrg from ScratchOrgInfo where ScratchOrg = "
                         f"'{active['ScratchOrg']}' and Status = 'Active'")
    assert identify.json()["totalSize"] == 1
    rows = hub.query("SELECT Id, ScratchOrgInfoId, ScratchOrg, SignupUsername, OrgName, Edition, ExpirationDate "
                     f"FROM ActiveScratchOrg WHERE SignupUsername = '{active['SignupUsername']}'").json()["records"]
    assert len(rows) == 1 and rows[0]["ScratchOrgInfoId"] == active["Id"] and rows[0]["Id"].startswith("2AS")
    assert rows[0]["ExpirationDate"] == active["ExpirationDate"] and rows[0]["Edition"] == "Developer"


def test_platform_cli_signup_gives_an_auth_code_the_scratch_org_exchanges_once(hub):
    record = hub.create(ConnectedAppConsumerKey="PlatformCLI")
    assert record["Status"] == "Active" and record["AuthCode"]
    exchanged = code_token(record["LoginUrl"], hub.org.ca_bundle, code=record["AuthCode"], client_id="PlatformCLI")
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["instance_url"] == record["LoginUrl"] and exchanged.json()["refresh_token"]
    again = code_token(record["LoginUrl"], hub.org.ca_bundle, code=record["AuthCode"], client_id="PlatformCLI")
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_auth_code_is_bound_to_the_signup_app_and_callback(hub):
    record = hub.create(ConnectedAppConsumerKey="PlatformCLI")
    wrong_callback = code_token(record["LoginUrl"], hub.org.ca_bundle, code=record["AuthCode"],
                                client_id="PlatformCLI", redirect_uri="http://localhost:1718/OauthRedirect")
    assert wrong_callback.json()["error"] == "redirect_uri_mismatch"


def test_requested_username_and_admin_email_become_the_scratch_admin(hub):
    record = hub.create(Username="Someone.Scratch@Example.com", AdminEmail="someone@example.com")
    assert record["SignupUsername"] == "someone.scratch@example.com" and record["SignupEmail"] == "someone@example.com"
    taken = hub.create(Username="someone.scratch@example.com")
    assert (taken["Status"], taken["ErrorCode"]) == ("Error", "C-1007")


@pytest.mark.parametrize(("body", "code", "text"), [
    ({"ConnectedAppCallbackUrl": None}, "REQUIRED_FIELD_MISSING",
     "Required fields are missing: [ConnectedAppCallbackUrl]"),
    ({"Status": "Active"}, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Status."),
    ({"Template": "0TT000000000001"}, "INVALID_FIELD", "No such column 'Template' on sobject of type ScratchOrgInfo"),
    ({"Edition": "ultimate"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
     "bad value for restricted picklist field: ultimate"),
    ({"Edition": None}, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Edition]"),
    ({"DurationDays": 31}, "FIELD_INTEGRITY_EXCEPTION", "DurationDays: the duration must be 1 to 30 days."),
    ({"ConnectedAppCallbackUrl": "http://localhost:9999/OauthRedirect"}, "FIELD_INTEGRITY_EXCEPTION",
     "The callback URL provided is not valid."),
])
def test_insert_refusals(hub, body, code, text):
    payload = {k: v for k, v in {**hub.cli_body(), **body}.items() if v is not None}
    response = hub.insert(payload)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code and response.json()[0]["message"].startswith(text)


def test_platform_cli_takes_only_the_cli_callback(hub):
    response = hub.insert(hub.cli_body(ConnectedAppConsumerKey="PlatformCLI",
                                       ConnectedAppCallbackUrl="http://localhost:1718/OauthRedirect"))
    assert response.status_code == 400 and response.json()[0]["message"] == "The callback URL provided is not valid."


def test_active_scratch_org_has_no_insert_and_describes_as_salesforce(hub):
    refused = hub.rest("POST", "sobjects/ActiveScratchOrg", json={"OrgName": "x"})
    assert refused.status_code == 400 and refused.json()[0] == {
        "message": "entity type cannot be inserted: Active Scratch Org",
        "errorCode": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "fields": []}
    info = hub.rest("GET", "sobjects/ScratchOrgInfo/describe").json()
    assert info["createable"] and info["deletable"] and info["keyPrefix"] == "2SR"
    fields = {f["name"]: f for f in info["fields"]}
    assert fields["ConnectedAppCallbackUrl"]["type"] == "textarea" and fields["ConnectedAppCallbackUrl"]["createable"]
    assert not fields["AuthCode"]["createable"] and fields["CreatedById"]["relationshipName"] == "CreatedBy"
    active = hub.rest("GET", "sobjects/ActiveScratchOrg/describe").json()
    assert not active["createable"] and active["deletable"]


def test_delete_of_the_active_scratch_org_stops_it_and_marks_the_request_deleted(hub):
    record = hub.create()
    token = scratch_token(hub, record)
    folder = hub.org.scratch_orgs.folder / ids.to_18(record["ScratchOrg"])
    assert folder.is_dir()
    deleted = hub.rest("DELETE", f"sobjects/ActiveScratchOrg/{hub.active_id(record['SignupUsername'])}")
    assert deleted.status_code == 204 and deleted.content == b""
    with pytest.raises(requests.ConnectionError):
        call(record["LoginUrl"], token, "GET", "query", ca=hub.org.ca_bundle, params={"q": "SELECT Id FROM User"})
    after = hub.rest("GET", f"sobjects/ScratchOrgInfo/{record['Id']}").json()
    assert after["Status"] == "Deleted" and after["DeletedDate"] == datetime.now(UTC).date().isoformat()
    assert after["DeletedBy"] == after["CreatedById"][:15]
    assert hub.query(f"SELECT Id FROM ActiveScratchOrg WHERE ScratchOrg = '{record['ScratchOrg']}'").json()[
        "totalSize"] == 0
    assert not folder.exists()  # nothing of a deleted org stays, its sessions included


def test_delete_of_the_request_deletes_the_active_scratch_org(hub):
    record = hub.create()
    assert hub.rest("DELETE", f"sobjects/ScratchOrgInfo/{record['Id']}").status_code == 204
    assert hub.rest("GET", f"sobjects/ScratchOrgInfo/{record['Id']}").status_code == 404
    assert hub.query(f"SELECT Id FROM ActiveScratchOrg WHERE ScratchOrg = '{record['ScratchOrg']}'").json()[
        "totalSize"] == 0
    assert ids.to_18(record["ScratchOrg"]) not in hub.org.scratch_orgs.running()


def test_scratch_org_starts_again_with_its_dev_hub_at_the_same_url(tmp_path, keys, monkeypatch):
    with LocalOrg(tmp_path / "hub") as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_bundle))
        hub = make_dev_hub(org, soap_login(org), keys)
        record = hub.create()
        token = scratch_token(hub, record)
    with pytest.raises(requests.ConnectionError):  # stopped with its hub
        call(record["LoginUrl"], token, "GET", "query", ca=org.ca_bundle, params={"q": "SELECT Id FROM User"})
    with LocalOrg(tmp_path / "hub") as again:
        users = call(record["LoginUrl"], token, "GET", "query", ca=again.ca_bundle,
                     params={"q": "SELECT Username FROM User"})  # the CLI's stored session still works
        assert users.status_code == 200 and users.json()["records"][0]["Username"] == record["SignupUsername"]


def test_a_signup_cut_short_by_a_stop_completes_at_the_next_start(tmp_path, keys, monkeypatch):
    with LocalOrg(tmp_path / "hub", scratch_signup_seconds=30) as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_bundle))
        hub = make_dev_hub(org, soap_login(org), keys)
        info_id = hub.insert(hub.cli_body()).json()["id"]
        assert hub.rest("GET", f"sobjects/ScratchOrgInfo/{info_id}").json()["Status"] in ("New", "Creating")
    with LocalOrg(tmp_path / "hub") as again:
        hub.org = again
        token = jwt_token(again.url, again.ca_bundle, keys, iss=hub.consumer_key, sub=ADMIN_USERNAME)
        record = hub.wait(info_id, token=token.json()["access_token"])
        assert record["Status"] == "Active" and len(again.scratch_orgs.running()) == 1


@pytest.mark.parametrize(("fields", "code"), [
    ({"AdminEmail": "not-an-address"}, "S-1006"), ({"Country": "usa"}, "S-2006"), ({"Namespace": "rbk"}, "S-1017"),
    ({"Snapshot": "NightlySnap"}, "T-0002"), ({"SourceOrg": "00D000000000001"}, "SH-0002"),
])
def test_signups_the_local_dev_hub_cannot_make_end_with_the_signup_error_code(hub, fields, code):
    record = hub.create(**fields)
    assert (record["Status"], record["ErrorCode"]) == ("Error", code)
