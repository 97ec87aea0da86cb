"""The authorize page: a login form for callers without a session, codes only for a logged-in user, PKCE.

Driven with plain requests, as a browser would: GET the authorize URL, POST the form it shows, follow
the 302 to the callback (not served here: the tests read its Location).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from runbook.localorg import ADMIN_USERNAME
from runbook.phases.webflow import login_form

from ..support import (
    app_id,
    assertion,
    bearer,
    consumer_key,
    create_connected_app,
    first_id,
    token_request,
    unique,
)

CALLBACK = "http://localhost:1717/OauthRedirect"


def _authorize_url(org, key: str, **params: str) -> str:
    query = {"response_type": "code", "client_id": key, "redirect_uri": CALLBACK, "state": "st8", **params}
    return f"{org.url}/services/oauth2/authorize?{urlencode(query)}"


def _admin_password(org) -> str:
    return json.loads((org.state_dir / "admin-credentials.json").read_text())["password"]


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _open(browser: requests.Session, org, url: str) -> requests.Response:
    return browser.get(url, verify=org.ca_bundle, allow_redirects=False, timeout=10)


def _log_in(browser: requests.Session, org, page: requests.Response, username: str, password: str):
    """Submit the login form ``page`` shows, with every field it carries, as a browser would."""
    form = login_form(page.text)
    assert form is not None, page.text
    fields = {**form.fields, "username": username, form.password_field: password}
    return browser.post(org.url + form.action, data=fields, verify=org.ca_bundle, allow_redirects=False,
                        timeout=10)


def _callback_query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _redeem(org, key: str, code: str, **extra: str) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "client_id": key, "redirect_uri": CALLBACK, **extra}
    return requests.post(f"{org.url}/services/oauth2/token", data=form, verify=org.ca_bundle, timeout=10)


@pytest.fixture(scope="module")
def web_key(sf, keys) -> str:
    """A self-authorize app whose secret is optional: only the login stands between a caller and a code."""
    return consumer_key(sf, create_connected_app(sf, keys, admin_approved=False, profiles=(),
                                                 isConsumerSecretOptional=True))


def _assert_login_page(response: requests.Response) -> None:
    assert response.status_code == 200 and "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert "code=" not in response.text and "Set-Cookie" not in response.headers
    form = login_form(response.text)
    assert form is not None and form.password_field == "pw" and "username" in form.fields


def test_anonymous_authorize_gets_a_login_page_never_a_code(org, sf, keys):
    name = create_connected_app(sf, keys, admin_approved=False, profiles=(), isConsumerSecretOptional=True)
    key = consumer_key(sf, name)
    for hint in ({}, {"login_hint": ADMIN_USERNAME}):
        page = _open(requests.Session(), org, _authorize_url(org, key, **hint))
        _assert_login_page(page)
        assert login_form(page.text).fields["username"] == hint.get("login_hint", "")
    # the page view approved nothing: a self-authorize app still refuses the admin's JWT login
    refused = token_request(org, assertion(keys, iss=key, sub=ADMIN_USERNAME))
    assert refused.json() == {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}
    admin = first_id(sf, f"SELECT Id FROM User WHERE Username = '{ADMIN_USERNAME}'")
    assert not org.store.has_approval(app_id(sf, name), admin)


def test_a_wrong_password_or_unknown_user_gets_the_page_again_with_the_error(org, web_key):
    browser = requests.Session()
    page = _open(browser, org, _authorize_url(org, web_key, login_hint=ADMIN_USERNAME))
    for username, password in ((ADMIN_USERNAME, "not-the-password"), ("nobody@local.devhub", "x"),
                               ("dev@local.devhub", "")):
        again = _log_in(browser, org, page, username, password)
        _assert_login_page(again)
        form = login_form(again.text)
        assert form.error == ("Please check your username and password. If you still can't log in, contact your "
                              "Salesforce administrator.")
        assert form.fields["username"] == username
    assert not browser.cookies


def test_logging_in_gives_a_code_and_the_code_a_working_token(org, web_key):
    browser = requests.Session()
    page = _open(browser, org, _authorize_url(org, web_key))
    answer = _log_in(browser, org, page, ADMIN_USERNAME, _admin_password(org))
    back = _callback_query(answer)
    assert back["state"] == "st8" and set(back) == {"code", "state"}
    cookie = answer.headers["Set-Cookie"]
    assert re.match(r"sid=[\w-]{40,};", cookie)
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    token = _redeem(org, web_key, back["code"])
    assert token.status_code == 200, token.text
    me = requests.get(f"{org.url}/services/oauth2/userinfo", headers=bearer(token.json()["access_token"]),
                      verify=org.ca_bundle, timeout=10)
    assert me.json()["preferred_username"] == ADMIN_USERNAME


def test_a_session_cookie_skips_the_form_unless_prompt_login(org, web_key):
    browser = requests.Session()
    first = _open(browser, org, _authorize_url(org, web_key))
    _callback_query(_log_in(browser, org, first, ADMIN_USERNAME, _admin_password(org)))
    again = _callback_query(_open(browser, org, _authorize_url(org, web_key, state="second")))
    assert again["state"] == "second" and _redeem(org, web_key, again["code"]).status_code == 200
    _assert_login_page(_open(browser, org, _authorize_url(org, web_key, prompt="login")))
    # the cookie is no access token, and a made-up cookie is no session
    session_id = browser.cookies["sid"]
    assert requests.get(f"{org.url}/services/oauth2/userinfo", headers=bearer(session_id), verify=org.ca_bundle,
                        timeout=10).status_code == 403
    forged = requests.Session()
    forged.cookies.set("sid", secrets.token_urlsafe(32), domain=urlsplit(org.url).hostname)
    _assert_login_page(_open(forged, org, _authorize_url(org, web_key)))


def test_login_as_a_user_the_app_does_not_admit_is_denied_at_the_callback(org, sf, keys):
    key = consumer_key(sf, create_connected_app(sf, keys, profiles=("Standard User",),
                                                isConsumerSecretOptional=True))
    browser = requests.Session()
    page = _open(browser, org, _authorize_url(org, key))
    back = _callback_query(_log_in(browser, org, page, ADMIN_USERNAME, _admin_password(org)))
    assert back == {"error": "access_denied", "error_description": "user is not admin approved to access this app",
                    "state": "st8"}


def test_unknown_client_or_foreign_callback_is_refused_on_the_orgs_own_page(org, web_key):
    unknown = _open(requests.Session(), org, _authorize_url(org, "3MVG9" + "x" * 40))
    assert unknown.status_code == 400
    assert unknown.text == "error=invalid_client_id&error_description=client identifier invalid"
    foreign = _open(requests.Session(), org, _authorize_url(org, web_key, redirect_uri="https://evil.example/cb"))
    assert foreign.status_code == 400 and "redirect_uri_mismatch" in foreign.text


# --- PKCE -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pkce_key(sf, keys) -> str:
    return consumer_key(sf, create_connected_app(sf, keys, admin_approved=False, profiles=(),
                                                 isConsumerSecretOptional=True, isPkceRequired=True))


def _eca_with_pkce(sf, keys) -> str:
    """An External Client App whose global OAuth settings require PKCE; returns its consumer key."""
    md, name = sf.mdapi, unique("PkceEca")
    md.ExternalClientApplication.create([md.ExternalClientApplication(
        fullName=name, contactEmail="a@b.co", label=name, distributionState="Local", isProtected=False)])
    md.ExtlClntAppOauthSettings.create([md.ExtlClntAppOauthSettings(
        fullName=f"{name}OAuth", externalClientApplication=name, label=name, commaSeparatedOauthScopes="Api, Web")])
    md.ExtlClntAppGlobalOauthSettings.create([md.ExtlClntAppGlobalOauthSettings(
        fullName=f"{name}Glbl", externalClientApplication=name, label=name, callbackUrl=CALLBACK,
        certificate=keys.certificate_pem, isConsumerSecretOptional=True, isPkceRequired=True)])
    return md.ExtlClntAppGlobalOauthSettings.read([f"{name}Glbl"]).consumerKey


def test_an_app_requiring_pkce_refuses_an_authorize_without_a_challenge(org, sf, keys, pkce_key):
    for key in (pkce_key, _eca_with_pkce(sf, keys)):
        refused = _open(requests.Session(), org, _authorize_url(org, key))
        assert _callback_query(refused) == {"error": "invalid_request",
                                            "error_description": "missing required code challenge", "state": "st8"}


def _pkce_code(org, key: str, challenge: str) -> str:
    browser = requests.Session()
    page = _open(browser, org, _authorize_url(org, key, code_challenge=challenge))
    return _callback_query(_log_in(browser, org, page, ADMIN_USERNAME, _admin_password(org)))["code"]


def test_a_missing_or_wrong_verifier_is_refused_and_the_right_one_works(org, pkce_key):
    verifier, challenge = _pkce()
    for extra in ({}, {"code_verifier": _pkce()[0]}):
        refused = _redeem(org, pkce_key, _pkce_code(org, pkce_key, challenge), **extra)
        assert refused.status_code == 400
        assert refused.json() == {"error": "invalid_grant", "error_description": "invalid code verifier"}
    ok = _redeem(org, pkce_key, _pkce_code(org, pkce_key, challenge), code_verifier=verifier)
    assert ok.status_code == 200, ok.text


def test_a_challenge_sent_to_an_app_not_requiring_pkce_is_still_checked(org, web_key):
    verifier, challenge = _pkce()
    refused = _redeem(org, web_key, _pkce_code(org, web_key, challenge))
    assert refused.json()["error_description"] == "invalid code verifier"
    assert _redeem(org, web_key, _pkce_code(org, web_key, challenge), code_verifier=verifier).status_code == 200
