"""Partner SOAP login as simple-salesforce sends it, and what its session can do."""

from __future__ import annotations

import json

import pytest
import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin

from runbook.localorg import ADMIN_USERNAME


def login(org, username: str, password: str, version: str = "59.0"):
    host = org.url.removeprefix("https://")
    return SalesforceLogin(username=username, password=password, security_token="",
                           domain=f"{host}/services/Soap/u/{version}#", sf_version=version)


def admin_password(org) -> str:
    return json.loads((org.state_dir / "admin-credentials.json").read_text())["password"]


def test_login_answers_session_and_server_urls(org):
    envelope = ('<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
                '<n1:login xmlns:n1="urn:partner.soap.sforce.com">'
                f"<n1:username>{ADMIN_USERNAME}</n1:username><n1:password>{admin_password(org)}</n1:password>"
                "</n1:login></env:Body></env:Envelope>")
    response = requests.post(f"{org.url}/services/Soap/u/62.0", data=envelope, verify=org.ca_bundle,
                             headers={"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"},
                             timeout=5)
    text = response.text
    assert response.status_code == 200
    assert f"<serverUrl>{org.url}/services/Soap/u/62.0/{org.org_id[:15]}</serverUrl>" in text
    assert f"<metadataServerUrl>{org.url}/services/Soap/m/62.0/{org.org_id[:15]}</metadataServerUrl>" in text
    assert f"<organizationId>{org.org_id}</organizationId>" in text
    assert f"<userName>{ADMIN_USERNAME}</userName>" in text
    assert '<loginResponse><result>' in text and 'xmlns="urn:partner.soap.sforce.com"' in text


def test_simple_salesforce_login_gets_a_working_session(org):
    session_id, instance = login(org, ADMIN_USERNAME, admin_password(org))
    assert instance == org.url.removeprefix("https://") and session_id.startswith(org.org_id[:15] + "!")
    query = requests.get(f"{org.url}/services/data/v59.0/query/", params={"q": "SELECT COUNT() FROM User"},
                         headers={"Authorization": f"Bearer {session_id}"}, verify=org.ca_bundle, timeout=5)
    assert query.json()["totalSize"] == 5


@pytest.mark.parametrize(("username", "password"), [
    (ADMIN_USERNAME, "wrong"), ("dev@local.devhub", ""), ("inactive@local.devhub", "x"),
    ("nobody@x.com", "x")])
def test_bad_credentials_get_invalid_login(org, username, password):
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        login(org, username, password)
    assert str(failed.value).endswith(
        "(code: INVALID_LOGIN): Invalid username, password, security token; or user locked out.")


def test_login_is_gone_from_api_65(org):
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        login(org, ADMIN_USERNAME, admin_password(org), "65.0")
    assert failed.value.code == "UNSUPPORTED_API_VERSION"


def test_call_log_classifies_logins_as_auth_reads(fresh_org):
    with pytest.raises(SalesforceAuthenticationFailed):
        login(fresh_org, ADMIN_USERNAME, "wrong")
    (call,) = fresh_org.call_log()
    assert (call.operation, call.is_write, call.status) == ("soap.login", False, 500)
