"""`runbook export-ci`: the CI variables in a mode-0600 file, never printed, and only phase 1's key."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import shutil
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_phases
from cryptography.hazmat.primitives import serialization

from runbook.cli import main
from runbook.errors import InputError
from runbook.localorg import ADMIN_USERNAME
from runbook.phases.certificate import ensure_certificate
from runbook.phases.jwt_bearer import jwt_login
from runbook.phases.verify import verify_setup
from runbook.salesforce import connect_local, local_state_dir
from runbook.work.workdir import open_workdir


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    return run_phases(tmp_path_factory.mktemp("export"))


def _export(workdir: Path, fmt: str, out: Path, *extra: str):
    result = CliRunner().invoke(main, ["export-ci", "--workdir", str(workdir), "--format", fmt, "-o", str(out),
                                       *extra])
    return result


@pytest.mark.parametrize("fmt", ["env", "github", "gitlab"])
def test_export_writes_the_ci_variables_with_mode_0600_and_prints_none(verified, tmp_path, fmt):
    out = tmp_path / f"ci.{fmt}"
    result = _export(verified, fmt, out)
    try:
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        wd = open_workdir(verified)
        key_pem = Path(wd.load("certificate")["key_path"]).read_bytes()
        verify = wd.load("verify")
        text = out.read_text()
        if fmt == "gitlab":
            rows = json.loads(text)
            values = {row["key"]: row["value"] for row in rows}
            assert all(row["protected"] for row in rows)
            assert [row["key"] for row in rows if row["masked"]] == ["SF_JWT_KEY_BASE64"]
        else:
            pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
            values = {name: shlex.split(value)[0] for name, value in pairs}
        assert values["SF_CONSUMER_KEY"] == verify["consumer_key"]
        assert values["SF_USERNAME"] == ADMIN_USERNAME
        assert values["SF_INSTANCE_URL"] == verify["login_url"]
        assert base64.b64decode(values["SF_JWT_KEY_BASE64"]) == key_pem
        assert values["SF_JWT_KEY_BASE64"] not in result.output
        assert verify["consumer_key"] not in result.output
        assert "mode 0600" in result.output and str(out) in result.output
    finally:
        out.unlink(missing_ok=True)  # it holds the key: the suite's secret scan would rightly flag it


def test_export_refuses_a_user_phase_4_did_not_verify(verified, tmp_path):
    result = _export(verified, "env", tmp_path / "ci.env", "--username", "dev@local.devhub")
    assert result.exit_code == 1
    assert "username='dev@local.devhub' is not valid" in result.output and "verify this user first" in result.output
    assert not (tmp_path / "ci.env").exists()


def test_export_before_phase_4_is_refused(tmp_path):
    result = _export(tmp_path, "github", tmp_path / "ci.env")
    assert result.exit_code == 1 and "run phase 4 (04_verify) first" in result.output


def _tampered(verified: Path, tmp_path: Path, phase: str, **changes) -> Path:
    """A copy of the verified work folder's records with ``changes`` made to one of them."""
    work = tmp_path / "work"
    shutil.copytree(verified / "phases", work / "phases")
    record = json.loads((work / "phases" / f"{phase}.json").read_text())
    (work / "phases" / f"{phase}.json").write_text(json.dumps({**record, **changes}))
    return work


def test_export_refuses_a_record_naming_a_file_that_is_not_a_private_key(verified, tmp_path):
    hostname = tmp_path / "hostname"
    hostname.write_text("build-host-7\n")
    work = _tampered(verified, tmp_path, "verify", key_path=str(hostname))
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1
    assert (f"key_path='{hostname}' is not valid: the phase 1 record names this file as the private key, but it "
            "is not one. Fix: rerun phase 1 (01_certificate)") in result.output
    assert not (tmp_path / "ci.env").exists()


def test_export_refuses_a_device_without_reading_it(verified, tmp_path):
    work = _tampered(verified, tmp_path, "verify", key_path="/dev/zero")
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1 and "'/dev/zero' is not valid" in result.output
    assert "not a regular file" in result.output


def test_export_refuses_a_private_key_that_does_not_match_the_certificate(verified, tmp_path):
    other = ensure_certificate(workdir=tmp_path / "other")
    work = _tampered(verified, tmp_path, "verify", key_path=other.key_path)
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1
    cert_path = open_workdir(verified).load("certificate")["cert_path"]
    assert f"this key does not match the certificate on record, {cert_path}" in result.output
    assert not (tmp_path / "ci.env").exists()


def test_export_refuses_a_certificate_the_app_does_not_trust(verified, tmp_path):
    work = _tampered(verified, tmp_path, "connected_app", certificate_fingerprint="AB:" * 31 + "AB")
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1
    assert "trusts the certificate AB:AB" in result.output and "rerun phases 2 and 4" in result.output


# A stub gh/glab: records each call's argv and stdin (one JSON line each) in calls.jsonl beside it. `auth status`
# exits $STUB_AUTH_RC; `variable set` of a name in $STUB_EXISTING fails as GitLab answers for an existing variable;
# setting $STUB_FAIL fails and echoes the value it was sent, as a careless tool might.
CI_STUB = r"""
import json, os, sys
from pathlib import Path

argv, stdin = sys.argv[1:], sys.stdin.read()
with open(Path(__file__).with_name("calls.jsonl"), "a") as log:
    log.write(json.dumps({"tool": Path(sys.argv[0]).name, "argv": argv, "stdin": stdin}) + "\n")
if argv[:2] == ["auth", "status"]:
    sys.exit(int(os.environ.get("STUB_AUTH_RC", "0")))
if argv[1] == "set" and argv[2] in os.environ.get("STUB_EXISTING", "").split(","):
    print(f"POST /api/v4/projects/1/variables: 400 {{message: {{key: [({argv[2]}) has already been taken]}}}}",
          file=sys.stderr)
    sys.exit(1)
if argv[2] == os.environ.get("STUB_FAIL"):
    print(f"HTTP 403: Resource not accessible by integration (value {stdin})", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def ci_stub(tmp_path, monkeypatch):
    """Install a stub `gh` or `glab` first on PATH; yields a function reading its calls. The calls file holds the
    values it was sent (the key among them), so it is removed after the test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def install(command: str) -> Path:
        stub = bin_dir / command
        stub.write_text(f"#!{sys.executable}\n{CI_STUB}")
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return bin_dir / "calls.jsonl"

    yield install
    (bin_dir / "calls.jsonl").unlink(missing_ok=True)


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _push(workdir: Path, *args: str):
    return CliRunner().invoke(main, ["export-ci", "--workdir", str(workdir), *args])


def _expected(workdir: Path) -> dict[str, str]:
    wd = open_workdir(workdir)
    verify = wd.load("verify")
    key_pem = Path(wd.load("certificate")["key_path"]).read_bytes()
    return {"SF_CONSUMER_KEY": verify["consumer_key"], "SF_USERNAME": ADMIN_USERNAME,
            "SF_INSTANCE_URL": verify["login_url"], "SF_JWT_KEY_BASE64": base64.b64encode(key_pem).decode()}


def _assert_values_only_on_stdin(calls: list[dict], output: str, values: dict[str, str]) -> None:
    for value in values.values():
        assert all(value not in arg for call in calls for arg in call["argv"])
        assert value not in output


def test_push_github_sets_each_variable_with_its_value_on_stdin_never_in_argv(verified, ci_stub):
    log = ci_stub("gh")
    result = _push(verified, "--push", "github", "--repo", "acme/app", "--env", "ci")
    assert result.exit_code == 0, result.output
    calls = _calls(log)
    values = _expected(verified)
    assert [c["argv"] for c in calls] == [["auth", "status"], *(
        ["secret", "set", name, "--repo", "acme/app", "--env", "ci"] for name in values)]
    assert {c["argv"][2]: c["stdin"] for c in calls[1:]} == values
    _assert_values_only_on_stdin(calls, result.output, values)
    assert result.output == ("set SF_CONSUMER_KEY, SF_USERNAME, SF_INSTANCE_URL, SF_JWT_KEY_BASE64 as GitHub Actions "
                             "secrets with gh (repo acme/app, environment ci); values went on stdin, none printed or "
                             "written to a file\n")
    assert not (verified / "ci").exists()


def test_push_gitlab_protects_every_variable_and_masks_the_key(verified, ci_stub):
    log = ci_stub("glab")
    result = _push(verified, "--push", "gitlab", "--repo", "group/sub/app", "--env", "production")
    assert result.exit_code == 0, result.output
    calls = _calls(log)
    values = _expected(verified)
    assert [c["argv"] for c in calls] == [["auth", "status"], *(
        ["variable", "set", name, "--repo", "group/sub/app", "--scope", "production", "--protected", "--raw",
         *(["--masked"] if name == "SF_JWT_KEY_BASE64" else [])] for name in values)]
    assert {c["argv"][2]: c["stdin"] for c in calls[1:]} == values
    _assert_values_only_on_stdin(calls, result.output, values)
    assert "GitLab CI/CD variables (protected; SF_JWT_KEY_BASE64 masked) with glab (repo group/sub/app" in result.output


def test_push_gitlab_updates_a_variable_that_already_exists(verified, ci_stub, monkeypatch):
    log = ci_stub("glab")
    monkeypatch.setenv("STUB_EXISTING", "SF_JWT_KEY_BASE64")
    result = _push(verified, "--push", "gitlab")
    assert result.exit_code == 0, result.output
    calls = _calls(log)
    assert [c["argv"][:3] for c in calls[-2:]] == [["variable", "set", "SF_JWT_KEY_BASE64"],
                                                   ["variable", "update", "SF_JWT_KEY_BASE64"]]
    assert calls[-1]["argv"][3:] == ["--protected", "--raw", "--masked"]
    assert calls[-1]["stdin"] == _expected(verified)["SF_JWT_KEY_BASE64"]


@pytest.mark.parametrize(("target", "command", "install"), [("github", "gh", "https://cli.github.com"),
                                                             ("gitlab", "glab", "https://gitlab.com/gitlab-org/cli")])
def test_push_without_the_cli_on_path_names_the_tool_and_the_fix(verified, tmp_path, monkeypatch, target, command,
                                                                 install):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gh, no glab
    result = _push(verified, "--push", target)
    assert result.exit_code == 1
    assert (f"Could not set the CI variables with {command}: the `{command}` command is not on PATH. Fix: install "
            f"the {'GitHub' if command == 'gh' else 'GitLab'} CLI ({install}), run `{command} auth login`, then "
            "rerun") in result.output


@pytest.mark.parametrize(("target", "command"), [("github", "gh"), ("gitlab", "glab")])
def test_push_with_a_logged_out_cli_sends_nothing_and_says_how_to_log_in(verified, ci_stub, monkeypatch, target,
                                                                         command):
    log = ci_stub(command)
    monkeypatch.setenv("STUB_AUTH_RC", "1")
    result = _push(verified, "--push", target)
    assert result.exit_code == 1
    assert (f"`{command} auth status` says it is not logged in (exit 1). Fix: run `{command} auth login`, then "
            "rerun") in result.output
    assert [c["argv"] for c in _calls(log)] == [["auth", "status"]]


def test_push_failure_names_what_was_set_and_never_echoes_a_value(verified, ci_stub, monkeypatch):
    log = ci_stub("gh")
    monkeypatch.setenv("STUB_FAIL", "SF_JWT_KEY_BASE64")
    result = _push(verified, "--push", "github", "--repo", "acme/app")
    assert result.exit_code == 1
    assert ("`gh secret set SF_JWT_KEY_BASE64 --repo acme/app` failed (exit 1): HTTP 403: Resource not accessible by "
            "integration (value <hidden>)") in result.output
    assert "set so far: SF_CONSUMER_KEY, SF_USERNAME, SF_INSTANCE_URL" in result.output
    _assert_values_only_on_stdin(_calls(log), result.output, _expected(verified))


def test_push_strips_credentials_from_the_instance_url(verified, ci_stub):
    log = ci_stub("gh")
    result = _push(verified, "--push", "github", "--instance-url", "https://ci:Pw-4242x@acme.my.salesforce.com/")
    assert result.exit_code == 0, result.output
    assert {c["argv"][2]: c["stdin"] for c in _calls(log)[1:]}["SF_INSTANCE_URL"] == "https://acme.my.salesforce.com"


@pytest.mark.parametrize(("args", "message"), [
    (["--repo", "acme/app"], "--repo and --env say where --push sets the variables"),
    (["--env", "ci"], "--repo and --env say where --push sets the variables"),
    (["--push", "github", "-o", "ci.env"], "--push sets the variables in CI and writes no file"),
    (["--push", "gitlab", "--format", "gitlab"], "--push sets the variables in CI and writes no file"),
])
def test_push_options_that_contradict_each_other_are_refused(verified, ci_stub, args, message):
    log = ci_stub("gh")
    result = _push(verified, *args)
    assert result.exit_code == 2 and message in result.output
    assert _calls(log) == []


def test_phase_4_refuses_a_login_url_with_userinfo_and_never_shows_or_records_it(verified):
    session = connect_local(local_state_dir(verified))
    password = "Pw-" + secrets.token_urlsafe(9)
    typed = session.login_url.replace("https://", f"https://ci:{password}@")
    with pytest.raises(InputError) as refused:
        verify_setup(session, workdir=verified, login_url=typed, propagation_timeout=0)
    assert refused.value.field == "login_url" and "it holds credentials (user:password@, not shown)" in \
        str(refused.value)
    shown = str(refused.value) + json.dumps(open_workdir(verified).load("verify"))
    assert password not in shown and "ci:" not in shown


# ---------------------------------------------------------------- an encrypted key (passphrase_env)

PASSPHRASE_ENV = "RUNBOOK_TEST_EXPORT_PASSPHRASE"


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    """All four phases with a key phase 1 encrypted (the passphrase in the environment, named by passphrase_env)."""
    os.environ[PASSPHRASE_ENV] = "export " + secrets.token_urlsafe(12)
    try:
        yield run_phases(tmp_path_factory.mktemp("encrypted"), passphrase_env=PASSPHRASE_ENV)
    finally:
        os.environ.pop(PASSPHRASE_ENV, None)


def test_export_of_an_encrypted_key_without_the_passphrase_names_the_option(encrypted, tmp_path):
    result = _export(encrypted, "env", tmp_path / "ci.env")
    assert result.exit_code == 1
    assert "the key is encrypted, and sf org login jwt in CI reads only unencrypted keys" in result.output
    assert f"Fix: add --passphrase-env {PASSPHRASE_ENV} (the variable holding the key's passphrase" in result.output
    assert not (tmp_path / "ci.env").exists()


def test_export_with_passphrase_env_hands_ci_the_key_decrypted_and_it_logs_in(encrypted, tmp_path):
    out = tmp_path / "ci.env"
    result = _export(encrypted, "env", out, "--passphrase-env", PASSPHRASE_ENV)
    try:
        assert result.exit_code == 0, result.output
        values = {k: shlex.split(v)[0] for k, v in (line.split("=", 1) for line in out.read_text().splitlines())}
        key_file = tmp_path / "server.key"  # what CI does: echo "$SF_JWT_KEY_BASE64" | base64 -d > server.key
        key_file.write_bytes(base64.b64decode(values["SF_JWT_KEY_BASE64"]))
        key_file.chmod(0o600)
        serialization.load_pem_private_key(key_file.read_bytes(), password=None)  # unencrypted: no passphrase needed
        assert os.environ[PASSPHRASE_ENV] not in out.read_text() + result.output
        login, _token = jwt_login(consumer_key=values["SF_CONSUMER_KEY"], username=values["SF_USERNAME"],
                                  key_path=key_file, login_url=values["SF_INSTANCE_URL"])
        assert login.username == ADMIN_USERNAME
    finally:
        out.unlink(missing_ok=True)
        (tmp_path / "server.key").unlink(missing_ok=True)


def test_export_with_a_wrong_passphrase_is_refused_naming_the_variable(encrypted, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "not it")
    result = _export(encrypted, "env", tmp_path / "ci.env", "--passphrase-env", PASSPHRASE_ENV)
    assert result.exit_code == 1
    assert f"passphrase_env='{PASSPHRASE_ENV}' is not valid. Fix: the passphrase does not decrypt this key" in \
        result.output
