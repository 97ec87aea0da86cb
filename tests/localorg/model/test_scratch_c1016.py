"""C-1016 where Salesforce raises it, and its workaround: Proxy Signup can install only a connected app of the Dev Hub
(with a valid certificate) or Salesforce's own PlatformCLI in the new scratch org.

[O] forcedotcom/cli#3515 and sfdx-core PR #1315: a Dev Hub logged in through an External Client App puts the
ECA's key in ``ConnectedAppConsumerKey`` and the signup fails with C-1016; ``PlatformCLI`` with the CLI's
callback works. The insert is accepted either way: the error comes on the record, as the CLI polls it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from runbook.localorg import ADMIN_USERNAME, LocalOrg

from ..conftest import soap_login
from ..scratch_support import CLI_CALLBACK, DevHub, code_token, jwt_token, make_dev_hub
from ..support import consumer_key, create_connected_app, create_external_client_app, unique


@pytest.fixture(scope="module")
def hub(tmp_path_factory, keys) -> Iterator[DevHub]:
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("hub"), daily_scratch_orgs=100, active_scratch_orgs=50) as org:
        os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
        yield make_dev_hub(org, soap_login(org), keys)
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="module")
def eca_hub(hub, keys) -> DevHub:
    """The same Dev Hub logged in as its admin through an External Client App (JWT), as in cli#3515."""
    sf = soap_login(hub.org)
    name = unique("Eca")
    create_external_client_app(sf, keys, name, "System Administrator")
    key = sf.mdapi.ExtlClntAppGlobalOauthSettings.read([f"{name}GlblOAuth"]).consumerKey
    response = jwt_token(hub.org.url, hub.org.ca_bundle, keys, iss=key, sub=ADMIN_USERNAME)
    assert response.status_code == 200, response.text  # the ECA login itself works
    return DevHub(hub.org, keys, key, response.json()["access_token"])


def test_eca_dev_hub_login_signs_up_with_c1016(eca_hub):
    before = eca_hub.rest("GET", "limits").json()
    response = eca_hub.insert(eca_hub.cli_body())  # the CLI sends the hub session's clientId: the ECA's key
    assert response.status_code == 201, response.text
    record = eca_hub.wait(response.json()["id"])
    assert (record["Status"], record["ErrorCode"]) == ("Error", "C-1016")
    assert record["ScratchOrg"] is None and record["LoginUrl"] is None and record["AuthCode"] is None
    assert eca_hub.query(f"SELECT Id FROM ActiveScratchOrg WHERE ScratchOrgInfoId = '{record['Id']}'").json()[
        "totalSize"] == 0
    after = eca_hub.rest("GET", "limits").json()
    assert after["DailyScratchOrgs"]["Remaining"] == before["DailyScratchOrgs"]["Remaining"] - 1  # it still counts
    assert after["ActiveScratchOrgs"] == before["ActiveScratchOrgs"]


def test_platform_cli_workaround_signs_up_and_its_auth_code_logs_in(eca_hub):
    """SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI (CLI 2.150+), or an insert of one's own (cli#3515)."""
    record = eca_hub.create(ConnectedAppConsumerKey="PlatformCLI", ConnectedAppCallbackUrl=CLI_CALLBACK)
    assert record["Status"] == "Active" and record["AuthCode"]
    token = code_token(record["LoginUrl"], eca_hub.org.ca_bundle, code=record["AuthCode"], client_id="PlatformCLI")
    assert token.status_code == 200, token.text
    org_id = token.json()["id"].rsplit("/", 2)[-2]
    assert org_id[:15] == record["ScratchOrg"]
    # the ECA's key means nothing to the scratch org: the signup could not install it there
    jwt = jwt_token(record["LoginUrl"], eca_hub.org.ca_bundle, eca_hub.keys, iss=eca_hub.consumer_key,
                    sub=record["SignupUsername"])
    assert jwt.json()["error"] == "invalid_client_id"


def test_platform_cli_without_the_callback_is_refused_at_the_insert(eca_hub):
    body = eca_hub.cli_body(ConnectedAppConsumerKey="PlatformCLI")
    del body["ConnectedAppCallbackUrl"]
    response = eca_hub.insert(body)
    assert response.status_code == 400 and response.json() == [{
        "message": "Required fields are missing: [ConnectedAppCallbackUrl]", "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["ConnectedAppCallbackUrl"]}]


def test_a_consumer_key_no_connected_app_has_signs_up_with_c1016(hub):
    record = hub.create(ConnectedAppConsumerKey="3MVG9" + "x" * 80)
    assert (record["Status"], record["ErrorCode"]) == ("Error", "C-1016")


def test_a_connected_app_whose_certificate_expired_signs_up_with_c1016(hub):
    sf = soap_login(hub.org)
    key = consumer_key(sf, create_connected_app(sf, hub.keys, certificate=_expired_certificate()))
    record = hub.create(ConnectedAppConsumerKey=key)
    assert (record["Status"], record["ErrorCode"]) == ("Error", "C-1016")


def test_a_connected_app_without_a_certificate_gets_an_auth_code_for_its_key_and_secret(hub):
    """A hub logged in without a key (web login, or SFDX_CLIENT_SECRET): the CLI exchanges the AuthCode."""
    sf = soap_login(hub.org)
    name, secret = unique("Web"), "A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6"
    oauth = sf.mdapi.ConnectedAppOauthConfig(callbackUrl=CLI_CALLBACK, scopes=["Api", "Web", "RefreshToken"],
                                             consumerSecret=secret)
    sf.mdapi.ConnectedApp.create([sf.mdapi.ConnectedApp(fullName=name, label=name, contactEmail="dev@example.com",
                                                        oauthConfig=oauth)])
    key = consumer_key(sf, name)
    record = hub.create(ConnectedAppConsumerKey=key)
    assert record["Status"] == "Active" and record["AuthCode"]
    wrong = code_token(record["LoginUrl"], hub.org.ca_bundle, code=record["AuthCode"], client_id=key,
                       client_secret="dummy-secret-123")  # a secret that is not the app's
    assert wrong.json()["error"] == "invalid_client"
    record = hub.create(ConnectedAppConsumerKey=key)
    token = code_token(record["LoginUrl"], hub.org.ca_bundle, code=record["AuthCode"], client_id=key,
                       client_secret=secret)
    assert token.status_code == 200, token.text


def _expired_certificate() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=60))
            .not_valid_after(now - timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()
