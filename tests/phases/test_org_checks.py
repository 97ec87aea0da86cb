"""The names only the org can check (profiles, permission sets, users, the login URL's org) are asked before
phase 1 writes: every problem at once, no key, no app; a fresh run still makes 8 round trips, and a rerun with the
same names asks nothing more."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_callback_port

from runbook.errors import RunbookError
from runbook.run.batch import run_runbook
from runbook.salesforce import start_local_org

ROOT = Path(__file__).resolve().parent.parent.parent


def _run(root: Path, messages: list[str] | None = None, **params):
    return run_runbook(workdir=root / "work", runs_dir=root / "runs", params=params,
                       progress=(messages.append if messages is not None else lambda _m: None))


def test_unknown_names_are_all_refused_before_the_key_or_the_app_is_made(tmp_path):
    org = start_local_org(tmp_path / "work" / "localorg")
    with pytest.raises(RunbookError) as caught:
        _run(tmp_path, callback_port=free_callback_port(), profiles=["System Administrater"],
             permission_sets=["No_Such_Set"], assign_users=["nobody@local.devhub"],
             usernames=["ghost@local.devhub"])
    text = str(caught.value)
    for expected in ("4 parameter problem(s), nothing was written",
                     "profiles='System Administrater' is not valid: no such profile. Fix: did you mean "
                     "'System Administrator'",
                     "permission_sets='No_Such_Set' is not valid: no such permission set",
                     "Or set create_permission_sets=True to create it",
                     "assign_users='nobody@local.devhub' is not valid: no such user",
                     "usernames='ghost@local.devhub' is not valid: no such user in the org"):
        assert expected in text
    assert not (tmp_path / "work" / "keys").exists()
    assert not (tmp_path / "work" / "phases").exists()
    assert [c.operation for c in org.call_log() if c.is_write] == []


def test_a_login_url_of_another_org_is_refused_before_anything_is_written(tmp_path):
    start_local_org(tmp_path / "work" / "localorg")
    with pytest.raises(RunbookError) as caught:
        _run(tmp_path, callback_port=free_callback_port(), login_url="https://login.salesforce.com")
    assert "login_url='https://login.salesforce.com' is not valid: it is not the local org's login URL" in \
        str(caught.value)
    assert not (tmp_path / "work" / "keys").exists()


def test_a_fresh_run_asks_once_and_phase_3_reuses_the_answer(tmp_path):
    org = start_local_org(tmp_path / "work" / "localorg")
    messages: list[str] = []
    summary = _run(tmp_path, messages, callback_port=free_callback_port(), prove_scratch_org="off")
    assert summary.ok, summary.lines()
    assert "[check] asking the org about the names access, verify use" in messages
    calls = org.call_log()
    assert len(calls) <= 8, [c.operation for c in calls]  # the fresh-run goal stands with the check
    queries = [c for c in calls if c.operation == "rest.query"]
    assert len(queries) == 1, [c.operation for c in calls]  # the check's; phase 3 got its answer, not asking again

    messages.clear()
    before = len(org.call_log())
    again = _run(tmp_path, messages, callback_port=open_port(tmp_path), prove_scratch_org="off")
    assert again.ok, again.lines()
    assert not [m for m in messages if m.startswith("[check]")]  # same names as the last good run: not asked
    assert [c.operation for c in org.call_log()[before:] if c.is_write] == []

    messages.clear()
    with pytest.raises(RunbookError, match="profiles='Standard Usr' is not valid: no such profile"):
        _run(tmp_path, messages, callback_port=open_port(tmp_path), prove_scratch_org="off", profiles=["Standard Usr"])
    assert "[check] asking the org about the names access use" in messages  # a changed name is asked again


def open_port(root: Path) -> int:
    return json.loads((root / "work" / "phases" / "connected_app.json").read_text())["callback_port"]


def test_run_check_asks_the_org_too(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "runbook", "run", "--check", "-p", "profiles=[Sytem Administrator]"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout
    assert "profiles='Sytem Administrator' is not valid: no such profile. Fix: did you mean 'System Administrator'" \
        in proc.stderr
    assert list(tmp_path.iterdir()) == []  # a fresh org in a temporary folder, as a first run would meet it
