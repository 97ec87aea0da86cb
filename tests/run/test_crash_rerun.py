"""A `runbook run` killed between (or inside) phases, then rerun, ends in the same state as a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runbook.localorg import ADMIN_USERNAME
from runbook.run.batch import run_runbook
from runbook.salesforce import connect_local, start_local_org, stop_local_orgs
from runbook.salesforce.rest import query


def _kill_when(workdir: Path, runs: Path, marker: str) -> None:
    """Start `runbook run` in its own process group and SIGKILL it (and its kernel) at ``marker``."""
    proc = subprocess.Popen([sys.executable, "-m", "runbook", "run", "--workdir", str(workdir), "--runs-dir",
                             str(runs)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        for line in proc.stderr:
            if marker in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before {marker!r}"


@pytest.mark.parametrize("marker", ["[connected_app] running", "[access] running", "[verify] running"])
def test_rerun_after_a_kill_converges(tmp_path, marker):
    work, runs = tmp_path / "work", tmp_path / "runs"
    _kill_when(work, runs, marker)
    key = work / "keys" / "server.key"
    key_before = key.read_bytes()

    summary = run_runbook(workdir=work, runs_dir=runs, progress=lambda _m: None)

    assert summary.ok, summary.lines()
    assert key.read_bytes() == key_before
    verify = json.loads((work / "phases" / "verify.json").read_text())
    assert verify["logins"][0]["username"] == ADMIN_USERNAME
    session = connect_local(start_local_org(work / "localorg").state_dir)
    apps = query(session, "SELECT Id FROM ConnectedApplication")
    assert len(apps) == 1
    grants = query(session, "SELECT Parent.Profile.Name FROM SetupEntityAccess WHERE SetupEntityId = "
                            f"'{apps[0]['Id']}'")
    assert [g["Parent"]["Profile"]["Name"] for g in grants] == ["System Administrator"]
    consumer_key = verify["consumer_key"]
    stop_local_orgs()
    again = run_runbook(workdir=work, runs_dir=runs, progress=lambda _m: None)
    assert again.ok
    assert json.loads((work / "phases" / "verify.json").read_text())["consumer_key"] == consumer_key
