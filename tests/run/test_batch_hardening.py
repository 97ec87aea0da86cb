"""`runbook run` hardening (issue 17, rows 5 and 8): private run folders and notebooks whatever the umask, and
one run at a time on a work folder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_callback_port

from runbook.run.batch import run_runbook
from runbook.work.workdir import WorkdirBusy


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _phase_1(tmp_path: Path):
    return run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", phases=["certificate"],
                       params={"callback_port": free_callback_port()}, progress=lambda _m: None)


def test_run_folders_and_executed_notebooks_are_private_under_umask_000(tmp_path):
    previous = os.umask(0)
    try:
        summary = _phase_1(tmp_path)
    finally:
        os.umask(previous)
    assert summary.ok, summary.lines()
    work, [run_dir] = tmp_path / "work", list((tmp_path / "runs").iterdir())
    folders = [work, work / "keys", work / "phases", work / "localorg", tmp_path / "runs", run_dir]
    assert {str(f): _mode(f) for f in folders} == {str(f): 0o700 for f in folders}
    assert _mode(run_dir / "01_certificate.ipynb") == 0o600


_HOLD = """
import sys, time
from runbook.work.workdir import open_workdir
with open_workdir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_a_held_work_folder_refuses_naming_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "work")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        started = time.monotonic()
        with pytest.raises(WorkdirBusy, match=f"another runbook run \\(pid {holder.pid}\\)"):
            _phase_1(tmp_path)
        assert time.monotonic() - started < 15
    finally:
        holder.kill()
        holder.wait(timeout=10)
