"""Phase 4 against the local org: each known JWT refusal produced for real, with its fix text."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import run_phases, user_id

from runbook.certificate import certificate_pem, ensure_certificate
from runbook.errors import InputError, LoginError
from runbook.localorg import ADMIN_USERNAME
from runbook.metadata import create
from runbook.org import connect
from runbook.verify import HandOff, default_audience, jwt_login, verify_setup
from runbook.workdir import open_workdir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Phases 1–3 through papermill: the app, with System Administrator pre-authorized."""
    workdir = run_phases(tmp_path_factory.mktemp("verify"), phases=["certificate", "connected_app", "access"])
    return workdir, connect("local", workdir=workdir)


def _records(workdir: Path) -> tuple[dict, dict]:
    wd = open_workdir(workdir)
    return wd.load("certificate"), wd.load("connected_app")


def _login(workdir: Path, session, **overrides):
    cert, app = _records(workdir)
    args = {"consumer_key": app["consumer_key"], "username": ADMIN_USERNAME, "key_path": Path(cert["key_path"]),
            "login_url": session.login_url, **overrides}
    return jwt_login(**args)


def test_verify_logs_in_each_user_and_records_the_hand_off(setup):
    workdir, session = setup
    handoff = verify_setup(session, workdir=workdir, usernames=[ADMIN_USERNAME])
    assert isinstance(handoff, HandOff)
    assert [lr.user_id for lr in handoff.logins] == [user_id(session, ADMIN_USERNAME)]
    record = open_workdir(workdir).load("verify")
    assert record["logins"][0]["username"] == ADMIN_USERNAME
    assert record["consumer_key"] == _records(workdir)[1]["consumer_key"]
    assert record["sf_command"].startswith("sf org login jwt --client-id ")
    rows = dict(handoff.rows())
    assert rows["Certificate expires"] == handoff.certificate_expires
    assert f"--username {ADMIN_USERNAME}" in rows["Log in with the CLI"]
    assert "access_token" not in str(record) and "<table>" in handoff._repr_html_()


def test_user_outside_the_preauthorized_profiles_gets_the_profile_fix(setup):
    workdir, session = setup
    with pytest.raises(LoginError) as caught:
        verify_setup(session, workdir=workdir, usernames=[ADMIN_USERNAME, "dev@local.devhub"])
    message = str(caught.value)
    assert message.startswith("invalid_app_access: user is not admin approved to access this app.")
    assert "dev@local.devhub is not pre-authorized" in message
    assert "Fix: add the user's profile or a permission set assigned to the user in phase 3" in message


def test_unknown_consumer_key_is_polled_until_the_limit_then_explained(setup):
    workdir, session = setup
    started = time.monotonic()
    with pytest.raises(LoginError) as caught:
        _login(workdir, session, consumer_key="3MVG9NotAnAppOfThisOrg", propagation_timeout=3)
    waited = time.monotonic() - started
    assert 2 <= waited < 4.5  # polls 1 s, 1.5 s apart: the next one would pass the limit
    message = str(caught.value)
    assert message.startswith("invalid_client_id: client identifier invalid.")
    assert "takes 2–10 minutes" in message and "of propagation_timeout=3 (2 tries)" in message
    assert "raise propagation_timeout" in message


def test_unknown_consumer_key_without_a_wait_says_it_did_not_wait(setup):
    workdir, session = setup
    with pytest.raises(LoginError, match=r"Not waited \(propagation_timeout=0\)"):
        _login(workdir, session, consumer_key="3MVG9NotAnAppOfThisOrg")


def test_new_app_is_found_once_it_propagates_during_the_wait(setup):
    """The app appears while the login polls, as a new app does on a real org after a few minutes."""
    workdir, session = setup
    cert, _app = _records(workdir)
    key = "3MVG9LateApp" + str(time.time_ns())[-8:]

    def deploy_later() -> None:
        time.sleep(0.5)
        create(session, "ConnectedApp", {
            "fullName": "Late_App", "label": "Late App", "contactEmail": "admin@example.com",
            "oauthConfig": {"callbackUrl": "http://localhost:1717/OauthRedirect", "consumerKey": key,
                            "certificate": certificate_pem(Path(cert["cert_path"])), "scopes": ["Api"],
                            "isAdminApproved": True},
            "profileName": ["System Administrator"]})

    thread = threading.Thread(target=deploy_later)
    thread.start()
    result, _token = _login(workdir, session, consumer_key=key, propagation_timeout=10)
    thread.join()
    assert result.user_id == user_id(session, ADMIN_USERNAME)
    assert 0.5 <= result.waited < 3


def test_key_that_does_not_match_the_app_shows_both_fingerprints(setup, tmp_path):
    workdir, session = setup
    cert, _app = _records(workdir)
    other = ensure_certificate(workdir=tmp_path / "other")
    with pytest.raises(LoginError) as caught:
        verify_setup(session, workdir=workdir, key_path=str(other.key_path))
    message = str(caught.value)
    assert message.startswith("invalid_grant: invalid assertion.")
    assert cert["sha256_fingerprint"] in message and "read from the org" in message
    assert str(other.key_path) in message
    assert "Fix: rerun phase 2 to upload the certificate of this key" in message


def test_wrong_audience_names_login_test_and_my_domain(setup):
    workdir, session = setup
    with pytest.raises(LoginError) as caught:
        verify_setup(session, workdir=workdir, audience="https://test.example.com")
    message = str(caught.value)
    assert message.startswith("invalid_grant: audience is invalid.")
    assert "aud=https://test.example.com" in message
    assert "https://login.salesforce.com for production/My Domain" in message


def test_expired_jwt_shows_the_clock_offset(setup):
    workdir, session = setup
    with pytest.raises(LoginError) as caught:
        _login(workdir, session, clock=lambda: time.time() - 900)  # this machine 15 minutes behind
    message = str(caught.value)
    assert message.startswith("invalid_grant: expired authorization code.")
    offset = int(message.split("The org's clock is ")[1].split(" s ")[0])
    assert 895 <= offset <= 905 and "ahead of this machine's" in message
    assert "Fix: sync this machine's clock (NTP" in message


def test_self_authorize_app_without_approval_names_the_policy(setup):
    workdir, session = setup
    cert, _app = _records(workdir)
    key = "3MVG9SelfAuth" + str(time.time_ns())[-8:]
    create(session, "ConnectedApp", {
        "fullName": "Self_Auth_App", "label": "Self Auth App", "contactEmail": "admin@example.com",
        "oauthConfig": {"callbackUrl": "http://localhost:1717/OauthRedirect", "consumerKey": key,
                        "certificate": certificate_pem(Path(cert["cert_path"])), "scopes": ["Api"],
                        "isAdminApproved": False}})
    with pytest.raises(LoginError) as caught:
        _login(workdir, session, consumer_key=key, username="ci@local.devhub")
    message = str(caught.value)
    assert message.startswith("invalid_grant: user hasn't approved this consumer.")
    assert 'Fix: set permitted_users="admin_approved" in phase 3' in message


def test_inactive_user_is_named(setup):
    workdir, session = setup
    with pytest.raises(LoginError, match=r"inactive@local\.devhub is deactivated\. Fix: activate the user"):
        _login(workdir, session, username="inactive@local.devhub")


def test_empty_username_list_falls_back_to_the_connected_user(setup):
    workdir, session = setup
    handoff = verify_setup(session, workdir=workdir, usernames="")
    assert handoff.logins[0].username == session.username


def test_missing_phase_records_are_refused(tmp_path, setup):
    _workdir, session = setup
    with pytest.raises(InputError, match="run phases 1 and 2 first"):
        verify_setup(session, workdir=tmp_path)


@pytest.mark.parametrize(("login_url", "audience"), [
    ("https://login.salesforce.com", "https://login.salesforce.com"),
    ("https://test.salesforce.com", "https://test.salesforce.com"),
    ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
    ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
    ("https://acme--uat.my.salesforce.com", "https://test.salesforce.com"),
    ("https://127.0.0.1:8443/", "https://127.0.0.1:8443"),
])
def test_audience_follows_the_login_url(login_url, audience):
    assert default_audience(login_url) == audience


def test_a_first_run_against_an_org_with_a_propagation_delay_passes_with_the_defaults(tmp_path):
    """As on a real org: the new app answers invalid_client_id for a while; phase 4 waits it out by default."""
    from conftest import free_callback_port

    from runbook.batch import run_runbook

    summary = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                          fresh_org=True, local_org={"propagation_s": 3},
                          params={"callback_port": free_callback_port()})

    assert summary.ok, summary.lines()
    login = open_workdir(tmp_path / "work").load("verify")["logins"][0]
    assert 1 <= login["waited"] <= 3 + 4  # usable after ~3 s of the save, found within one poll (<= 4 s)
    executed = (summary.run_dir / "04_verify.ipynb").read_text()
    assert "to reach the org&#x27;s login servers (invalid_client_id) as admin@local.devhub: usable after" in executed
