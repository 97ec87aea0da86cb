"""The JWT bearer token endpoint, identity and userinfo, with real signatures from PyJWT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

import jwt
import pytest
import requests
from simple_salesforce import Salesforce

from runbook.localorg import ADMIN_USERNAME, LocalOrg

from ..conftest import soap_login
from ..support import (
    JWT_BEARER,
    KeyPair,
    app_id,
    assertion,
    bearer,
    consumer_key,
    create_connected_app,
    first_id,
    token_request,
    unique,
)


@pytest.fixture(scope="module")
def app_key(sf, keys) -> str:
    """An admin-approved app pre-authorized for the System Administrator profile."""
    return consumer_key(sf, create_connected_app(sf, keys))


def grant(org, keys, app_key, **claims):
    claims.setdefault("sub", ADMIN_USERNAME)
    return token_request(org, assertion(keys, iss=app_key, **claims))


def assert_oauth_error(response: requests.Response, error: str, description: str) -> None:
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}
    assert "no-store" in response.headers["Cache-Control"]


def test_jwt_bearer_success_has_salesforce_shape(org, keys, app_key):
    response = grant(org, keys, app_key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "scope", "instance_url", "id", "token_type", "issued_at",
                         "signature"}
    assert re.fullmatch(rf"{org.org_id[:15]}![\w-]{{80,}}", body["access_token"])
    assert body["scope"] == "api web refresh_token"
    assert body["instance_url"] == org.url and body["token_type"] == "Bearer"
    assert re.fullmatch(rf"{re.escape(org.url)}/id/{org.org_id}/005\w{{15}}", body["id"])
    assert body["issued_at"].isdigit() and abs(int(body["issued_at"]) / 1000 - time.time()) < 60
    assert len(base64.b64decode(body["signature"])) == 32


def test_the_token_works_for_rest_identity_and_userinfo(org, keys, app_key):
    body = grant(org, keys, app_key).json()
    query = requests.get(f"{org.url}/services/data/v62.0/query", params={"q": "SELECT Id FROM Organization"},
                         headers=bearer(body["access_token"]), verify=org.ca_bundle, timeout=5)
    assert query.json()["records"][0]["Id"] == org.org_id
    identity = requests.get(body["id"], headers=bearer(body["access_token"]), verify=org.ca_bundle,
                            timeout=5).json()
    assert identity["username"] == ADMIN_USERNAME and identity["organization_id"] == org.org_id
    assert identity["urls"]["rest"] == f"{org.url}/services/data/v{{version}}/"
    info = requests.get(f"{org.url}/services/oauth2/userinfo", headers=bearer(body["access_token"]),
                        verify=org.ca_bundle, timeout=5).json()
    assert info["preferred_username"] == ADMIN_USERNAME and info["user_id"] == identity["user_id"]
    assert requests.get(f"{org.url}/services/oauth2/userinfo", headers=bearer("nope"), verify=org.ca_bundle,
                        timeout=5).status_code == 403


@pytest.mark.parametrize("exp_of", [  # made when the test runs: a value made at collection ages while others run
    pytest.param(lambda now: str(int(now) + 180), id="string-seconds-like-simple-salesforce"),
    pytest.param(lambda now: int(now * 1000) + 300, id="milliseconds-like-the-cli"),
    pytest.param(lambda now: int(now) + 10 * 365 * 86400, id="far-future"),
    pytest.param(lambda now: int(now) - 60, id="just-past-within-skew"),
])
def test_exp_in_every_client_shape_is_accepted(org, keys, app_key, exp_of):
    assert grant(org, keys, app_key, exp=exp_of(time.time())).status_code == 200


@pytest.mark.parametrize("aud_of", [
    lambda org: "https://login.salesforce.com/", lambda org: "https://test.salesforce.com",
    lambda org: org.url, lambda org: org.url + "/",
])
def test_audiences_salesforce_and_the_cli_use_are_accepted(org, keys, app_key, aud_of):
    assert grant(org, keys, app_key, aud=aud_of(org)).status_code == 200


def _hs256_with_certificate(keys: KeyPair, payload: dict) -> str:
    """The classic key-confusion forgery: HS256 keyed with the public certificate."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}"
    signature = hmac.new(keys.certificate_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_unsigned_forged_or_foreign_assertions_are_invalid(org, keys, app_key):
    payload = {"iss": app_key, "sub": ADMIN_USERNAME, "aud": "https://login.salesforce.com",
               "exp": int(time.time()) + 180}
    forged = [jwt.encode(payload, None, algorithm="none"), _hs256_with_certificate(keys, payload),
              assertion(KeyPair.generate(), iss=app_key, sub=ADMIN_USERNAME), "not.a.jwt", "",
              assertion(keys, iss=app_key, sub=ADMIN_USERNAME) + "x"]
    for signed in forged:
        assert_oauth_error(token_request(org, signed), "invalid_grant", "invalid assertion")


def test_claim_errors_have_salesforce_texts(org, keys, app_key):
    assert_oauth_error(token_request(org, assertion(keys, iss="3MVG9unknown", sub=ADMIN_USERNAME)),
                       "invalid_client_id", "client identifier invalid")
    assert_oauth_error(grant(org, keys, app_key, aud="https://example.com"), "invalid_grant",
                       "audience is invalid")
    assert_oauth_error(grant(org, keys, app_key, exp=int(time.time()) - 600), "invalid_grant",
                       "expired authorization code")
    assert_oauth_error(grant(org, keys, app_key, exp="omit"), "invalid_grant", "invalid assertion")
    assert_oauth_error(grant(org, keys, app_key, exp="tomorrow"), "invalid_grant", "invalid assertion")
    assert_oauth_error(grant(org, keys, app_key, sub="nobody@local.devhub"), "invalid_grant",
                       "user hasn't approved this consumer")
    assert_oauth_error(grant(org, keys, app_key, sub="inactive@local.devhub"), "invalid_grant",
                       "inactive user")
    signed = assertion(keys, iss=app_key, sub=ADMIN_USERNAME)
    assert_oauth_error(token_request(org, signed, grant_type="password"), "unsupported_grant_type",
                       "grant type not supported")


def test_users_outside_the_pre_authorized_profiles_get_invalid_app_access(org, keys, app_key):
    assert_oauth_error(grant(org, keys, app_key, sub="dev@local.devhub"), "invalid_app_access",
                       "user is not admin approved to access this app")


def test_a_permission_set_grant_and_assignment_pre_authorize_a_user(org, sf, keys, app_key):
    name = create_connected_app(sf, keys, profiles=())
    key = consumer_key(sf, name)
    connected_app = app_id(sf, name)
    set_id = sf.PermissionSet.create({"Name": unique("CI"), "Label": "CI login"})["id"]
    user_id = sf.query("SELECT Id FROM User WHERE Username = 'ci@local.devhub'")["records"][0]["Id"]
    assert_oauth_error(grant(org, keys, key, sub="ci@local.devhub"), "invalid_app_access",
                       "user is not admin approved to access this app")
    sf.SetupEntityAccess.create({"ParentId": set_id, "SetupEntityId": connected_app})
    assert_oauth_error(grant(org, keys, key, sub="ci@local.devhub"), "invalid_app_access",
                       "user is not admin approved to access this app")
    sf.PermissionSetAssignment.create({"AssigneeId": user_id, "PermissionSetId": set_id})
    response = grant(org, keys, key, sub="ci@local.devhub")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    write = requests.post(f"{org.url}/services/data/v62.0/sobjects/PermissionSet", headers=bearer(token),
                          json={"Name": "X", "Label": "X"}, verify=org.ca_bundle, timeout=5)
    assert write.status_code == 403 and write.json()[0]["errorCode"] == "INSUFFICIENT_ACCESS"
    read = requests.get(f"{org.url}/services/data/v62.0/query", params={"q": "SELECT Id FROM Profile"},
                        headers=bearer(token), verify=org.ca_bundle, timeout=5)
    assert read.status_code == 200


def test_self_authorize_apps_need_a_prior_approval(org, sf, keys):
    name = create_connected_app(sf, keys, admin_approved=False, profiles=())
    key = consumer_key(sf, name)
    assert_oauth_error(grant(org, keys, key), "invalid_grant", "user hasn't approved this consumer")
    admin_id = first_id(sf, f"SELECT Id FROM User WHERE Username = '{ADMIN_USERNAME}'")
    org.store.record_approval(app_id(sf, name), admin_id)
    assert grant(org, keys, key).status_code == 200


def test_certificate_body_without_pem_lines_works_and_no_certificate_fails(org, sf, keys):
    name = create_connected_app(sf, keys, scopes=("Api",), certificate=keys.certificate_body)
    assert grant(org, keys, consumer_key(sf, name)).json()["scope"] == "api"
    bare = unique("NoCert")
    sf.mdapi.ConnectedApp.create([sf.mdapi.ConnectedApp(
        fullName=bare, label=bare, contactEmail="a@b.co", profileName=["System Administrator"],
        oauthConfig=sf.mdapi.ConnectedAppOauthConfig(callbackUrl="http://localhost:1717/OauthRedirect",
                                                     scopes=["Api"], isAdminApproved=True))])
    assert_oauth_error(grant(org, keys, consumer_key(sf, bare)), "invalid_grant", "invalid assertion")


def test_chunked_token_request_like_the_salesforce_cli(org, keys, app_key):
    signed = assertion(keys, iss=app_key, sub=ADMIN_USERNAME, aud=org.url + "/",
                       exp=int(time.time() * 1000) + 300, iat=int(time.time()))
    body = f"grant_type={requests.utils.quote(JWT_BEARER, safe='')}&assertion={signed}".encode()

    def chunks():
        for start in range(0, len(body), 100):
            yield body[start:start + 100]

    response = requests.post(f"{org.url}/services/oauth2/token", data=chunks(), verify=org.ca_bundle,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text


def test_simple_salesforce_jwt_login_through_the_fragment_trick(org, keys, app_key):
    host = org.url.removeprefix("https://")
    sf = Salesforce(username=ADMIN_USERNAME, consumer_key=app_key, privatekey=keys.private_pem,
                    instance_url=f"{host}/services/oauth2/token#")
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 5


def test_expired_sessions_get_invalid_session_id(tmp_path, monkeypatch):
    with LocalOrg(tmp_path / "short") as short:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(short.ca_bundle))
        sf = soap_login(short)
        url = f"{short.url}/services/data/v59.0/query"
        assert requests.get(url, params={"q": "SELECT Id FROM Profile"}, headers=bearer(sf.session_id),
                            verify=short.ca_bundle, timeout=5).status_code == 200
        short.advance_clock(short.session_seconds)  # the org's clock: 2 hours pass at once
        expired = requests.get(url, params={"q": "SELECT Id FROM Profile"}, headers=bearer(sf.session_id),
                               verify=short.ca_bundle, timeout=5)
        assert expired.status_code == 401
        assert expired.json() == [{"message": "Session expired or invalid",
                                   "errorCode": "INVALID_SESSION_ID"}]
        envelope = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Header>'
                    f"<SessionHeader><sessionId>{sf.session_id}</sessionId></SessionHeader></e:Header>"
                    "<e:Body><readMetadata><type>ConnectedApp</type></readMetadata></e:Body></e:Envelope>")
        fault = requests.post(f"{short.url}/services/Soap/m/59.0/", data=envelope, verify=short.ca_bundle,
                              timeout=5)
        assert fault.status_code == 500
        assert "<faultcode>sf:INVALID_SESSION_ID</faultcode>" in fault.text
        assert "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session" in fault.text


def test_a_jwt_still_logs_in_after_the_orgs_clock_moved(tmp_path, monkeypatch, keys):
    """The clock offset is time passing for everyone: a client's exp moved as much, so it stays valid."""
    with LocalOrg(tmp_path / "later") as later:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(later.ca_bundle))
        sf = soap_login(later)
        key = consumer_key(sf, create_connected_app(sf, keys))
        later.advance_clock(30 * 86400)
        answer = token_request(later, assertion(keys, iss=key, sub=ADMIN_USERNAME))
        assert answer.status_code == 200, answer.text
        assert abs(int(answer.json()["issued_at"]) / 1000 - later.clock()) < 60
