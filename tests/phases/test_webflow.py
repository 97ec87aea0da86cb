"""The web server flow with PKCE, end to end against the local org's authorize page and token endpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import time
from functools import partial
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from conftest import free_callback_port, run_phases, user_id

from runbook.cli import main
from runbook.errors import InputError, LoginError
from runbook.export_ci import export_sfdx_auth_url
from runbook.localorg import ADMIN_USERNAME
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.certificate import certificate_pem
from runbook.phases.jwt_bearer import jwt_login
from runbook.phases.verify import verify_setup, verify_web_flow
from runbook.phases.webflow import (
    CallbackServer,
    _exchange,
    authorize_url,
    describe_refresh_policy,
    follow_redirects,
    login_form,
    pkce_pair,
    run_web_flow,
)
from runbook.run.batch import run_runbook
from runbook.salesforce import connect
from runbook.salesforce.metadata import create
from runbook.work.files import write_atomic
from runbook.work.workdir import open_workdir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Phases 1–3 with flows jwt + web: a PKCE app whose consumer secret phase 2 wrote to a 0600 file."""
    wd = open_workdir(run_phases(tmp_path_factory.mktemp("webflow"), phases=["certificate", "connected_app", "access"],
                                 flows=["jwt", "web"]))
    return wd, connect("local", workdir=wd.root), wd.load("connected_app")


def _extra_app(session, cert_path: str, name: str, **oauth) -> tuple[str, str]:
    """A connected app made through the Metadata API; returns its consumer key and callback URL."""
    key, callback = f"3MVG9{name}{time.time_ns()}", f"http://localhost:{free_callback_port()}/OauthRedirect"
    create(session, "ConnectedApp", {
        "fullName": name, "label": name.replace("_", " "), "contactEmail": "admin@example.com",
        "oauthConfig": {"callbackUrl": callback, "consumerKey": key, "certificate": certificate_pem(Path(cert_path)),
                        "scopes": ["Api", "Web"], **oauth}})
    return key, callback


def _flow(session, consumer_key, callback_url, **kwargs):
    return run_web_flow(consumer_key=consumer_key, callback_url=callback_url, login_url=session.login_url,
                        show=lambda _url: None, browser=partial(follow_redirects, state_dir=session.local_state),
                        timeout=10, **kwargs)


def test_web_flow_with_the_recorded_secret_logs_in_end_to_end(setup):
    _wd, session, app = setup
    secret_file = Path(app["consumer_secret_file"])
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    shown = []
    result = run_web_flow(consumer_key=app["consumer_key"], callback_url=app["callback_url"],
                          login_url=session.login_url, consumer_secret_file=secret_file, show=shown.append,
                          browser=partial(follow_redirects, state_dir=session.local_state), timeout=10)
    assert result.username == ADMIN_USERNAME and result.used_client_secret
    assert result.instance_url == session.instance_url
    assert "code_challenge_method=S256" in shown[0] and "/services/oauth2/authorize?" in shown[0]
    assert secret_file.read_text().strip() not in str(result.as_dict())


def test_web_flow_with_pkce_only_needs_no_secret(setup):
    _wd, session, app = setup
    result = _flow(session, app["consumer_key"], app["callback_url"], login_hint=ADMIN_USERNAME)
    assert result.username == ADMIN_USERNAME and not result.used_client_secret


def test_self_authorize_approval_in_the_web_flow_then_allows_jwt(setup):
    wd, session, _app = setup
    cert = wd.load("certificate")
    key, callback = _extra_app(session, cert["cert_path"], "Self_Web", isAdminApproved=False,
                               isConsumerSecretOptional=True)
    jwt_args = {"consumer_key": key, "key_path": Path(cert["key_path"]), "login_url": session.login_url}
    with pytest.raises(LoginError, match="user hasn't approved this consumer"):
        jwt_login(username=ADMIN_USERNAME, **jwt_args)
    # login_hint only fills in the form: whoever logs in (the admin here) is who approves
    result = _flow(session, key, callback, login_hint="dev@local.devhub")
    assert result.username == ADMIN_USERNAME
    login, _token = jwt_login(username=ADMIN_USERNAME, **jwt_args)  # the recorded approval now allows JWT
    assert login.user_id == user_id(session, ADMIN_USERNAME)
    with pytest.raises(LoginError, match="user hasn't approved this consumer"):
        jwt_login(username="dev@local.devhub", **jwt_args)


def test_app_requiring_its_secret_refuses_pkce_alone_and_a_wrong_secret(setup, tmp_path):
    wd, session, _app = setup
    secret = "S" * 40 + str(time.time_ns())
    key, callback = _extra_app(session, wd.load("certificate")["cert_path"], "Secret_Web", isAdminApproved=False,
                               consumerSecret=secret)
    with pytest.raises(LoginError) as caught:
        _flow(session, key, callback)
    assert str(caught.value).startswith("invalid_client: invalid client credentials.")
    assert "Fix: pass consumer_secret_file" in str(caught.value)
    wrong = write_atomic(tmp_path / "wrong.secret", "not-the-secret")
    with pytest.raises(LoginError, match="the consumer secret does not match the app's"):
        _flow(session, key, callback, consumer_secret_file=wrong)
    right = write_atomic(tmp_path / "right.secret", secret)
    assert _flow(session, key, callback, consumer_secret_file=right).used_client_secret
    right.unlink()


def test_secret_file_readable_by_others_is_refused(setup, tmp_path):
    _wd, session, app = setup
    loose = write_atomic(tmp_path / "loose.secret", "x", 0o644)
    with pytest.raises(InputError, match="chmod 600"):
        _flow(session, app["consumer_key"], app["callback_url"], consumer_secret_file=loose)


def test_pkce_verifier_is_checked_and_a_code_is_single_use(setup):
    _wd, session, app = setup
    verifier, challenge = pkce_pair()
    url = authorize_url(login_url=session.login_url, consumer_key=app["consumer_key"],
                        callback_url=app["callback_url"], challenge=challenge, state="s1")
    with CallbackServer(app["callback_url"]) as server:
        follow_redirects(url, state_dir=session.local_state)
        code = server.wait(5)["code"]
    args = {"secret": "", "consumer_key": app["consumer_key"], "callback_url": app["callback_url"],
            "login_url": session.login_url, "http": session.http(retrying=False)}
    with pytest.raises(LoginError) as caught:
        _exchange(code, pkce_pair()[0], **args)
    assert str(caught.value).startswith("invalid_grant: invalid code verifier.")
    with pytest.raises(LoginError, match="the code was already used"):
        _exchange(code, verifier, **args)


def test_user_not_preauthorized_is_denied_with_the_phase_3_fix(setup):
    wd, session, _app = setup
    key, callback = _extra_app(session, wd.load("certificate")["cert_path"], "Nobody_Web", isAdminApproved=True,
                               isConsumerSecretOptional=True)  # admin-approved, no profile or permission set
    with pytest.raises(LoginError) as caught:
        _flow(session, key, callback)
    assert str(caught.value).startswith("access_denied: user is not admin approved to access this app.")
    assert "pre-authorize the user's profile or permission set in phase 3" in str(caught.value)


def test_the_browser_logs_in_through_the_page_and_then_rides_its_session(setup):
    _wd, session, app = setup
    url = authorize_url(login_url=session.login_url, consumer_key=app["consumer_key"],
                        callback_url=app["callback_url"], challenge=pkce_pair()[1], state="s2")
    ca = str(session.local_state / "ca-bundle.pem")
    page = requests.get(url, verify=ca, timeout=10, allow_redirects=False)
    assert page.status_code == 200 and login_form(page.text) is not None and "code=" not in page.text
    with CallbackServer(app["callback_url"]) as server:
        follow_redirects(url, state_dir=session.local_state)
        assert server.wait(5)["state"] == "s2" and "code" in server.received


def test_a_wrong_admin_password_is_refused_with_the_credentials_fix(setup, tmp_path):
    _wd, session, app = setup
    shutil.copy(session.local_state / "ca-bundle.pem", tmp_path / "ca-bundle.pem")
    wrong = {"username": ADMIN_USERNAME, "password": "Not-The-Pw-42"}
    write_atomic(tmp_path / "admin-credentials.json", json.dumps(wrong))
    with pytest.raises(LoginError) as caught:
        run_web_flow(consumer_key=app["consumer_key"], callback_url=app["callback_url"], login_url=session.login_url,
                     show=lambda _url: None, browser=partial(follow_redirects, state_dir=tmp_path), timeout=10)
    assert str(caught.value).startswith("login_refused: Please check your username and password. If you still "
                                        "can't log in, contact your Salesforce administrator. The local org refused")
    assert "admin-credentials.json" in str(caught.value) and "Not-The-Pw-42" not in str(caught.value)


def test_follow_redirects_sends_the_admin_password_to_the_local_org_only(setup):
    _wd, session, _app = setup
    with pytest.raises(InputError, match="only opens the local org's pages"):
        follow_redirects("https://login.salesforce.com/services/oauth2/authorize?client_id=x",
                         state_dir=session.local_state)


def test_callback_url_not_on_the_app_names_callback_port(setup):
    _wd, session, app = setup
    with pytest.raises(LoginError) as caught:
        _flow(session, app["consumer_key"], f"http://localhost:{free_callback_port()}/OauthRedirect")
    assert str(caught.value).startswith("redirect_uri_mismatch: redirect_uri must match configuration.")
    assert "set callback_port in phase 2" in str(caught.value)


def test_nobody_logging_in_times_out_with_a_clear_error(setup):
    _wd, session, app = setup
    started = time.monotonic()
    with pytest.raises(LoginError) as caught:
        run_web_flow(consumer_key=app["consumer_key"], callback_url=app["callback_url"],
                     login_url=session.login_url, show=lambda _url: None, timeout=0.5)
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith(f"timeout: no redirect to {app['callback_url']} within 0 s")
    assert "raise web_flow_timeout" in str(caught.value)


def test_busy_callback_port_is_named(setup):
    _wd, session, app = setup
    port = int(app["callback_url"].split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the earlier tests' TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(InputError) as caught:
            _flow(session, app["consumer_key"], app["callback_url"])
    assert f"callback_port={port} is not valid" in str(caught.value)
    assert f"port {port} is busy" in str(caught.value) and "change callback_port in phase 2" in str(caught.value)


def test_phase_4_notebook_checks_the_web_flow_when_the_app_has_it(tmp_path):
    summary = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs",
                          params={"callback_port": free_callback_port(), "flows": ["jwt", "web"]},
                          progress=lambda _m: None)
    assert summary.ok, summary.lines()
    wd = open_workdir(tmp_path / "work")
    web = wd.load("verify")["web_flow"]
    assert web["username"] == ADMIN_USERNAME and web["used_client_secret"]
    secret = Path(wd.load("connected_app")["consumer_secret_file"]).read_text().strip()
    executed = (summary.run_dir / "04_verify.ipynb").read_text()
    assert "Web server flow" in executed and secret not in executed
    # the refresh token came back, was checked once and revoked; the card says what the policy makes of it
    assert web["refresh_token_issued"] and web["refresh_token_policy"] == "infinite"
    assert web["refresh_token_outcome"] == "valid until revoked"
    assert web["refresh_check"] == "a refresh worked; then revoked"
    assert "Refresh token" in executed and "valid until revoked (policy infinite)" in executed
    assert "5Aep861" not in executed and "5Aep861" not in json.dumps(wd.load("verify"))


@pytest.mark.parametrize(("policy", "outcome", "check"), [
    ("specific_lifetime:3:HOURS", "expires after 3 hours", "a refresh worked; then revoked"),
    ("specific_inactivity:1:DAYS", "expires after 1 day without use", "a refresh worked; then revoked"),
    ("zero", "refused at once (zero)", "a refresh was refused: invalid_grant: expired access/refresh token"),
])
def test_phase_4_says_what_the_apps_refresh_token_policy_makes_of_the_token(setup, policy, outcome, check):
    wd, session, app = setup
    spec = {"app_name": app["full_name"], "workdir": wd.root}
    ensure_access(session, build_access_spec(refresh_token_policy=policy, **spec), workdir=wd.root)
    try:
        handoff = verify_web_flow(session, verify_setup(session, workdir=wd.root), workdir=wd.root)
    finally:
        ensure_access(session, build_access_spec(**spec), workdir=wd.root)
    web = handoff.web_flow
    assert (web["refresh_token_policy"], web["refresh_token_outcome"], web["refresh_check"]) == (policy, outcome,
                                                                                                check)
    assert dict(handoff.rows())["Refresh token"] == f"{outcome} (policy {policy}); {check}"
    oauth = [(c.operation, c.status) for c in session.local_org.call_log() if c.operation.startswith("oauth.")]
    refreshed = [("oauth.token", 400)] if policy == "zero" else [("oauth.token", 200), ("oauth.revoke", 200)]
    assert oauth[-len(refreshed):] == refreshed


def test_an_app_without_the_refresh_token_scope_gets_none_and_the_card_says_why(setup):
    wd, session, _app = setup
    key, callback = _extra_app(session, wd.load("certificate")["cert_path"], "No_Refresh_Web", isAdminApproved=False,
                               isConsumerSecretOptional=True)  # scopes Api, Web
    result = _flow(session, key, callback)
    assert not result.refresh_token_issued and result.refresh_check == ""
    assert result.refresh_summary().startswith("none came back: the app needs the refresh_token scope")


def test_a_caller_asking_for_the_refresh_token_gets_it_live_and_nothing_else_does(setup):
    _wd, session, app = setup
    handed: list[str] = []
    result = _flow(session, app["consumer_key"], app["callback_url"],
                   consumer_secret_file=app["consumer_secret_file"], refresh_token_to=handed.append)
    assert result.refresh_token_issued and result.refresh_check == "" and len(handed) == 1
    assert handed[0] not in json.dumps(result.as_dict()) and handed[0] not in repr(result)
    secret = Path(app["consumer_secret_file"]).read_text().strip()
    renewed = requests.post(f"{session.login_url}/services/oauth2/token", timeout=10, verify=session.verify, data={
        "grant_type": "refresh_token", "refresh_token": handed[0], "client_id": app["consumer_key"],
        "client_secret": secret})
    assert renewed.status_code == 200, renewed.text


@pytest.mark.parametrize(("policy", "text"), [
    ("infinite", "valid until revoked"), ("zero", "refused at once (zero)"),
    ("specific_lifetime:3:HOURS", "expires after 3 hours"), ("specific_lifetime:1:MONTHS", "expires after 1 month"),
    ("specific_inactivity:7:DAYS", "expires after 7 days without use")])
def test_refresh_policies_read_as_a_person_would_say_them(policy, text):
    assert describe_refresh_policy(policy) == text


# ------------------------------------------------------------------------------ runbook export-ci --format sfdx-url

SFDX_AUTH_URL = re.compile(r"^force://([a-zA-Z0-9._-]+={0,2}):([a-zA-Z0-9._-]*={0,2}):([a-zA-Z0-9._-]+={0,2})"
                           r"@([a-zA-Z0-9:._-]+)$")  # sfdx-core AuthInfo.parseSfdxAuthUrl's pattern [V]


def test_export_ci_sfdx_url_writes_a_working_auth_url_0600_and_shows_none_of_it(setup, tmp_path):
    wd, session, app = setup
    verify_setup(session, workdir=wd.root)
    out = tmp_path / "auth-url.txt"
    result = CliRunner().invoke(main, ["export-ci", "--workdir", str(wd.root), "--format", "sfdx-url", "-o", str(out)])
    assert result.exit_code == 0, result.output
    try:
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        client_id, secret, refresh_token, host = SFDX_AUTH_URL.match(out.read_text().strip()).groups()
    finally:
        out.unlink(missing_ok=True)  # it holds a live refresh token: the suite's secret scan would rightly flag it
    assert (client_id, f"https://{host}") == (app["consumer_key"], session.instance_url)
    assert secret == Path(app["consumer_secret_file"]).read_text().strip()
    assert refresh_token not in result.output and secret not in result.output
    assert f"sf org login sfdx-url --sfdx-url-file {out}" in result.output
    renewed = requests.post(f"https://{host}/services/oauth2/token", timeout=10, verify=session.verify, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, "client_secret": secret})
    assert renewed.status_code == 200, renewed.text  # the export left it live, as it should


def test_export_ci_sfdx_url_needs_a_web_flow_app_and_a_policy_that_keeps_the_token(setup, tmp_path):
    wd, session, app = setup
    verify_setup(session, workdir=wd.root)
    jwt_only = open_workdir(tmp_path / "jwt-only")
    jwt_only.save("connected_app", {**app, "flows": ["jwt"]})
    jwt_only.save("verify", wd.load("verify"))
    with pytest.raises(InputError) as caught:
        export_sfdx_auth_url(jwt_only.root)
    assert "add \"web\" to phase 2's flows" in str(caught.value)
    zero = open_workdir(tmp_path / "zero")
    zero.save("connected_app", app)
    zero.save("verify", {**wd.load("verify"), "web_flow": {"refresh_token_policy": "zero"}})
    with pytest.raises(InputError, match="refresh token policy is zero"):
        export_sfdx_auth_url(zero.root)
