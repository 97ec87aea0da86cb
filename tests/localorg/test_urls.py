"""The routing table: each path reaches the endpoint that serves it, the Dev Hub's objects reach the Dev Hub's
handlers in any letter case, and a path no rule knows matches none (the org answers NOT_FOUND, ``test_server``)."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import NotFound

from runbook.localorg.urls import HANDLERS, SUBREQUEST_HANDLERS, URLS

V = "/services/data/v62.0"
ROUTES = [
    ("/services/oauth2/token", "oauth.token", {}),
    ("/services/oauth2/authorize", "oauth.authorize", {}),
    ("/id/00D000000000001AAA/005000000000001AAA", "oauth.identity",
     {"org_id": "00D000000000001AAA", "user_id": "005000000000001AAA"}),
    ("/services/Soap/u/59.0", "soap.partner", {"version": "59.0"}),
    ("/services/Soap/m/62.0/00D000000000001", "soap.metadata", {"version": "62.0", "tail": "00D000000000001"}),
    ("/services/Soap/m/62.0/deployRequest/0Af000000000001", "soap.metadata",
     {"version": "62.0", "tail": "deployRequest/0Af000000000001"}),
    ("/services/data", "rest.versions", {}),
    (V, "rest.resources", {"version": "62.0"}),
    (f"{V}/query", "rest.query", {"version": "62.0", "resource": "query"}),
    (f"{V}/tooling/query", "rest.query", {"version": "62.0", "resource": "tooling/query"}),
    (f"{V}/sobjects", "rest.describe_global", {"version": "62.0"}),
    (f"{V}/sobjects/User", "rest.sobject", {"version": "62.0", "name": "User"}),
    (f"{V}/sobjects/User/describe", "rest.describe", {"version": "62.0", "name": "User"}),
    (f"{V}/sobjects/User/005000000000001", "rest.record",
     {"version": "62.0", "name": "User", "record_id": "005000000000001"}),
    (f"{V}/sobjects/User/005000000000001/more", "rest.beyond_record",
     {"version": "62.0", "name": "User", "tail": "005000000000001/more"}),
    (f"{V}/sobjects//User", "rest.record", {"version": "62.0", "name": "", "record_id": "User"}),
    (f"{V}/composite", "rest.composite", {"version": "62.0"}),
    (f"{V}/limits", "dev_hub.limits", {"version": "62.0"}),
    (f"{V}/sobjects/ScratchOrgInfo", "dev_hub.sobject", {"version": "62.0", "name": "ScratchOrgInfo"}),
    (f"{V}/sobjects/scratchorginfo", "dev_hub.sobject", {"version": "62.0", "name": "scratchorginfo"}),
    (f"{V}/sobjects/ActiveScratchOrg/describe", "dev_hub.describe", {"version": "62.0", "name": "ActiveScratchOrg"}),
    (f"{V}/sobjects/ScratchOrgInfo/2SR000000000001", "dev_hub.record",
     {"version": "62.0", "name": "ScratchOrgInfo", "record_id": "2SR000000000001"}),
    (f"{V}/sobjects/ScratchOrgInfo/a/b", "dev_hub.beyond_record",
     {"version": "62.0", "name": "ScratchOrgInfo", "tail": "a/b"}),
    (f"{V}/sobjects/ScratchOrgInfos", "rest.sobject", {"version": "62.0", "name": "ScratchOrgInfos"}),
    (f"{V}/apps/oauth/usage", "connect.oauth_usage", {"version": "62.0"}),
    (f"{V}/apps/oauth/credentials/0xE000000000001", "connect.oauth_credentials",
     {"version": "62.0", "app_id": "0xE000000000001"}),
    (f"{V}/apps/oauth/credentials/0xE000000000001/888000000000001", "connect.oauth_consumer_credentials",
     {"version": "62.0", "app_id": "0xE000000000001", "consumer_id": "888000000000001"}),
    (f"{V}/apps/oauth", "connect.unknown", {"version": "62.0", "tail": "oauth"}),
    (f"{V}/tooling", "rest.unknown", {"version": "62.0", "tail": "tooling"}),
    ("/services/data/v20.0/query", "rest.query", {"version": "20.0", "resource": "query"}),  # the handler says 410
]


@pytest.mark.parametrize(("path", "endpoint", "values"), ROUTES, ids=[r[0] for r in ROUTES])
def test_a_path_reaches_the_endpoint_serving_it(path, endpoint, values):
    assert URLS.bind("127.0.0.1").match(path) == (endpoint, values)


@pytest.mark.parametrize("path", ["/", "/services", "/services/oauth2/foo", "/services/Soap/c/62.0",
                                  "/services/Soap/u/6.0", "/services/data/v62", "/services/data/vX/query",
                                  "/id/00D000000000001/005-1", "/id/00D000000000001"])
def test_a_path_no_rule_knows_matches_none(path):
    with pytest.raises(NotFound):
        URLS.bind("127.0.0.1").match(path)


def test_every_endpoint_has_a_handler_and_a_subrequest_reaches_only_the_data_api():
    endpoints = {rule.endpoint for rule in URLS.iter_rules()}
    assert endpoints == set(HANDLERS)
    assert set(SUBREQUEST_HANDLERS) == endpoints - {"oauth.token", "oauth.authorize", "oauth.revoke", "oauth.userinfo",
                                                    "oauth.identity", "soap.partner", "soap.metadata", "rest.versions"}
