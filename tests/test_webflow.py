"""The web server flow with PKCE, end to end against the local org's authorize page and token endpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
from functools import partial
from pathlib import Path

import pytest
import requests
from conftest import free_callback_port, run_phases, user_id

from runbook.batch import run_runbook
from runbook.certificate import certificate_pem
from runbook.errors import InputError, LoginError
from runbook.files import write_atomic
from runbook.localorg import ADMIN_USERNAME
from runbook.metadata import create
from runbook.org import connect
from runbook.verify import jwt_login
from runbook.webflow import (
    CallbackServer,
    _exchange,
    authorize_url,
    follow_redirects,
    login_form,
    pkce_pair,
    run_web_flow,
)
from runbook.workdir import open_workdir


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
            "login_url": session.login_url, "http": requests.Session()}
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
