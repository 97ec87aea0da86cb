"""Refresh tokens: issued by the code exchange, the refresh grant, the app's policy on the org's clock, revocation.

Every behaviour here is what Salesforce documents or was seen to do (the source note of each is in
``runbook.localorg.api.oauth_refresh``'s docstring); the tests drive the org over HTTPS as a client would, and move
the org's clock (``LocalOrg.advance_clock``) instead of sleeping. They use an org of the module's own, so
the clock they move stops no other module's sessions.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from runbook.localorg import ADMIN_USERNAME, LocalOrg
from runbook.phases.webflow import login_form

from ..conftest import soap_login
from ..support import bearer, consumer_key, unique

CALLBACK = "http://localhost:1717/OauthRedirect"
HOUR, DAY = 3600, 86400
REFRESH_KEYS = {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}
EXPIRED = {"error": "invalid_grant", "error_description": "expired access/refresh token"}


@pytest.fixture(scope="module")
def org(tmp_path_factory) -> Iterator[LocalOrg]:
    """An org of this module's own, whose clock moves forward test after test.

    Its sessions last a century, so the admin's stays live however far the tests move the clock; the
    2-hour sessions of a default org are tested on one of their own.
    """
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("refresh"), session_seconds=100 * 365 * DAY) as running:
        os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca_bundle)  # zeep trusts only what this names
        yield running
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="module")
def sf(org):
    return soap_login(org)


def new_secret() -> str:
    return secrets.token_hex(20).upper()


def web_app(sf, *, policy: str = "infinite", scopes=("Api", "Web", "RefreshToken"), secret: str = "",
            **oauth) -> str:
    """A connected app for the web server flow (admin approved, System Administrator); its consumer key.

    ``oauth`` goes to its oauthConfig (isRefreshTokenRotationEnabled, isSecretRequiredForRefreshToken ...).
    """
    md, name = sf.mdapi, unique("Rt")
    config = md.ConnectedAppOauthConfig(callbackUrl=CALLBACK, scopes=list(scopes), isAdminApproved=True,
                                        isConsumerSecretOptional=True, **({"consumerSecret": secret} if secret
                                                                          else {}), **oauth)
    md.ConnectedApp.create([md.ConnectedApp(
        fullName=name, label=name.replace("_", " "), contactEmail="dev@example.com", oauthConfig=config,
        oauthPolicy=md.ConnectedAppOauthPolicy(ipRelaxation="ENFORCE", refreshTokenPolicy=policy),
        profileName=["System Administrator"])])
    return consumer_key(sf, name)


def authorize(org, key: str, **params: str) -> str:
    """A code for the admin: the authorize page, its login form and the redirect, as a browser does them."""
    browser = requests.Session()
    query = {"response_type": "code", "client_id": key, "redirect_uri": CALLBACK, **params}
    page = browser.get(f"{org.url}/services/oauth2/authorize?{urlencode(query)}", verify=org.ca_bundle,
                       allow_redirects=False, timeout=10)
    form = login_form(page.text)
    assert form is not None, page.text
    password = json.loads((org.state_dir / "admin-credentials.json").read_text())["password"]
    answer = browser.post(org.url + form.action, verify=org.ca_bundle, allow_redirects=False, timeout=10,
                          data={**form.fields, "username": ADMIN_USERNAME, form.password_field: password})
    assert answer.status_code == 302, answer.text
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def token(org, **form: str) -> requests.Response:
    return requests.post(f"{org.url}/services/oauth2/token", data=form, verify=org.ca_bundle, timeout=10)


def login(org, key: str, secret: str = "", **params: str) -> dict:
    """The code exchange's answer for a fresh authorization of ``key``."""
    form = {"grant_type": "authorization_code", "code": authorize(org, key, **params), "client_id": key,
            "redirect_uri": CALLBACK, **({"client_secret": secret} if secret else {})}
    answer = token(org, **form)
    assert answer.status_code == 200, answer.text
    return answer.json()


def refresh(org, key: str, refresh_token: str, secret: str | None = None) -> requests.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": key}
    return token(org, **form, **({"client_secret": secret} if secret is not None else {}))


def works(org, access_token: str) -> bool:
    """Whether the access token is a live session (a REST query answers 200, not 401)."""
    answer = requests.get(f"{org.url}/services/data/v62.0/query", params={"q": "SELECT Id FROM Organization"},
                          headers=bearer(access_token), verify=org.ca_bundle, timeout=10)
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def assert_refused(response: requests.Response, body: dict) -> None:
    assert response.status_code == 400 and response.json() == body, response.text
    assert "no-store" in response.headers["Cache-Control"]


# ------------------------------------------------------------------------------------- issuing refresh tokens

@pytest.mark.parametrize(("scope", "issued"), [
    pytest.param({"scope": "refresh_token api web"}, True, id="refresh_token-asked-like-the-cli"),
    pytest.param({"scope": "api offline_access"}, True, id="offline_access-asked"),
    pytest.param({}, True, id="no-scope-means-the-apps-scopes"),
    pytest.param({"scope": "api web"}, False, id="not-asked"),
])
def test_the_code_exchange_returns_a_refresh_token_when_asked_and_the_app_has_the_scope(org, sf, scope, issued):
    body = login(org, web_app(sf), **scope)
    assert ("refresh_token" in body) is issued
    assert set(body) == REFRESH_KEYS | ({"refresh_token"} if issued else set())
    assert ("refresh_token" in body["scope"].split()) is issued
    if issued:
        assert body["refresh_token"].startswith("5Aep861") and len(body["refresh_token"]) > 80


def test_an_app_without_the_refresh_token_scope_never_issues_one(org, sf):
    body = login(org, web_app(sf, scopes=("Api", "Web")), scope="refresh_token api web")
    assert "refresh_token" not in body and body["scope"] == "api web"


def test_refresh_tokens_are_kept_by_digest_never_in_clear(org, sf):
    issued = login(org, web_app(sf))["refresh_token"]
    state = b"".join(path.read_bytes() for path in org.state_dir.glob("org.sqlite3*"))
    assert issued.encode() not in state


# ------------------------------------------------------------------------------------------ the refresh grant

def test_refresh_gives_a_new_access_token_and_no_new_refresh_token_without_rotation(org, sf):
    secret = new_secret()
    key = web_app(sf, secret=secret)
    first = login(org, key)
    answer = refresh(org, key, first["refresh_token"], secret)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == REFRESH_KEYS and body["access_token"] != first["access_token"]
    assert body["id"] == first["id"] and body["instance_url"] == org.url and body["scope"] == first["scope"]
    assert works(org, body["access_token"]) and works(org, first["access_token"])
    assert refresh(org, key, first["refresh_token"], secret).status_code == 200  # the same token again


def test_rotation_issues_a_new_refresh_token_and_a_spent_one_coming_back_revokes_the_grant(org, sf):
    secret = new_secret()
    key = web_app(sf, secret=secret, isRefreshTokenRotationEnabled=True)
    first = login(org, key)
    rotated = refresh(org, key, first["refresh_token"], secret).json()
    assert set(rotated) == REFRESH_KEYS | {"refresh_token"} and rotated["refresh_token"] != first["refresh_token"]
    again = refresh(org, key, rotated["refresh_token"], secret).json()
    assert works(org, again["access_token"])
    # the spent first token comes back: whoever holds it may not be the user, so the whole grant ends
    assert_refused(refresh(org, key, first["refresh_token"], secret), EXPIRED)
    assert_refused(refresh(org, key, again["refresh_token"], secret), EXPIRED)
    assert not works(org, again["access_token"]) and not works(org, first["access_token"])


def test_the_secret_is_required_by_default_and_checked_when_sent(org, sf):
    secret = new_secret()
    key = web_app(sf, secret=secret)  # isSecretRequiredForRefreshToken left out: true [D]
    issued = login(org, key)["refresh_token"]
    wrong = {"error": "invalid_client", "error_description": "invalid client credentials"}
    assert_refused(refresh(org, key, issued), wrong)
    assert_refused(refresh(org, key, issued, "0" * 40), wrong)
    assert refresh(org, key, issued, secret).status_code == 200


def test_an_app_that_does_not_require_the_secret_refreshes_with_the_client_id_alone(org, sf):
    key = web_app(sf, secret=new_secret(), isSecretRequiredForRefreshToken=False)
    issued = login(org, key)["refresh_token"]
    assert refresh(org, key, issued).status_code == 200  # what the CLI sends: client_id, no secret
    assert_refused(refresh(org, key, issued, "0" * 40),
                   {"error": "invalid_client", "error_description": "invalid client credentials"})


def test_refresh_refusals_have_salesforce_bodies(org, sf):
    key = web_app(sf, isSecretRequiredForRefreshToken=False)
    other = web_app(sf, isSecretRequiredForRefreshToken=False)
    issued = login(org, key)["refresh_token"]
    assert_refused(refresh(org, "3MVG9unknown", issued),
                   {"error": "invalid_client_id", "error_description": "client identifier invalid"})
    assert_refused(refresh(org, other, issued), EXPIRED)  # another app's token
    assert_refused(refresh(org, key, "5Aep861" + "x" * 80), EXPIRED)
    assert_refused(refresh(org, key, ""), EXPIRED)
    assert_refused(token(org, grant_type="refresh_token", client_id=key),  EXPIRED)
    assert refresh(org, key, issued).status_code == 200  # none of that harmed the real one


def test_an_expired_session_is_renewed_by_the_refresh_grant(tmp_path, monkeypatch):
    with LocalOrg(tmp_path / "org") as default:  # sessions of 2 hours (session_seconds=7200)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(default.ca_bundle))
        key = web_app(soap_login(default), isSecretRequiredForRefreshToken=False)
        body = login(default, key)
        default.advance_clock(2 * HOUR - 60)
        assert works(default, body["access_token"])
        default.advance_clock(60)
        assert not works(default, body["access_token"])
        renewed = refresh(default, key, body["refresh_token"]).json()["access_token"]
        assert works(default, renewed)


# ------------------------------------------------------------------------------------ the policy, on the clock

def test_infinite_keeps_working_years_later(org, sf):
    key = web_app(sf, policy="infinite", isSecretRequiredForRefreshToken=False)
    issued = login(org, key)["refresh_token"]
    org.advance_clock(5 * 365 * DAY)
    assert refresh(org, key, issued).status_code == 200


def test_zero_refuses_the_token_at_once_while_its_session_lasts(org, sf):
    key = web_app(sf, policy="zero", isSecretRequiredForRefreshToken=False)
    body = login(org, key)
    assert "refresh_token" in body
    assert_refused(refresh(org, key, body["refresh_token"]), EXPIRED)
    assert works(org, body["access_token"])


@pytest.mark.parametrize(("policy", "lifetime"), [
    ("specific_lifetime:3:HOURS", 3 * HOUR), ("specific_lifetime:2:DAYS", 2 * DAY),
    ("specific_lifetime:1:MONTHS", 30 * DAY)])
def test_specific_lifetime_refuses_the_token_n_units_after_it_was_issued_used_or_not(org, sf, policy, lifetime):
    key = web_app(sf, policy=policy, isSecretRequiredForRefreshToken=False)
    issued = login(org, key)["refresh_token"]
    org.advance_clock(lifetime / 2)
    assert refresh(org, key, issued).status_code == 200  # a use does not extend a lifetime
    org.advance_clock(lifetime / 2 - 60)
    assert refresh(org, key, issued).status_code == 200
    org.advance_clock(60)
    assert_refused(refresh(org, key, issued), EXPIRED)


def test_a_lifetime_counts_from_the_authorization_through_rotations(org, sf):
    key = web_app(sf, policy="specific_lifetime:3:HOURS", isSecretRequiredForRefreshToken=False,
                  isRefreshTokenRotationEnabled=True)
    current = login(org, key)["refresh_token"]
    for _ in range(2):
        org.advance_clock(HOUR + 1)
        current = refresh(org, key, current).json()["refresh_token"]
    org.advance_clock(HOUR)
    assert_refused(refresh(org, key, current), EXPIRED)


def test_specific_inactivity_refuses_the_token_n_units_after_its_last_use(org, sf):
    key = web_app(sf, policy="specific_inactivity:2:HOURS", isSecretRequiredForRefreshToken=False)
    issued = login(org, key)["refresh_token"]
    for _ in range(3):  # used every 1 h 59 min: it lives 6 hours, three times its limit
        org.advance_clock(2 * HOUR - 60)
        assert refresh(org, key, issued).status_code == 200
    org.advance_clock(2 * HOUR)
    assert_refused(refresh(org, key, issued), EXPIRED)


def _eca(sf, name: str, policies: dict | None) -> str:
    """An External Client App for the web server flow; ``policies`` None keeps the OAuth policies the org
    generated (SpecificLifetime 365 Days [O]). Its consumer key."""
    md = sf.mdapi
    md.ExternalClientApplication.create([md.ExternalClientApplication(
        fullName=name, contactEmail="a@b.co", label=name, distributionState="Local", isProtected=False)])
    md.ExtlClntAppOauthSettings.create([md.ExtlClntAppOauthSettings(
        fullName=f"{name}OAuthSettings", externalClientApplication=name, label=f"{name} OAuth",
        commaSeparatedOauthScopes="Api, Web, RefreshToken")])
    md.ExtlClntAppGlobalOauthSettings.create([md.ExtlClntAppGlobalOauthSettings(
        fullName=f"{name}GlblOAuth", externalClientApplication=name, label=f"{name} Global", callbackUrl=CALLBACK,
        isConsumerSecretOptional=True, isSecretRequiredForRefreshToken=False)])
    if policies is not None:  # else the generated ones stay: all users may self-authorize, as the login does
        md.ExtlClntAppOauthConfigurablePolicies.upsert([md.ExtlClntAppOauthConfigurablePolicies(
            fullName=f"{name}_oauthPlcy", externalClientApplication=name, label="policy",
            commaSeparatedProfile="System Administrator", permittedUsersPolicyType="AdminApprovedPreAuthorized",
            ipRelaxationPolicyType="Enforce", **policies)])
    return md.ExtlClntAppGlobalOauthSettings.read([f"{name}GlblOAuth"]).consumerKey


def test_an_external_client_app_keeps_the_generated_365_day_lifetime(org, sf):
    key = _eca(sf, unique("RtEca"), None)
    issued = login(org, key)["refresh_token"]
    org.advance_clock(364 * DAY)
    assert refresh(org, key, issued).status_code == 200
    org.advance_clock(DAY)
    assert_refused(refresh(org, key, issued), EXPIRED)


def test_an_external_client_app_policy_of_inactivity_in_hours(org, sf):
    key = _eca(sf, unique("RtEca"), {"refreshTokenPolicyType": "SpecificInactivity",
                                     "refreshTokenValidityPeriod": 1, "refreshTokenValidityUnit": "Hours"})
    issued = login(org, key)["refresh_token"]
    org.advance_clock(HOUR - 60)
    assert refresh(org, key, issued).status_code == 200
    org.advance_clock(HOUR)
    assert_refused(refresh(org, key, issued), EXPIRED)


# ------------------------------------------------------------------------------------------------ revocation

def revoke(org, value: str, method: str = "POST") -> requests.Response:
    url = f"{org.url}/services/oauth2/revoke"
    if method == "GET":
        return requests.get(url, params={"token": value}, verify=org.ca_bundle, timeout=10)
    return requests.post(url, data={"token": value}, verify=org.ca_bundle, timeout=10)


def test_revoking_a_refresh_token_ends_it_and_every_access_token_of_its_grant(org, sf):
    key = web_app(sf, isSecretRequiredForRefreshToken=False)
    body = login(org, key)
    renewed = refresh(org, key, body["refresh_token"]).json()["access_token"]
    untouched = login(org, key)  # the same user's other authorization stays
    answer = revoke(org, body["refresh_token"])
    assert answer.status_code == 200 and answer.text == ""
    assert_refused(refresh(org, key, body["refresh_token"]), EXPIRED)
    assert not works(org, body["access_token"]) and not works(org, renewed)
    assert works(org, untouched["access_token"]) and refresh(org, key, untouched["refresh_token"]).ok


def test_revoking_an_access_token_by_get_ends_that_session_only(org, sf):
    key = web_app(sf, isSecretRequiredForRefreshToken=False)
    body = login(org, key)
    assert revoke(org, body["access_token"], method="GET").status_code == 200
    assert not works(org, body["access_token"])
    assert works(org, refresh(org, key, body["refresh_token"]).json()["access_token"])


def test_revoke_refusals_are_form_encoded_like_salesforce(org, sf):
    key = web_app(sf, isSecretRequiredForRefreshToken=False)
    body = login(org, key)
    assert revoke(org, body["refresh_token"]).ok
    for value in (body["refresh_token"], f"{org.org_id[:15]}!{'x' * 86}"):
        again = revoke(org, value)
        assert again.status_code == 400 and "no-store" in again.headers["Cache-Control"]
        assert again.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert parse_qs(again.text) == {"error": ["invalid_token"], "error_description": ["invalid token"]}
    for value in ("not-a-token", ""):
        assert parse_qs(revoke(org, value).text) == {"error": ["unsupported_token_type"],
                                                     "error_description": ["this token type is not supported"]}


# ----------------------------------------------------------------------------------------------- the clock

def test_the_clock_only_moves_forward_and_every_process_sees_the_offset(org):
    before = org.clock()
    offset = org.advance_clock(90)
    assert org.get_setting("clock_offset_s") == offset and org.clock() - before >= 90
    assert abs(org.clock() - (time.time() + offset)) < 5
    with pytest.raises(ValueError, match="0 or more"):
        org.advance_clock(-1)
