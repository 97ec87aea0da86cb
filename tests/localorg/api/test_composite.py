"""The REST Composite resource: several subrequests in one round trip, references, all-or-none, limits."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest

from runbook.localorg import LocalOrg

from ..conftest import soap_login
from ..support import assertion, bearer, consumer_key, create_connected_app, token_request, unique

BASE = "/services/data/v62.0"
HALTED = [{"errorCode": "PROCESSING_HALTED",
           "message": "The transaction was rolled back since another operation in the same transaction failed."}]


def sub(method: str, path: str, reference_id: str, body: Any = None) -> dict[str, Any]:
    """One subrequest for ``path`` under /services/data/v62.0/."""
    item = {"method": method, "url": f"{BASE}/{path}", "referenceId": reference_id}
    return item if body is None else {**item, "body": body}


def query(soql: str, reference_id: str) -> dict[str, Any]:
    return sub("GET", f"query/?q={quote_plus(soql)}", reference_id)


def new_permission_set(reference_id: str, name: str) -> dict[str, Any]:
    return sub("POST", "sobjects/PermissionSet/", reference_id, {"Name": name, "Label": name.replace("_", " ")})


def composite(sf: Salesforce, *subrequests: dict[str, Any], all_or_none: bool = False) -> list[dict[str, Any]]:
    """The subresponses of one Composite request sent through simple-salesforce."""
    body = {"allOrNone": all_or_none, "compositeRequest": list(subrequests)}
    return sf.restful("composite", method="POST", json=body)["compositeResponse"]


def post(org: LocalOrg, token: str, body: Any) -> requests.Response:
    return requests.post(f"{org.url}{BASE}/composite", json=body, headers=bearer(token), verify=org.ca_bundle,
                         timeout=10)


def count(sf: Salesforce, where: str) -> int:
    return sf.query(f"SELECT COUNT() FROM PermissionSet WHERE {where}")["totalSize"]


def test_answers_come_back_in_request_order_with_their_reference_ids(sf):
    name = unique("Composite_Order")
    answers = composite(sf, query("SELECT Id, Name FROM Profile WHERE Name = 'Read Only'", "profile"),
                        new_permission_set("ps", name),
                        sub("GET", "sobjects/PermissionSet/@{ps.id}?fields=Name", "readBack"))
    assert [(a["referenceId"], a["httpStatusCode"]) for a in answers] == [
        ("profile", 200), ("ps", 201), ("readBack", 200)]
    assert answers[0]["body"]["records"][0]["Name"] == "Read Only" and answers[0]["httpHeaders"] == {}
    created = answers[1]["body"]
    assert created["success"] is True and created["errors"] == [] and created["id"].startswith("0PS")
    assert answers[1]["httpHeaders"] == {"Location": f"{BASE}/sobjects/PermissionSet/{created['id']}"}
    assert answers[2]["body"] == {"attributes": {"type": "PermissionSet",
                                                 "url": f"{BASE}/sobjects/PermissionSet/{created['id']}"},
                                  "Name": name}


def test_references_create_a_permission_set_and_assign_it(sf):
    name = unique("Composite_Grant")
    answers = composite(sf, query("SELECT Id FROM User WHERE Username = 'dev@local.devhub'", "dev"),
                        new_permission_set("ps", name),
                        sub("POST", "sobjects/PermissionSetAssignment/", "grant",
                            {"AssigneeId": "@{dev.records[0].Id}", "PermissionSetId": "@{ps.id}"}),
                        all_or_none=True)
    assert [a["httpStatusCode"] for a in answers] == [200, 201, 201]
    grant = sf.query("SELECT Assignee.Username, PermissionSet.Name FROM PermissionSetAssignment "
                     f"WHERE Id = '{answers[2]['body']['id']}'")["records"][0]
    assert grant["Assignee"]["Username"] == "dev@local.devhub" and grant["PermissionSet"]["Name"] == name


def test_all_or_none_failure_rolls_back_the_earlier_create(sf):
    name = unique("Composite_Rollback")
    answers = composite(sf, new_permission_set("ps", name),
                        sub("POST", "sobjects/PermissionSet/", "bad", {"Name": "has space", "Label": "Bad"}),
                        sub("GET", "sobjects/PermissionSet/@{ps.id}", "never"), all_or_none=True)
    assert [(a["referenceId"], a["httpStatusCode"], a["httpHeaders"]) for a in answers] == [
        ("ps", 400, {}), ("bad", 400, {}), ("never", 400, {})]
    assert answers[0]["body"] == HALTED and answers[2]["body"] == HALTED
    assert answers[1]["body"][0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert count(sf, f"Name = '{name}'") == 0
    assert sf.PermissionSet.create({"Name": name, "Label": "Again"})["success"] is True


def test_without_all_or_none_independent_subrequests_still_run(sf):
    first, last = unique("Composite_First"), unique("Composite_Last")
    answers = composite(sf, new_permission_set("first", first),
                        sub("POST", "sobjects/PermissionSet/", "bad", {"Name": "has space", "Label": "Bad"}),
                        sub("POST", "sobjects/PermissionSetAssignment/", "dependent",
                            {"AssigneeId": "005000000000001AAA", "PermissionSetId": "@{bad.id}"}),
                        new_permission_set("last", last))
    assert [a["httpStatusCode"] for a in answers] == [201, 400, 400, 201]
    assert answers[1]["body"][0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert answers[2]["body"] == [{"errorCode": "PROCESSING_HALTED",
                                   "message": "Invalid reference specified. No value for bad.id found in bad"}]
    assert count(sf, f"Name IN ('{first}', '{last}')") == 2


@pytest.mark.parametrize(("url", "reference"), [
    ("sobjects/PermissionSet/@{nobody.id}", "nobody.id"),  # no such referenceId
    ("sobjects/PermissionSet/@{empty.records[0].Id}", "empty.records[0].Id"),  # the query found nothing
    ("sobjects/PermissionSet/@{empty.Id}", "empty.Id"),  # no such field in the answer
    ("sobjects/PermissionSet/@{later.totalSize}", "later.totalSize"),  # not answered yet
])
def test_a_bad_reference_fails_only_its_own_subrequest(sf, url, reference):
    answers = composite(sf, query("SELECT Id FROM PermissionSet WHERE Name = 'No_Such_Set'", "empty"),
                        sub("GET", url, "holder"), query("SELECT Id FROM Profile", "later"))
    assert [a["httpStatusCode"] for a in answers] == [200, 400, 200]
    assert answers[1]["body"] == [{"errorCode": "PROCESSING_HALTED", "message": "Invalid reference specified. "
                                   f"No value for {reference} found in {reference.split('.')[0]}"}]


def test_references_inside_nested_body_values_are_replaced(sf):
    name = unique("Composite_Nested")
    answers = composite(sf, new_permission_set("ps", name),
                        sub("POST", "sobjects/PermissionSet/", "copy",
                            {"Name": f"{name}_copy", "Label": "Copy of @{ps.id}", "Description": "@{ps.success}"}),
                        sub("GET", "sobjects/PermissionSet/@{copy.id}?fields=Label,Description", "read"))
    assert answers[2]["body"]["Label"] == f"Copy of {answers[0]['body']['id']}"
    assert answers[2]["body"]["Description"] == "true"


def test_updates_and_deletes_answer_as_separate_calls_do(sf, org, admin_token):
    name = unique("Composite_Delete")
    answers = composite(sf, new_permission_set("ps", name),
                        sub("PATCH", "sobjects/PermissionSet/@{ps.id}", "update", {"Label": "Renamed"}),
                        sub("DELETE", "sobjects/PermissionSet/@{ps.id}", "delete"))
    separate = requests.patch(f"{org.url}{BASE}/sobjects/PermissionSet/{answers[0]['body']['id']}",
                              json={"Label": "Renamed"}, headers=bearer(admin_token), verify=org.ca_bundle, timeout=5)
    assert (answers[1]["httpStatusCode"], answers[1]["body"]) == (separate.status_code, separate.json())
    assert (answers[2]["httpStatusCode"], answers[2]["body"], answers[2]["httpHeaders"]) == (204, None, {})
    assert count(sf, f"Name = '{name}'") == 0


@pytest.mark.parametrize("url", [f"{BASE}/composite", "/services/apexrest/anything", f"{BASE}/sobjects/Nope/x"])
def test_a_resource_outside_the_rest_data_api_answers_not_found(sf, url):
    answers = composite(sf, {"method": "GET", "url": url, "referenceId": "elsewhere"})
    assert answers == [{"body": [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
                        "httpHeaders": {}, "httpStatusCode": 404, "referenceId": "elsewhere"}]


@pytest.mark.parametrize(("extra", "message"), [
    ([sub("GET", "sobjects/PermissionSet/describe", f"describe{i}") for i in range(25)],
     "The request can’t contain more than 25 operations."),
    ([query("SELECT Id FROM Profile", f"q{i}") for i in range(6)],
     "The request can’t contain more than 5 query operations."),
])
def test_over_a_limit_the_whole_request_is_refused(sf, extra, message):
    name = unique("Composite_Limit")
    with pytest.raises(SalesforceMalformedRequest) as refused:
        composite(sf, new_permission_set("ps", name), *extra)
    assert refused.value.status == 400
    assert refused.value.content == {"compositeResponse": [{
        "body": [{"errorCode": "LIMIT_EXCEEDED", "message": message}], "httpHeaders": {}, "httpStatusCode": 400,
        "referenceId": None}]}
    assert count(sf, f"Name = '{name}'") == 0


def test_exactly_at_the_limits_everything_runs(sf):
    subrequests = [*(query("SELECT Id FROM Profile", f"q{i}") for i in range(5)),
                   *(sub("GET", "sobjects/PermissionSet/describe", f"describe{i}") for i in range(20))]
    assert [a["httpStatusCode"] for a in composite(sf, *subrequests)] == [200] * 25


@pytest.mark.parametrize("body", [
    "not json",
    {"allOrNone": True},
    {"compositeRequest": []},
    {"allOrNone": "yes", "compositeRequest": ["ps"]},
    {"compositeRequest": ["ps", {**sub("GET", "sobjects", "ps"), "httpHeaders": {"authorization": "Bearer x"}}]},
    {"compositeRequest": ["ps", sub("GET", "sobjects", "ps")]},  # the referenceId is taken
    {"compositeRequest": ["ps", {**sub("GET", "sobjects", "list"), "method": "get"}]},
    {"compositeRequest": ["ps", {"method": "GET", "referenceId": "nourl"}]},
])
def test_a_malformed_request_is_refused_before_anything_runs(sf, org, admin_token, body):
    name = unique("Composite_Malformed")
    if isinstance(body, dict) and body.get("compositeRequest"):
        body = {**body, "compositeRequest": [new_permission_set("ps", name), *body["compositeRequest"][1:]]}
    response = (post(org, admin_token, body) if isinstance(body, dict) else
                requests.post(f"{org.url}{BASE}/composite", data=body, headers=bearer(admin_token),
                              verify=org.ca_bundle, timeout=10))
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert count(sf, f"Name = '{name}'") == 0


def test_only_post_is_allowed(org, admin_token):
    response = requests.get(f"{org.url}{BASE}/composite", headers=bearer(admin_token), verify=org.ca_bundle,
                            timeout=5)
    assert response.status_code == 405 and response.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_no_or_unknown_session_is_401_invalid_session_id(org, sf):
    body = {"compositeRequest": [sub("GET", "sobjects/PermissionSet/describe", "describe")]}
    for headers in ({}, bearer("00Dx!nope")):
        response = requests.post(f"{org.url}{BASE}/composite", json=body, headers=headers, verify=org.ca_bundle,
                                 timeout=5)
        assert response.status_code == 401
        assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    broken = Salesforce(instance_url=f"https://{sf.sf_instance}", session_id="00Dx!gone")
    with pytest.raises(SalesforceExpiredSession):
        broken.restful("composite", method="POST", json=body)


def test_an_expired_session_is_refused_like_other_rest_calls(tmp_path, monkeypatch):
    with LocalOrg(tmp_path / "short", session_seconds=1) as short:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(short.ca_bundle))
        token = soap_login(short).session_id
        body = {"compositeRequest": [query("SELECT Id FROM Profile", "profiles")]}
        assert post(short, token, body).json()["compositeResponse"][0]["httpStatusCode"] == 200
        time.sleep(1.1)
        expired = post(short, token, body)
        assert expired.status_code == 401
        assert expired.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        assert [(c.operation, c.is_write, c.status) for c in short.call_log()[-2:]] == [
            ("rest.composite", False, 200), ("rest.composite", False, 401)]


def test_every_subrequest_runs_as_the_composite_s_user(sf, org, keys):
    app = consumer_key(sf, create_connected_app(sf, keys, profiles=("Standard User",)))
    token = token_request(org, assertion(keys, iss=app, sub="dev@local.devhub")).json()["access_token"]
    name = unique("Composite_Standard_User")
    answers = post(org, token, {"compositeRequest": [query("SELECT Id FROM Profile", "read"),
                                                     new_permission_set("write", name)]}).json()
    assert [a["httpStatusCode"] for a in answers["compositeResponse"]] == [200, 403]
    assert answers["compositeResponse"][1]["body"][0]["errorCode"] == "INSUFFICIENT_ACCESS"
    assert count(sf, f"Name = '{name}'") == 0


def test_the_call_log_has_one_entry_per_composite(org, admin_token):
    reads = {"compositeRequest": [query("SELECT Id FROM Profile", "profiles"),
                                  sub("GET", "sobjects/PermissionSet/describe", "describe")]}
    writes = {"allOrNone": True, "compositeRequest": [new_permission_set("ps", unique("Composite_Log")),
                                                      sub("GET", "sobjects/PermissionSet/@{ps.id}", "read")]}
    rolled_back = {"allOrNone": True, "compositeRequest": [
        new_permission_set("ps", unique("Composite_Log")),
        sub("POST", "sobjects/PermissionSet/", "bad", {"Name": "has space", "Label": "Bad"})]}
    before = len(org.call_log())
    for body in (reads, writes, rolled_back):
        assert post(org, admin_token, body).status_code == 200
    assert [(c.method, c.path, c.operation, c.is_write, c.status) for c in org.call_log()[before:]] == [
        ("POST", f"{BASE}/composite", "rest.composite", False, 200),
        ("POST", f"{BASE}/composite", "rest.composite", True, 200),
        ("POST", f"{BASE}/composite", "rest.composite", True, 200)]  # a write was attempted, then undone


def test_writes_from_other_threads_survive_an_all_or_none_rollback(sf, org, admin_token):
    prefix = unique("Composite_Threads")

    def rolled_back(i: int) -> int:
        body = {"allOrNone": True, "compositeRequest": [
            new_permission_set("ps", f"{prefix}_undone{i}"),
            sub("GET", "sobjects/PermissionSet/@{ps.id}", "read"),
            sub("POST", "sobjects/PermissionSet/", "bad", {"Name": "has space", "Label": "Bad"})]}
        return post(org, admin_token, body).json()["compositeResponse"][0]["httpStatusCode"]

    def separate(i: int) -> int:
        return requests.post(f"{org.url}{BASE}/sobjects/PermissionSet/", json={"Name": f"{prefix}_kept{i}",
                             "Label": "Kept"}, headers=bearer(admin_token), verify=org.ca_bundle,
                             timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:  # both kinds in flight at once
        futures = [(pool.submit(rolled_back, i), pool.submit(separate, i)) for i in range(12)]
        statuses = [(undone.result(), kept.result()) for undone, kept in futures]
    assert statuses == [(400, 201)] * 12
    names = {r["Name"] for r in sf.query_all(f"SELECT Name FROM PermissionSet WHERE Name LIKE '{prefix}%'")["records"]}
    assert names == {f"{prefix}_kept{i}" for i in range(12)}
