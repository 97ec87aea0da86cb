"""Every API version the runbook may be given works against the local org, as on a 2026 Salesforce.

[D] Salesforce serves API 31.0 through 68.0; SOAP ``login()`` is gone from 65.0, so a client logs in at
64.0 or earlier and uses its session at any version.
"""

from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from runbook.localorg import ADMIN_USERNAME

from ..conftest import soap_login
from ..support import create_connected_app
from .test_soap_login import admin_password, login


@pytest.mark.parametrize("version", ["65.0", "66.0", "68.0"])
def test_metadata_read_and_rest_query_work_at_new_versions_with_a_session_from_a_64_login(org, keys, version):
    logged_in = soap_login(org, "64.0")
    name = create_connected_app(logged_in, keys)
    sf = Salesforce(instance_url=org.url, session_id=logged_in.session_id, version=version)
    assert sf.mdapi.ConnectedApp.read([name]).oauthConfig.consumerKey.startswith("3MVG9")
    assert sf.query(f"SELECT Id FROM User WHERE Username = '{ADMIN_USERNAME}'")["totalSize"] == 1
    assert sf.base_url.endswith(f"/services/data/v{version}/")


@pytest.mark.parametrize("password", ["right", "wrong"])
def test_soap_login_from_65_is_unsupported_never_a_bad_password(org, password):
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        login(org, ADMIN_USERNAME, admin_password(org) if password == "right" else "wrong", "66.0")
    assert failed.value.code == "UNSUPPORTED_API_VERSION"
    assert "login() is not available in API version 66.0" in str(failed.value)


def test_versions_salesforce_does_not_serve_are_refused_as_salesforce_refuses_them(org, admin_token):
    headers = {"Authorization": f"Bearer {admin_token}"}
    retired = requests.get(f"{org.url}/services/data/v30.0/query", params={"q": "SELECT Id FROM User"},
                           headers=headers, verify=org.ca_bundle, timeout=5)
    assert retired.status_code == 410
    future = requests.get(f"{org.url}/services/data/v69.0/query", params={"q": "SELECT Id FROM User"},
                          headers=headers, verify=org.ca_bundle, timeout=5)
    assert future.status_code == 404 and future.json()[0]["errorCode"] == "NOT_FOUND"
    for path in ("/services/Soap/m/69.0", "/services/Soap/m/30.0", "/services/Soap/u/30.0"):
        soap = requests.post(f"{org.url}{path}", headers={"Content-Type": "text/xml", **headers},
                             data='<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
                                  '<login xmlns="urn:partner.soap.sforce.com"/></e:Body></e:Envelope>',
                             verify=org.ca_bundle, timeout=5)
        assert soap.status_code == 500
        assert "UNSUPPORTED_API_VERSION: Invalid Api version specified on URL" in soap.text, path
