"""The whole runbook through papermill against the local org, as `runbook run` does it."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import user_id

from runbook.localorg import ADMIN_USERNAME
from runbook.phases.certificate import ensure_certificate
from runbook.run.batch import run_runbook
from runbook.salesforce import connect_local
from runbook.salesforce.rest import query


def _record(workdir: Path, phase: str) -> dict:
    return json.loads((workdir / "phases" / f"{phase}.json").read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    summary = run_runbook(workdir=root / "work", runs_dir=root / "runs", progress=lambda _m: None)
    return summary


def test_full_run_ends_in_a_jwt_login_as_the_admin(first_run):
    assert first_run.ok, first_run.lines()
    assert [p.phase for p in first_run.phases] == ["certificate", "connected_app", "access", "verify"]
    verify = _record(first_run.workdir, "verify")
    assert verify["logins"][0]["username"] == ADMIN_USERNAME
    assert verify["logins"][0]["user_id"] == user_id(connect_local(first_run.workdir / "localorg"), ADMIN_USERNAME)
    assert verify["consumer_key"] == _record(first_run.workdir, "connected_app")["consumer_key"]
    assert verify["sf_command"].startswith("sf org login jwt --client-id ")
    assert all(p.output.is_file() for p in first_run.phases)
    text = "\n".join(first_run.lines())
    assert f"JWT login as:   {ADMIN_USERNAME}" in text


def test_key_file_is_written_with_mode_0600(first_run):
    key = Path(_record(first_run.workdir, "certificate")["key_path"])
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_second_run_changes_nothing(first_run):
    org = _local_org(first_run.workdir)
    key = Path(_record(first_run.workdir, "certificate")["key_path"])
    key_before = key.read_bytes()
    consumer_key = _record(first_run.workdir, "connected_app")["consumer_key"]
    calls_before = len(org.call_log())

    again = run_runbook(workdir=first_run.workdir, runs_dir=first_run.run_dir.parent, progress=lambda _m: None)

    assert again.ok, again.lines()
    new_calls = org.call_log()[calls_before:]
    assert [c.operation for c in new_calls if c.is_write] == []
    assert key.read_bytes() == key_before
    assert _record(first_run.workdir, "connected_app")["consumer_key"] == consumer_key
    assert _record(first_run.workdir, "connected_app")["action"] == "none"
    session = connect_local(org.state_dir)
    apps = query(session, "SELECT Id FROM ConnectedApplication WHERE Name = 'Runbook CI'")
    assert len(apps) == 1


def test_user_outside_the_preauthorized_profiles_is_refused(first_run):
    result = run_runbook(workdir=first_run.workdir, runs_dir=first_run.run_dir.parent, phases=["verify"],
                         params={"username": "dev@local.devhub"}, progress=lambda _m: None)
    failed = result.phases[-1]
    assert failed.status == "failed"
    assert "invalid_app_access: user is not admin approved to access this app" in failed.error
    assert "pre-authorized" in failed.error


def test_jwt_signed_by_another_key_is_refused_with_both_fingerprints(first_run, tmp_path):
    other = ensure_certificate(workdir=tmp_path / "other")
    result = run_runbook(workdir=first_run.workdir, runs_dir=first_run.run_dir.parent, phases=["verify"],
                         params={"key_path": other.key_path}, progress=lambda _m: None)
    failed = result.phases[-1]
    assert failed.status == "failed"
    assert "invalid_grant: invalid assertion" in failed.error
    assert _record(first_run.workdir, "certificate")["sha256_fingerprint"] in failed.error


def test_executed_notebooks_hold_no_secret(first_run):
    org = _local_org(first_run.workdir)
    password = json.loads((org.state_dir / "admin-credentials.json").read_text())["password"]
    key_pem = Path(_record(first_run.workdir, "certificate")["key_path"]).read_text()
    key_body = key_pem.splitlines()[1]
    for notebook in first_run.run_dir.glob("*.ipynb"):
        text = notebook.read_text()
        assert password not in text
        assert key_body not in text
        assert "PRIVATE KEY-----" not in text


def test_batch_notebooks_name_the_forms_and_carry_no_widget_state(first_run):
    for phase in first_run.phases:
        notebook = json.loads(phase.output.read_text())
        outputs = [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell["outputs"]]
        assert {"text/plain": [f"[{phase.phase} form: open this notebook in JupyterLab to use it]"]} in \
            [o.get("data") for o in outputs]
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
        assert not notebook["metadata"].get("widgets")


def test_a_run_is_quiet_and_leaves_no_kernel_behind(first_run, capfd):
    from jupyter_client.channels import HBChannel

    capfd.readouterr()
    again = run_runbook(workdir=first_run.workdir, runs_dir=first_run.run_dir.parent, phases=["certificate"],
                        progress=lambda _m: None)

    assert again.ok, again.lines()
    assert "running over TCP without encryption" not in capfd.readouterr().err  # the kernel uses Unix sockets
    assert not [t for t in threading.enumerate() if isinstance(t, HBChannel)]  # no client left connected


def test_a_kernel_that_dies_mid_phase_fails_that_phase_instead_of_hanging(first_run):
    import psutil

    def kill_the_kernel_soon(message: str) -> None:
        if message.startswith("[connected_app] running"):  # the kernel is up: phase 1 ran in it
            kernels = [p for p in psutil.Process().children() if "ipykernel_launcher" in " ".join(p.cmdline())]
            threading.Timer(0.05, lambda: [k.kill() for k in kernels]).start()

    started = time.monotonic()
    result = run_runbook(workdir=first_run.workdir, runs_dir=first_run.run_dir.parent,
                         phases=["certificate", "connected_app", "access"], progress=kill_the_kernel_soon)

    assert [(p.phase, p.status, p.error) for p in result.phases] == [
        ("certificate", "done", ""), ("connected_app", "failed", "the kernel died while running the notebook")]
    assert time.monotonic() - started < 15


def test_a_run_uses_the_local_org_that_runbook_org_serve_serves(tmp_path):
    import subprocess
    import sys

    from runbook.errors import InputError
    from runbook.localorg import LocalOrg

    state = tmp_path / "work" / "localorg"
    server = subprocess.Popen([sys.executable, "-m", "runbook", "org", "serve", "--state", str(state), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("Local org:  https://127.0.0.1:")
        result = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", phases=["certificate",
                             "connected_app"], params={"callback_port": "auto"}, progress=lambda _m: None)
        assert result.ok, result.lines()
        assert "mdapi.createMetadata" in [c.operation for c in LocalOrg(state).call_log()]  # that org's log
        with pytest.raises(InputError, match="stop the process serving it first"):
            run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", fresh_org=True,
                        progress=lambda _m: None)
        assert (state / "org.sqlite3").is_file()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_secret_looking_parameters_are_refused(tmp_path):
    from runbook.errors import InputError

    with pytest.raises(InputError, match="never pass secrets"):
        run_runbook(workdir=tmp_path, runs_dir=tmp_path / "runs", params={"sf_password": "x"})
    assert not (tmp_path / "runs").exists()


def _local_org(workdir: Path):
    from runbook.salesforce import start_local_org

    return start_local_org(workdir / "localorg")
