"""The work folder's lock: a second run waits a little, then refuses naming the first run's pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.work.workdir import LOCK_NAME, WorkdirBusy, open_workdir

_HOLD = """
import sys, time
from runbook.work.workdir import open_workdir
with open_workdir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(workdir: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the work folder for ``seconds``, once it has said so."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(workdir), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stdout.readline() == "locked\n"
    return process


@pytest.fixture
def holder(tmp_path) -> Iterator[subprocess.Popen]:
    process = _holder(tmp_path / "work", 60)
    yield process
    process.kill()
    process.wait(timeout=10)


def test_second_taker_waits_then_refuses_naming_the_other_runs_pid(tmp_path, holder):
    work = open_workdir(tmp_path / "work")
    started = time.monotonic()
    with pytest.raises(WorkdirBusy) as err, work.lock(wait=1.0):
        pass
    waited = time.monotonic() - started
    assert 1.0 <= waited < 3.0
    assert err.value.pid == holder.pid
    assert str(err.value) == (f"The work folder {work.root} is in use by another runbook run (pid {holder.pid}); "
                              f"waited 1 s for it. Fix: wait for that run to finish (or stop it: kill {holder.pid}), "
                              "or give this run another --workdir.")


def test_a_killed_holder_leaves_the_folder_free_at_once(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    started = time.monotonic()
    with open_workdir(tmp_path / "work").lock(wait=1.0):
        assert time.monotonic() - started < 0.5


def test_taker_gets_the_folder_when_the_holder_finishes_within_the_wait(tmp_path):
    process = _holder(tmp_path / "work", 0.5)
    try:
        with open_workdir(tmp_path / "work").lock(wait=10.0) as work:
            assert (work.root / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    finally:
        process.wait(timeout=10)
    assert process.returncode == 0
    assert (tmp_path / "work" / LOCK_NAME).read_text() == ""  # the pid goes with the lock


def test_the_same_process_taking_it_twice_waits_like_anyone_else(tmp_path):
    work = open_workdir(tmp_path / "work")
    with work.lock(), pytest.raises(WorkdirBusy, match=r"\(pid \d+\)"), work.lock(wait=0.2):
        pass
