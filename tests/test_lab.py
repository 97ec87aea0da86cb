"""`make lab` (python -m runbook.lab): JupyterLab with the local org already running and in its environment."""

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
        proc = subprocess.Popen([sys.executable, "-m", "runbook.lab", "--no-browser", "--port", str(port),
                                 "--state", str(state), "--notebooks", str(tmp_path)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
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
        requests.get(f"{org['url']}/services/data", verify=org["ca_bundle"], timeout=5).raise_for_status()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
    assert not (state / "org.json").exists()  # the org stopped after Lab
    log.unlink()  # it holds Lab's login token: the suite's secret scan would rightly flag it
