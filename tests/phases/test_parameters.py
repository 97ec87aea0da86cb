"""The whole run's parameters are checked before anything is written: unknown names, wrong types and bad values,
every problem at once, through `runbook run`, `runbook run --check` and the package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_callback_port

from runbook.errors import ParameterProblems
from runbook.phases import PHASE_NAMES
from runbook.phases.checks import PHASE_CHECKS
from runbook.phases.parameters import check_run, coerce
from runbook.run.batch import run_runbook

ROOT = Path(__file__).resolve().parent.parent.parent


def _runbook(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runbook", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_every_phase_has_a_check():
    assert tuple(PHASE_CHECKS) == PHASE_NAMES


@pytest.mark.parametrize(("value", "expected"), [(62, "62.0"), (62.0, "62.0"), ("62.0", "62.0")])
def test_api_version_as_a_number_or_text_is_the_same_version(value, expected):
    assert coerce("api_version", value, "62.0") == expected


def test_run_check_lists_every_problem_at_once_and_writes_nothing(tmp_path):
    proc = _runbook("run", "--check", "-p", "contact_emial=a@b.c", "-p", "ip_relaxation=MAYBE",
                    "-p", "login_url=ftp://login.salesforce.com", "-p", "web_flow=maybe", "-p", "apply=perhaps",
                    "-p", "propagation_timeout=-1", cwd=tmp_path)

    assert proc.returncode == 1
    for text in ("contact_emial='a@b.c' is not valid: no phase has such a parameter. Fix: did you mean contact_email",
                 "ip_relaxation='MAYBE' is not valid", "login_url='ftp://login.salesforce.com' is not valid",
                 "web_flow='maybe' is not valid", "apply='perhaps' is not valid. Fix: use true or false",
                 "propagation_timeout=-1 is not valid", "6 parameter problem(s), nothing was written"):
        assert text in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_check_passes_good_parameters(tmp_path):
    proc = _runbook("run", "--check", "-p", "api_version=62", "-p", "apply=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and list(tmp_path.iterdir()) == []


def test_a_misspelt_name_in_the_config_file_is_refused(tmp_path):
    config = tmp_path / "runbook.yaml"
    config.write_text("conatct_email: ci@example.com\n")
    proc = _runbook("run", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 1
    assert "conatct_email='ci@example.com' is not valid: no phase has such a parameter" in proc.stderr
    assert "did you mean contact_email" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runbook.yaml"]


@pytest.mark.parametrize("bad", [{"ip_relaxation": "MAYBE"}, {"login_url": "ftp://login.salesforce.com"},
                                 {"web_flow": "maybe"}, {"permission_sets": "", "profiles": []},
                                 {"propagation_timeout": 7200}])
def test_a_bad_phase_3_or_4_parameter_leaves_no_key_no_record_and_no_org_write(tmp_path, bad):
    with pytest.raises(ParameterProblems) as caught:
        run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                    params={"callback_port": free_callback_port(), **bad})
    assert "nothing was written" in str(caught.value)
    assert not (tmp_path / "work").exists() and not (tmp_path / "runs").exists()


def test_coerced_values_reach_the_notebooks(tmp_path):
    summary = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                          phases=["certificate", "connected_app"],
                          params={"callback_port": free_callback_port(), "api_version": 62.0, "apply": "false"})
    assert summary.ok, summary.lines()
    executed = json.loads((summary.run_dir / "02_connected_app.ipynb").read_text())
    injected = next(c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    source = "".join(injected["source"])
    assert 'api_version = "62.0"' in source and "apply = False" in source


def test_check_run_refuses_a_wrong_type_for_a_list(tmp_path):
    with pytest.raises(ParameterProblems, match="profiles=5 is not valid"):
        check_run({"profiles": 5, "workdir": str(tmp_path)})


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("prove_scratch_org", False, "off"), ("web_flow", True, "on"), ("apply", "no", False), ("rotate", "on", True)])
def test_yamls_on_off_yes_no_mean_the_word_or_the_boolean_the_parameter_takes(name, value, expected):
    """`-p prove_scratch_org=off` reaches the parser as False (YAML 1.1): the parameter takes the word."""
    assert check_run({name: value})[name] == expected
