"""Phase 4 against the local org: each known JWT refusal produced for real, with its fix text."""

from __future__ import annotations

import re
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import run_phases, user_id

from runbook.errors import InputError, LoginError
from runbook.localorg import ADMIN_USERNAME
from runbook.phases.certificate import certificate_pem, ensure_certificate
from runbook.phases.jwt_bearer import check_login_url, default_audience, jwt_login
from runbook.phases.verify import HandOff, verify_setup
from runbook.salesforce import connect, start_local_org
from runbook.salesforce.metadata import create
from runbook.work.workdir import open_workdir


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
    assert 1 <= waited < 4.5  # polls 1 s, then 1.5 s apart, as long as the next one stays inside the limit
    message = str(caught.value)
    assert message.startswith("invalid_client_id: client identifier invalid.")
    assert "takes 2–10 minutes" in message and re.search(r"of propagation_timeout=3 \([12] tries\)", message)
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

    org = start_local_org(workdir / "localorg")
    mark = len(org.call_log())

    def deploy_later() -> None:  # once the login was refused at least once, as on a real org
        deadline = time.monotonic() + 10
        while not any(c.operation == "oauth.token" for c in org.call_log()[mark:]) and time.monotonic() < deadline:
            time.sleep(0.05)
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
    assert 0 < result.waited < 5  # found at the next poll after it appeared


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

    from runbook.run.batch import run_runbook

    summary = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                          fresh_org=True, local_org={"propagation_s": 3},
                          params={"callback_port": free_callback_port()})

    assert summary.ok, summary.lines()
    login = open_workdir(tmp_path / "work").load("verify")["logins"][0]
    assert 1 <= login["waited"] <= 3 + 4  # usable after ~3 s of the save, found within one poll (<= 4 s)
    executed = (summary.run_dir / "04_verify.ipynb").read_text()
    assert "to reach the org&#x27;s login servers (invalid_client_id) as admin@local.devhub: usable after" in executed


# ---------------------------------------------------------------- issue 16: phase 4's inputs and passphrases

def _calls(session) -> int:
    """How many calls the local org behind ``session`` has served: a refused input must add none."""
    return len(start_local_org(session.local_state).call_log())


@pytest.mark.parametrize(("login_url", "problem"), [
    ("ftp://login.salesforce.com", "the scheme is ftp: Salesforce takes logins over https only"),
    ("http://login.salesforce.com", "the scheme is http: Salesforce takes logins over https only"),
    ("login.salesforce.com", "the scheme is missing"),
    ("https://login.salesforce.con", "login.salesforce.con is not a Salesforce login host (did you mean "
                                     "https://login.salesforce.com?)"),
    ("https://evil.example.com", "evil.example.com is not a Salesforce login host."),
    ("https://acme.lightning.force.com", "a Lightning Experience host"),
    ("https://acme.my.salesforce.com/services/oauth2/token", "it has a path"),
])
def test_a_login_url_that_is_not_https_to_salesforce_is_refused_before_any_call(setup, login_url, problem):
    workdir, session = setup
    before = _calls(session)
    with pytest.raises(InputError) as caught:
        verify_setup(session, workdir=workdir, login_url=login_url)
    assert caught.value.field == "login_url" and problem in str(caught.value)
    assert "Fix: " in str(caught.value) and _calls(session) == before


def test_credentials_in_the_login_url_are_refused_and_never_shown(setup):
    workdir, session = setup
    password = "Pw-" + str(time.time_ns())
    with pytest.raises(InputError) as caught:
        verify_setup(session, workdir=workdir, login_url=f"https://ci:{password}@login.salesforce.com")
    message = str(caught.value)
    assert caught.value.field == "login_url" and "it holds credentials (user:password@, not shown)" in message
    assert password not in message and "ci:" not in message


@pytest.mark.parametrize("login_url", ["https://login.salesforce.com", "https://test.salesforce.com/",
                                       "https://acme.my.salesforce.com", "https://acme--uat.sandbox.my.salesforce.com",
                                       "https://acme.my.site.force.com", "https://127.0.0.1:8443",
                                       "https://localhost:8443"])
def test_salesforce_hosts_and_the_local_org_are_accepted_as_login_urls(login_url):
    assert check_login_url(login_url) == login_url.rstrip("/")


def test_a_login_url_whose_host_does_not_resolve_is_named_with_the_fix(setup, monkeypatch):
    workdir, session = setup
    host = "no-such-org-runbook.my.salesforce.com"
    real = socket.getaddrinfo

    def resolve(name, *args, **kwargs):  # the resolver's answer for a My Domain that does not exist
        if name == host:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with pytest.raises(InputError) as caught:
        verify_setup(session, workdir=workdir, login_url=f"https://{host}", propagation_timeout=0)
    message = str(caught.value)
    assert message.startswith(f"login_url='https://{host}' is not valid: {host} does not resolve (DNS). Fix: check "
                              "the spelling")
    assert "Setup > My Domain" in message


def test_a_login_url_whose_certificate_is_not_trusted_is_named_with_the_fix(setup, monkeypatch):
    import certifi

    workdir, session = setup
    monkeypatch.setattr(session, "verify", certifi.where())  # the public CAs only: the local org's CA is not one
    with pytest.raises(InputError) as caught:
        verify_setup(session, workdir=workdir, login_url=session.login_url, propagation_timeout=0)
    message = str(caught.value)
    assert caught.value.field == "login_url"
    assert "the TLS handshake with 127.0.0.1 failed (" in message and "certificate" in message
    assert "REQUESTS_CA_BUNDLE=<state>/ca-bundle.pem" in message


def test_a_user_who_does_not_exist_gets_no_such_user(setup):
    workdir, session = setup
    with pytest.raises(LoginError) as caught:
        verify_setup(session, workdir=workdir, usernames=["nobody@local.devhub"], propagation_timeout=0)
    message = str(caught.value)
    assert message.startswith("invalid_grant: user hasn't approved this consumer. no such user: this org has no "
                              "user nobody@local.devhub.")
    assert "Fix: check the username" in message and "permitted_users" not in message


def test_an_existing_user_who_never_approved_a_self_authorize_app_is_told_to_pre_authorize(setup, tmp_path):
    workdir, session = setup
    cert, app = _records(workdir)
    key = "3MVG9SelfLookup" + str(time.time_ns())[-8:]
    create(session, "ConnectedApp", {
        "fullName": "Self_Auth_Lookup", "label": "Self Auth Lookup", "contactEmail": "admin@example.com",
        "oauthConfig": {"callbackUrl": "http://localhost:1717/OauthRedirect", "consumerKey": key,
                        "certificate": certificate_pem(Path(cert["cert_path"])), "scopes": ["Api"],
                        "isAdminApproved": False}})
    copy = open_workdir(tmp_path / "work")  # phase 2's record, pointing at the self-authorize app
    copy.save("certificate", cert)
    copy.save("connected_app", {**app, "full_name": "Self_Auth_Lookup", "consumer_key": key})
    with pytest.raises(LoginError) as caught:
        verify_setup(session, workdir=copy.root, usernames=["ci@local.devhub"], propagation_timeout=0)
    message = str(caught.value)
    assert "ci@local.devhub may not use the app without approving it: the app lets users self-authorize" in message
    assert 'Fix: set permitted_users="admin_approved" in phase 3' in message and "no such user" not in message


def test_an_encrypted_key_passes_phase_4_with_passphrase_env_and_the_hand_off_says_how_to_decrypt_it(
        tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TEST_KEY_PASSPHRASE", "correct horse " + str(time.time_ns()))
    workdir = run_phases(tmp_path, passphrase_env="RUNBOOK_TEST_KEY_PASSPHRASE")  # all four phases, papermill
    record = open_workdir(workdir).load("verify")
    key = Path(record["key_path"])
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes() and record["passphrase_env"] == "RUNBOOK_TEST_KEY_PASSPHRASE"
    assert any("`sf org login jwt` reads only an unencrypted key file" in note for note in record["notes"])
    copy = key.with_name("server.unencrypted.key")
    assert f"--jwt-key-file {copy} " in record["sf_command"]

    subprocess.run(["bash", "-c", record["decrypt_command"]], check=True)  # as the hand-off tells the user

    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and b"ENCRYPTED" not in copy.read_bytes()
    session = connect("local", workdir=workdir)
    result, _token = jwt_login(consumer_key=record["consumer_key"], username=ADMIN_USERNAME, key_path=copy,
                               login_url=session.login_url)  # what `sf org login jwt --jwt-key-file COPY` sends
    assert result.username == ADMIN_USERNAME


def test_an_encrypted_key_without_passphrase_env_is_refused_before_any_call(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TEST_KEY_PASSPHRASE", "another " + str(time.time_ns()))
    workdir = run_phases(tmp_path, phases=["certificate", "connected_app", "access"],
                         passphrase_env="RUNBOOK_TEST_KEY_PASSPHRASE")
    session = connect("local", workdir=workdir)
    before = _calls(session)
    with pytest.raises(InputError) as caught:
        verify_setup(session, workdir=workdir)
    assert str(caught.value).startswith("passphrase_env='' is not valid. Fix: the key is encrypted: set "
                                        "passphrase_env to the name of an environment variable")
    monkeypatch.setenv("RUNBOOK_TEST_KEY_PASSPHRASE", "not the passphrase")
    with pytest.raises(InputError) as wrong:
        verify_setup(session, workdir=workdir, passphrase_env="RUNBOOK_TEST_KEY_PASSPHRASE")
    assert str(wrong.value).startswith("passphrase_env='RUNBOOK_TEST_KEY_PASSPHRASE' is not valid. Fix: the "
                                       "passphrase does not decrypt this key")
    assert _calls(session) == before
