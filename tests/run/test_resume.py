"""`--resume` by inputs and outcomes, and a summary that tells this run's outcome only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_callback_port

from runbook.errors import RunbookError
from runbook.localorg import Fault
from runbook.run.batch import run_runbook
from runbook.salesforce import start_local_org


def _run(root: Path, messages: list[str] | None = None, **kwargs):
    say = messages.append if messages is not None else (lambda _m: None)
    return run_runbook(workdir=root / "work", runs_dir=root / "runs", progress=say, **kwargs)


def _failing_phase_3_save(root: Path):
    """The org refuses phase 3's save (a 503 on updateMetadata) until ``set_faults(None)`` clears it: a phase 3 that
    fails after the up-front check passed, as an outage or a kill mid-run would leave it."""
    org = start_local_org(root / "work" / "localorg")
    org.set_faults([Fault("server_error", match="updateMetadata", times=0)])
    return org


def test_resume_after_a_failed_phase_3_reruns_it_and_phase_4(tmp_path):
    port = free_callback_port()
    good = _run(tmp_path, params={"callback_port": port})
    assert good.ok, good.lines()
    org = _failing_phase_3_save(tmp_path)
    changed = {"callback_port": port, "profiles": ["System Administrator", "Standard User"]}
    bad = _run(tmp_path, params=changed)
    assert [(p.phase, p.status) for p in bad.phases][-1] == ("access", "failed")
    org.set_faults(None)

    messages: list[str] = []
    resumed = _run(tmp_path, messages, resume=True, params=changed)

    assert resumed.ok, resumed.lines()
    assert [(p.phase, p.status) for p in resumed.phases] == [
        ("certificate", "skipped"), ("connected_app", "skipped"), ("access", "done"), ("verify", "done")]
    assert "[access] its last run failed: rerun" in messages
    assert "[verify] after access: rerun" in messages
    assert any(m.startswith("[certificate] done, inputs unchanged: skipped") for m in messages)


def test_a_misspelt_profile_is_refused_before_any_phase_runs_and_resume_with_the_fix_redoes_nothing(tmp_path):
    port = free_callback_port()
    assert _run(tmp_path, params={"callback_port": port}).ok
    with pytest.raises(RunbookError, match="profiles='System Administrater' is not valid: no such profile"):
        _run(tmp_path, params={"callback_port": port, "profiles": ["System Administrater"]})

    messages: list[str] = []
    resumed = _run(tmp_path, messages, resume=True,
                   params={"callback_port": port, "profiles": ["System Administrator"]})

    assert resumed.ok, resumed.lines()
    assert [p.status for p in resumed.phases] == ["skipped"] * 4  # the refused run changed nothing to redo
    assert "[access] done, inputs unchanged: skipped" in messages


def test_resume_reruns_a_phase_whose_inputs_changed_and_names_them(tmp_path):
    port = free_callback_port()
    assert _run(tmp_path, params={"callback_port": port}).ok
    messages: list[str] = []

    resumed = _run(tmp_path, messages, resume=True,
                   params={"callback_port": port, "profiles": ["System Administrator", "Standard User"]})

    assert resumed.ok
    assert "[access] inputs changed (profiles): rerun" in messages
    assert [p.status for p in resumed.phases] == ["skipped", "skipped", "done", "done"]


def test_a_failed_run_after_a_good_one_does_not_print_the_earlier_app_and_says_how_to_continue(tmp_path):
    port = free_callback_port()
    assert _run(tmp_path, params={"callback_port": port}).ok
    _failing_phase_3_save(tmp_path)

    failed = _run(tmp_path, params={"callback_port": port, "ip_relaxation": "BYPASS"})

    text = "\n".join(failed.lines())
    assert "FAILED access: SalesforceError: updateMetadata" in text
    assert "Consumer key:" not in text.split("FAILED")[0] or "connected_app  done" in text
    assert "JWT login as:" not in text and "CLI command:" not in text
    assert "Changed by this run: nothing" in text  # phases 1 and 2 had nothing to change
    assert f"To continue: runbook run --resume --org local --workdir {tmp_path / 'work'}" in text
    assert "-p ip_relaxation=BYPASS" in text


def test_a_failed_first_run_names_what_it_changed(tmp_path):
    _failing_phase_3_save(tmp_path)
    failed = _run(tmp_path, params={"callback_port": free_callback_port()})
    text = "\n".join(failed.lines())
    assert "Changed by this run: key pair generated" in text and "connected app Runbook_CI created in the org" in text


_INTERRUPT = """
import sys
from pathlib import Path
from runbook.run.batch import run_runbook
root = Path(sys.argv[1])
summary = run_runbook(workdir=root / "work", runs_dir=root / "runs", params={"callback_port": int(sys.argv[2])},
                      local_org={"propagation_s": 120}, progress=lambda m: print(m, flush=True))
print("\\n".join(summary.lines()), flush=True)
"""


def test_ctrl_c_in_a_run_stops_the_kernel_keeps_the_notebook_and_prints_the_resume_command(tmp_path):
    """Phase 4 waits for a new app that takes 2 minutes to propagate; Ctrl-C arrives while it waits."""
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPT, str(tmp_path), str(free_callback_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).parent.parent)
    lines = []
    deadline = time.monotonic() + 90
    for line in proc.stdout:
        lines.append(line)
        if "[verify] running" in line:
            time.sleep(3)  # into the wait
            os.kill(proc.pid, signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)
    out = "".join(lines) + proc.communicate(timeout=60)[0]
    assert "[verify] interrupted" in out, out
    assert "INTERRUPTED in verify (Ctrl-C): the kernel was stopped" in out
    assert "To continue: runbook run --resume" in out
    executed = list((tmp_path / "runs").glob("*/04_verify.ipynb"))
    assert executed and executed[-1].stat().st_size > 0
