"""`make lab` (python -m runbook.ui.lab): JupyterLab with the local org already running and in its environment."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lab_environ(launcher_pid: int) -> dict[str, str]:
    """The environment of the JupyterLab process the launcher started (what every kernel inherits)."""
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    raw = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_lab_serves_the_notebooks_with_the_org_in_its_environment_and_stops_both(tmp_path):
    port, state = _free_port(), tmp_path / "org"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "runbook.ui.lab", "--no-browser", "--port", str(port),
                                 "--state", str(state), "--notebooks", str(tmp_path)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                status = requests.get(f"http://127.0.0.1:{port}/api/status", timeout=2).status_code
            time.sleep(0.2)
        assert status == 403, log.read_text()[-2000:]  # up, and it wants its token: make lab keeps Lab's auth
        org = json.loads((state / "org.json").read_text())
        assert log.read_text().startswith(f"Local org: {org['url']} (admin ")
        lab_env = _lab_environ(proc.pid)
        assert lab_env["RUNBOOK_LOCAL_ORG_STATE"] == str(state.resolve())
        assert lab_env["RUNBOOK_LOCAL_ORG_URL"] == org["url"]
        assert lab_env["REQUESTS_CA_BUNDLE"] == org["ca_bundle"]
        assert lab_env["RUNBOOK_PROJECT_DIR"] == str(tmp_path.resolve())  # the folder `make lab` ran in
        requests.get(f"{org['url']}/services/data", verify=org["ca_bundle"], timeout=5).raise_for_status()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=45)  # Lab gets LAB_STOP_GRACE (15 s) to stop, then the launcher kills it
        except subprocess.TimeoutExpired:
            proc.kill()  # leave no launcher behind, and say what hung
            raise AssertionError("the lab launcher did not stop within 45 s of SIGTERM") from None
    assert not (state / "org.json").exists()  # the org stopped after Lab
    log.unlink()  # it holds Lab's login token: the suite's secret scan would rightly flag it


def test_lab_and_cli_share_one_work_folder_and_local_org_by_default(tmp_path, monkeypatch):
    """`make lab`'s kernels (cwd: the notebooks' folder) and `make run` (cwd: the project) use the same work/."""
    from runbook.cli import main
    from runbook.phases import PHASES
    from runbook.phases.parameters import phase_parameters
    from runbook.salesforce import local_state_dir
    from runbook.ui.lab import DEFAULT_STATE
    from runbook.work.workdir import DEFAULT_WORKDIR, PROJECT_DIR_ENV, open_workdir

    run_option = next(p for p in main.commands["run"].params if p.name == "workdir")
    serve_option = next(p for p in main.commands["org"].commands["serve"].params if p.name == "state_dir")
    assert {phase_parameters(p)["workdir"].default for p in PHASES} == {run_option.default} == {DEFAULT_WORKDIR}
    assert Path(serve_option.default) == DEFAULT_STATE == Path(DEFAULT_WORKDIR) / "localorg"

    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where a Lab kernel runs
    monkeypatch.delenv("RUNBOOK_LOCAL_ORG_STATE", raising=False)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    assert open_workdir("work").root == (tmp_path / "work").resolve()
    assert local_state_dir("work") == (tmp_path / DEFAULT_STATE).resolve()
    assert open_workdir(tmp_path / "elsewhere").root == (tmp_path / "elsewhere").resolve()  # absolute: as given
    monkeypatch.delenv(PROJECT_DIR_ENV)
    assert open_workdir("work").root == (tmp_path / "notebooks" / "work").resolve()  # plain Jupyter: the cwd
