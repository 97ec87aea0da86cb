"""Bad parameters across the phases: each refused with a message naming it, the org and work folder untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runbook.errors import InputError, RunbookError
from runbook.run.batch import run_runbook
from runbook.salesforce import start_local_org

# (phase, parameters, text the error must contain)
BAD_INPUTS = [
    ("certificate", {"valid_days": 0}, "valid_days=0 is not valid"),
    ("certificate", {"valid_days": -30}, "valid_days=-30 is not valid"),
    ("certificate", {"valid_days": 100000}, "at most 3650"),
    ("certificate", {"key_size": 1024}, "key_size=1024 is not valid"),
    ("certificate", {"key_path": "/nonexistent/ci.key", "cert_path": "/nonexistent/ci.crt"}, "does not exist"),
    ("certificate", {"key_path": "/tmp", "cert_path": "/tmp"}, "not a folder"),
    ("certificate", {"passphrase_env": "hunter 2"}, "NAME of an environment variable"),
    ("certificate", {"common_name": "x" * 65}, "at most 64 characters"),
    ("connected_app", {"app_name": "1st_App"}, "app_name='1st_App' is not valid"),
    ("connected_app", {"app_name": "Bad__Name"}, "app_name='Bad__Name' is not valid"),
    ("connected_app", {"app_name": "Trailing_"}, "app_name='Trailing_' is not valid"),
    ("connected_app", {"app_name": "has space"}, "app_name='has space' is not valid"),
    ("connected_app", {"app_name": "A" * 41}, "at most 40 characters"),
    ("connected_app", {"label": "L" * 41}, "label="),
    ("connected_app", {"contact_email": "not-an-email"}, "contact_email='not-an-email' is not valid"),
    ("connected_app", {"callback_port": 0}, "callback_port=0 is not valid"),
    ("connected_app", {"callback_port": 70000}, "callback_port=70000 is not valid"),
    ("connected_app", {"callback_port": "http"}, "callback_port='http' is not valid"),
    ("connected_app", {"scopes": ["api", "bogus"]}, "scopes='bogus' is not valid"),
    ("connected_app", {"scopes": []}, "scopes=[] is not valid"),
    ("access", {"profiles": ["System Admin"]}, "System Administrator"),
    ("access", {"permission_sets": ["No_Such_Set"]}, "permission_sets='No_Such_Set' is not valid"),
    ("access", {"permitted_users": "everyone"}, "permitted_users='everyone' is not valid"),
    ("access", {"ip_relaxation": "LOOSE"}, "ip_relaxation='LOOSE' is not valid"),
    ("access", {"refresh_token_policy": "forever"}, "refresh_token_policy='forever' is not valid"),
    ("access", {"refresh_token_policy": "specific_lifetime:0:HOURS"}, "refresh_token_policy="),
    ("access", {"permission_sets": ["Ci_Users"], "create_permission_sets": True,
                "assign_users": ["ghost@nowhere.test"]}, "assign_users='ghost@nowhere.test' is not valid"),
    ("verify", {"key_path": "/nonexistent/server.key"}, "key_path='/nonexistent/server.key' is not valid"),
    ("verify", {"api_version": "v62"}, "api_version='v62' is not valid"),
]


def _snapshot(workdir: Path) -> dict[str, str]:
    """Every file of the work folder with a hash of its content, but the org's live database, the run lock and the
    batch's outcome records (``<phase>.run.json``: a failed run is recorded, so --resume reruns it)."""
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*")) if p.is_file() and "localorg" not in p.parts
            and p.name != ".lock" and not p.name.endswith(".run.json")}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    summary = run_runbook(workdir=root / "work", runs_dir=root / "runs", progress=lambda _m: None)
    assert summary.ok, summary.lines()
    return summary


def test_there_are_at_least_25_cases():
    assert len(BAD_INPUTS) >= 25


@pytest.mark.parametrize(("phase", "params", "message"), BAD_INPUTS,
                         ids=[f"{p}-{next(iter(k))}" for p, k, _ in BAD_INPUTS])
def test_bad_input_is_refused_and_changes_nothing(done, phase, params, message):
    org = start_local_org(done.workdir / "localorg")
    files_before, calls_before = _snapshot(done.workdir), len(org.call_log())

    try:  # refused by the run's checks (the parameters, then what only the org knows) before anything runs
        result = run_runbook(workdir=done.workdir, runs_dir=done.run_dir.parent, phases=[phase], params=params,
                             progress=lambda _m: None)
    except RunbookError as caught:  # ParameterProblems is one
        error = str(caught)
    else:
        failed = result.phases[-1]
        assert failed.status == "failed"
        assert failed.error.startswith("InputError: "), failed.error
        error = failed.error
    assert message in error
    assert "Fix: " in error
    assert [c.operation for c in org.call_log()[calls_before:] if c.is_write] == []
    assert _snapshot(done.workdir) == files_before


def test_a_secret_as_a_parameter_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(InputError, match="never pass secrets"):
        run_runbook(workdir=tmp_path / "w", runs_dir=tmp_path / "runs", params={"access_token": "00Dx!abc"})
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "w").exists()
