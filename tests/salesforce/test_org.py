"""Each way of connecting to an org, against the local org: the Salesforce CLI (a stub `sf` printing the
real JSON shape), an access token, username/password, and the local org itself."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

import runbook.salesforce.connector
import runbook.salesforce.session
from runbook.errors import InputError, OrgConnectionError
from runbook.salesforce import connect, connect_local, start_local_org
from runbook.salesforce.rest import query

SF_STUB = """#!{python}
import json, os, pathlib, sys
here = pathlib.Path(__file__).parent
args = [a for a in sys.argv[1:]]
(here / "calls.log").open("a").write(" ".join(args) + "\\n")
answers = json.loads((here / "answers.json").read_text())
command = "auth" if args[:2] == ["org", "auth"] else "display"
queue = answers.get(command) or [{{"status": 1, "name": "CommandNotFound", "message": "command not found"}}]
answer = queue.pop(0) if len(queue) > 1 else queue[0]
(here / "answers.json").write_text(json.dumps(answers))
text = json.dumps(answer, indent=2)
# like sf 2.150: colours even --json output when a kernel's FORCE_COLOR / CLICOLOR_FORCE ask, unless FORCE_COLOR=0
force = os.environ.get("FORCE_COLOR")
if force != "0" and (force or os.environ.get("CLICOLOR_FORCE")):
    text = "\\x1b[1m" + text.replace(":", "\\x1b[33m:\\x1b[39m") + "\\x1b[22m"
print(text)
sys.exit(answer.get("exitCode", 0))
"""
REDACTED = "[REDACTED] Use 'sf org auth show-access-token' to view"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    return start_local_org(tmp_path_factory.mktemp("connect") / "localorg")


@pytest.fixture(autouse=True)
def _no_cached_sessions(monkeypatch):
    monkeypatch.setattr(runbook.salesforce.connector.process_connector(), "_sessions", {})


@pytest.fixture
def admin(org):
    return json.loads((org.state_dir / "admin-credentials.json").read_text())


def _display_ok(org, token: str, alias: str = "my-devhub") -> dict:
    """What `sf org display --target-org ALIAS --json` prints for a connected org: sf 2.x before 2.146 shows the
    token; 2.146+ shows ``REDACTED`` in its place (real-orgs-2026.md §1)."""
    return {"status": 0, "result": {
        "id": org.org_id, "apiVersion": "62.0", "accessToken": token, "instanceUrl": org.url,
        "username": org.admin_username, "clientId": "PlatformCLI", "connectedStatus": "Connected",
        "alias": alias}, "warnings": ["This command will expose sensitive information that allows for subsequent "
                                      "activity using your current authenticated session."]}


def _redacted_display(org, alias: str = "my-devhub") -> dict:
    answer = _display_ok(org, REDACTED, alias)
    answer["warnings"] = ["Secrets are now hidden from 'sf org display' command output. Use the 'sf org auth' "
                          "commands instead."]
    return answer


def _shown_token(token: str) -> dict:
    """What `sf org auth show-access-token --target-org ALIAS --json` prints (CLI 2.146+)."""
    return {"status": 0, "result": {"accessToken": token}, "warnings": []}


@pytest.fixture
def install_sf(tmp_path, monkeypatch):
    """A stub `sf` first on PATH, answering from a list; its answers (tokens) are removed afterwards."""
    yield lambda answers: _install_sf(tmp_path, monkeypatch, answers)
    (tmp_path / "bin" / "answers.json").unlink(missing_ok=True)


def _install_sf(tmp_path: Path, monkeypatch, answers: dict[str, list[dict]]) -> Path:
    """``answers``: per command ("display": `sf org display`, "auth": `sf org auth …`), the answers in turn."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "sf"
    stub.write_text(SF_STUB.format(python=sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    (bin_dir / "answers.json").write_text(json.dumps(answers))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_cli_alias_uses_the_stored_auth_of_sf_org_display(org, tmp_path, install_sf):
    token = connect_local(org.state_dir).access_token
    bin_dir = install_sf({"display": [_display_ok(org, token)]})

    session = connect("my-devhub", workdir=tmp_path)

    assert session.instance_url == org.url and session.username == org.admin_username
    assert "Salesforce CLI" in session.method
    assert query(session, "SELECT Id FROM Organization")
    assert (bin_dir / "calls.log").read_text().splitlines() == ["org display --target-org my-devhub --json"]


def test_cli_token_is_refreshed_by_asking_sf_again_when_it_expires(org, tmp_path, install_sf):
    fresh = connect_local(org.state_dir).access_token
    bin_dir = install_sf({"display": [_display_ok(org, "00Dstale!expired"), _display_ok(org, fresh)]})

    session = connect("my-devhub", workdir=tmp_path)
    assert query(session, "SELECT Id FROM Organization")

    assert len((bin_dir / "calls.log").read_text().splitlines()) == 2
    assert session.access_token == fresh


def test_cli_with_a_redacted_token_takes_it_from_sf_org_auth_show_access_token(org, tmp_path, install_sf):
    token = connect_local(org.state_dir).access_token
    bin_dir = install_sf({"display": [_redacted_display(org)], "auth": [_shown_token(token)]})

    session = connect("my-devhub", workdir=tmp_path)

    assert session.access_token == token and session.instance_url == org.url
    assert query(session, "SELECT Id FROM Organization")
    assert (bin_dir / "calls.log").read_text().splitlines() == [
        "org display --target-org my-devhub --json", "org auth show-access-token --target-org my-devhub --json"]


def test_cli_redacted_token_is_refreshed_through_show_access_token_when_it_expires(org, tmp_path, install_sf):
    fresh = connect_local(org.state_dir).access_token
    bin_dir = install_sf({"display": [_redacted_display(org)],
                          "auth": [_shown_token("00Dstale!expired"), _shown_token(fresh)]})

    session = connect("my-devhub", workdir=tmp_path)
    assert query(session, "SELECT Id FROM Organization")

    calls = (bin_dir / "calls.log").read_text().splitlines()
    assert [c.split(" --")[0] for c in calls] == ["org display", "org auth show-access-token"] * 2
    assert session.access_token == fresh


def test_cli_whose_show_access_token_fails_names_the_command_and_never_a_placeholder(org, tmp_path, install_sf):
    install_sf({"display": [_redacted_display(org)],
                "auth": [{"status": 1, "name": "NoAuthFoundError", "message": "No auth found for my-devhub."}]})

    with pytest.raises(OrgConnectionError) as caught:
        connect("my-devhub", workdir=tmp_path)

    assert "No auth found for my-devhub." in str(caught.value) and "REDACTED" not in str(caught.value)


def test_runbook_sf_cli_names_the_cli_to_run(org, tmp_path, install_sf, monkeypatch):
    token = connect_local(org.state_dir).access_token
    bin_dir = install_sf({"display": [_redacted_display(org)], "auth": [_shown_token(token)]})
    (bin_dir / "sf").rename(bin_dir / "sf-2.150")
    monkeypatch.setenv("RUNBOOK_SF_CLI", str(bin_dir / "sf-2.150"))

    assert connect("my-devhub", workdir=tmp_path).access_token == token


def test_cli_without_stored_auth_says_the_method_and_how_to_log_in(tmp_path, install_sf):
    install_sf({"display": [{
        "code": 1, "context": "OrgDisplay", "commandName": "OrgDisplay", "exitCode": 1, "status": 1,
        "message": "No authorization information found for nope.", "name": "NamedOrgNotFoundError",
        "stack": "NamedOrgNotFoundError: ...", "warnings": []}]})

    with pytest.raises(OrgConnectionError) as caught:
        connect("nope", workdir=tmp_path)

    text = str(caught.value)
    assert "the Salesforce CLI's stored auth for 'nope'" in text
    assert "No authorization information found for nope." in text
    assert "sf org login web --alias nope" in text


def test_cli_missing_from_path_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OrgConnectionError, match="the `sf` command is not on PATH"):
        connect("my-devhub", workdir=tmp_path)


def test_env_token_and_instance_url(org, tmp_path, monkeypatch):
    token = connect_local(org.state_dir).access_token
    monkeypatch.setenv("SF_ACCESS_TOKEN", token)
    monkeypatch.setenv("SF_INSTANCE_URL", org.url)

    session = connect("env", workdir=tmp_path)

    assert query(session, "SELECT Id FROM Organization")
    assert session.method == "an access token from $SF_ACCESS_TOKEN and $SF_INSTANCE_URL"


def test_env_variable_names_are_configurable(org, tmp_path, monkeypatch):
    monkeypatch.setenv("PROD_TOKEN", connect_local(org.state_dir).access_token)
    monkeypatch.setenv("PROD_URL", org.url)

    session = connect("env:PROD_TOKEN,PROD_URL", workdir=tmp_path)

    assert query(session, "SELECT Id FROM Organization")
    assert "$PROD_TOKEN" in session.method


def test_env_with_a_missing_variable_names_it_and_never_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("SF_ACCESS_TOKEN", "00Dsecret!value")
    monkeypatch.delenv("SF_INSTANCE_URL", raising=False)

    with pytest.raises(OrgConnectionError) as caught:
        connect("env", workdir=tmp_path)

    assert "$SF_INSTANCE_URL not set" in str(caught.value)
    assert "00Dsecret" not in str(caught.value)


def test_password_login_by_soap(org, admin, tmp_path, monkeypatch):
    monkeypatch.setenv("SF_USERNAME", admin["username"])
    monkeypatch.setenv("SF_PASSWORD", admin["password"])
    monkeypatch.setenv("SF_LOGIN_URL", org.url)

    session = connect("password", workdir=tmp_path)

    assert query(session, "SELECT Id FROM Organization")
    assert session.username == admin["username"] and "SOAP login" in session.method


def test_password_variable_names_are_configurable(org, admin, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_USER", admin["username"])
    monkeypatch.setenv("HUB_PASS", admin["password"])

    session = connect("password:HUB_USER,HUB_PASS", workdir=tmp_path, login_url=org.url)

    assert query(session, "SELECT Id FROM Organization")


def test_refused_password_login_never_echoes_the_password(org, tmp_path, monkeypatch):
    monkeypatch.setenv("SF_USERNAME", "admin@local.devhub")
    monkeypatch.setenv("SF_PASSWORD", "Wrong-Passw0rd-xyz")

    with pytest.raises(OrgConnectionError) as caught:
        connect("password", workdir=tmp_path, login_url=org.url)

    text = str(caught.value)
    assert "SOAP login as admin@local.devhub was refused" in text and "$SF_PASSWORD" in text
    assert "Wrong-Passw0rd-xyz" not in text


def test_password_login_to_salesforce_warns_that_soap_login_is_retired(monkeypatch, tmp_path):
    monkeypatch.setenv("SF_USERNAME", "someone@example.com")
    monkeypatch.setenv("SF_PASSWORD", "x")
    monkeypatch.setattr(runbook.salesforce.session, "soap_login", lambda *a, **k: "logged in")
    with pytest.warns(FutureWarning, match="retires SOAP login"):
        runbook.salesforce.session.connect_password("66.0", "https://login.salesforce.com")


def test_local_org_by_default(tmp_path):
    session = connect(workdir=tmp_path)
    assert session.is_local and session.local_state == (tmp_path / "localorg").resolve()
    assert query(session, "SELECT Id FROM Organization")


def test_bad_api_version_and_org_spec_are_refused(tmp_path):
    with pytest.raises(InputError, match="api_version"):
        connect("local", workdir=tmp_path, api_version="v62")
    with pytest.raises(InputError, match="org"):
        connect("env:ONLY_ONE", workdir=tmp_path)


def test_runbook_run_through_a_cli_alias_with_a_redacted_token_runs_all_four_phases(org, tmp_path, install_sf,
                                                                                     monkeypatch):
    """The README's first real-org path, through papermill: the kernel runs the same `sf` as this process."""
    from conftest import free_callback_port

    # a real org's certificate is publicly trusted; the local org standing in for one needs its CA named, as a
    # user behind a TLS-inspecting proxy would name theirs (the kernel inherits this process's environment)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_bundle))
    from runbook.run.batch import run_runbook

    token = connect_local(org.state_dir).access_token
    bin_dir = install_sf({"display": [_redacted_display(org)], "auth": [_shown_token(token)]})

    summary = run_runbook(org="my-devhub", workdir=tmp_path / "work", runs_dir=tmp_path / "runs",
                          params={"callback_port": free_callback_port(), "app_name": "Alias_Run"},
                          progress=lambda _m: None)

    assert summary.ok, summary.lines()
    assert f"JWT login as:   {org.admin_username}" in "\n".join(summary.lines())
    assert "org auth show-access-token --target-org my-devhub --json" in (bin_dir / "calls.log").read_text()
    executed = "".join(p.read_text() for p in (tmp_path / "runs").rglob("*.ipynb"))
    assert token not in executed and token.split("!")[-1] not in executed
