"""A fleet of local orgs through `runbook run --config`: concurrency, one failing org, the report, --resume."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from runbook.cli import main
from runbook.errors import InputError
from runbook.run.batch import run_runbook
from runbook.run.fleet import load_fleet, run_fleet
from runbook.run.kernelpool import KernelTemplate, forking_supported, template_argv
from runbook.run.report import write_report

NAMES = ["alpha", "bravo", "charlie", "delta", "echo"]


def _fleet_file(root: Path, broken: bool) -> Path:
    orgs = [{"name": name} for name in NAMES]
    orgs[1]["params"] = {"app_name": "Bravo_CI"}
    if broken:
        orgs[3]["params"] = {"key_size": 1000}  # refused by the run's parameter check, before phase 1
    path = root / "orgs.yaml"
    defaults = {"contact_email": "fleet@example.com", "callback_port": "auto"}  # 1717 may be taken here
    path.write_text(yaml.safe_dump({"defaults": defaults, "workdir": "work",
                                    "orgs": orgs}))
    return path


def _consumer_key(workdir: Path) -> str:
    return json.loads((workdir / "phases" / "connected_app.json").read_text())["consumer_key"]


def _kernel_tree() -> dict[int, list[int]]:
    """This process's kernel processes: each direct child's pid with the pids of its own children."""
    import psutil

    return {child.pid: [k.pid for k in child.children()] for child in psutil.Process().children()
            if "runbook.run.kernelpool" in " ".join(child.cmdline()) or "ipykernel" in " ".join(child.cmdline())}


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory):
    """The fleet file's five orgs, one broken, three at once; and the kernel processes seen while they ran."""
    root = tmp_path_factory.mktemp("fleet")
    orgs = load_fleet(_fleet_file(root, broken=True))
    messages: list[str] = []
    trees: list[dict[int, list[int]]] = []

    def progress(message: str) -> None:
        messages.append(message)
        if "[access] running" in message:  # an org's kernel is up
            trees.append(_kernel_tree())

    result = run_fleet(orgs, runs_dir=root / "runs", jobs=3, progress=progress)
    return root, result, messages, trees


@pytest.fixture(scope="module")
def fleet(fleet_run):
    return fleet_run[:3]


def test_one_failing_org_does_not_stop_the_others(fleet):
    _root, result, _messages = fleet
    assert [r.org.name for r in result.results] == NAMES
    assert [r.org.name for r in result.failed] == ["delta"]
    assert not result.ok
    delta = result.failed[0]
    assert delta.summary is None and "key_size=1000 is not valid" in delta.error  # nothing of it ran
    keys = {_consumer_key(r.org.workdir) for r in result.results if r.ok}
    assert len(keys) == 4  # four orgs, four apps, each in its own work folder and local org


def test_each_org_gets_its_own_folders_and_parameters(fleet):
    root, result, _messages = fleet
    ran = [n for n in NAMES if n != "delta"]  # delta's parameters were refused: it wrote nothing at all
    for name in ran:
        assert (root / "work" / name / "localorg" / "org.sqlite3").is_file()
    assert sorted(p.name for p in result.run_dir.iterdir()) == ran
    assert not (root / "work" / "delta").exists()
    assert len(list((result.run_dir / "alpha").glob("*.ipynb"))) == 4
    bravo = json.loads((root / "work" / "bravo" / "phases" / "connected_app.json").read_text())
    assert bravo["full_name"] == "Bravo_CI"


def test_progress_is_shown_per_org_and_phase(fleet):
    _root, _result, messages = fleet
    assert "[alpha] [verify] running 04_verify.ipynb" in messages
    assert any(m.startswith("[delta] FAILED in ") and "key_size=1000" in m for m in messages)
    assert any(m.startswith("[echo] done in ") for m in messages)


@pytest.mark.skipif(not forking_supported(), reason="kernels are forked only where fork and pidfds exist")
def test_the_orgs_kernels_are_forked_from_one_template_that_ends_with_the_fleet(fleet_run):
    trees = fleet_run[3]
    assert len(trees) == 4  # the four orgs that got past phase 1
    templates = {pid for tree in trees for pid in tree}
    assert len(templates) == 1  # one direct child: the template; the kernels are its children
    kernels = {k for tree in trees for kids in tree.values() for k in kids}
    assert len(kernels) >= 2
    assert _kernel_tree() == {}  # the template and every kernel are gone


@pytest.mark.skipif(not forking_supported(), reason="kernels are forked only where fork and pidfds exist")
def test_a_forked_kernel_that_dies_mid_phase_fails_that_phase(tmp_path):
    def kill_the_kernel_soon(message: str) -> None:
        if message.startswith("[connected_app] running"):
            kernels = [k for kids in _kernel_tree().values() for k in kids]
            threading.Timer(0.05, lambda: [os.kill(k, signal.SIGKILL) for k in kernels]).start()

    with KernelTemplate(template_argv()) as template:
        started = time.monotonic()
        result = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", phases=["certificate",
                             "connected_app", "access"], params={"callback_port": "auto"},
                             progress=kill_the_kernel_soon, kernel_template=template)
        assert [(p.phase, p.status, p.error) for p in result.phases] == [
            ("certificate", "done", ""), ("connected_app", "failed", "the kernel died while running the notebook")]
        assert time.monotonic() - started < 15
        again = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", phases=["certificate"],
                            progress=lambda _m: None, kernel_template=template)
        assert again.ok, again.lines()  # the template forks the next kernel as before


def test_a_template_that_cannot_fork_leaves_kernels_to_start_as_usual(tmp_path):
    import sys

    with KernelTemplate([sys.executable, "-c", "pass"]) as broken:  # ends at once, as if its warm-up failed
        result = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", phases=["certificate"],
                             progress=lambda _m: None, kernel_template=broken)
    assert result.ok, result.lines()


def test_report_has_one_row_per_org(fleet):
    _root, result, _messages = fleet
    md, html = write_report(result)
    text = md.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == NAMES
    alpha = next(r for r in result.results if r.org.name == "alpha")
    assert _consumer_key(alpha.org.workdir) in text
    assert "not run" in rows[3] and "key_size=1000 is not valid" in rows[3]
    assert "5 orgs, 4 ok, 1 failed" in text
    assert "data-org='delta' data-ok='false'" in html.read_text()


def test_resume_skips_what_is_done_and_finishes_the_failed_org(fleet):
    root, result, _messages = fleet
    keys = {r.org.name: _consumer_key(r.org.workdir) for r in result.results if r.ok}
    config = _fleet_file(root, broken=False)

    outcome = CliRunner().invoke(main, ["run", "--config", str(config), "--runs-dir", str(root / "runs"),
                                        "--jobs", "3", "--resume"])

    assert outcome.exit_code == 0, outcome.output
    rows = {line.split(" | ")[0].strip("| "): line for line in outcome.output.splitlines()
            if line.startswith("| ") and "---" not in line}
    for name in keys:
        assert rows[name].count("↷ skipped") == 4
        assert _consumer_key(root / "work" / name) == keys[name]
    assert rows["delta"].count("✓ done") == 4
    assert "5 orgs, 5 ok, 0 failed" in outcome.output


def test_a_fleet_file_with_a_secret_parameter_is_refused(tmp_path):
    path = tmp_path / "orgs.yaml"
    path.write_text(yaml.safe_dump({"orgs": [{"name": "a", "params": {"sf_password": "x"}}]}))
    with pytest.raises(InputError, match="never pass secrets"):
        load_fleet(path)


def test_the_cli_exits_non_zero_when_an_org_fails(tmp_path):
    path = tmp_path / "orgs.yaml"
    path.write_text(yaml.safe_dump({"orgs": [{"name": "bad", "params": {"key_size": 1000}}]}))
    outcome = CliRunner().invoke(main, ["run", "--config", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 1
    assert "1 of 1 orgs failed: bad" in outcome.output


def test_ctrl_c_in_a_fleet_starts_no_new_org_stops_at_a_phase_boundary_and_still_writes_the_report(tmp_path):
    """Ctrl-C comes while the first org runs phase 2: it stops before phase 3, and the three others never start."""
    import os
    import signal
    import subprocess
    import sys

    orgs = [{"name": f"org{i}", "local_org": {"latency_ms": 300}} for i in range(4)]
    config = tmp_path / "orgs.yaml"
    config.write_text(yaml.safe_dump({"defaults": {"callback_port": "auto"}, "workdir": "work", "orgs": orgs}))
    proc = subprocess.Popen([sys.executable, "-m", "runbook", "run", "--config", str(config), "--jobs", "1",
                             "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "[org0] [connected_app] running" in line:
            os.kill(proc.pid, signal.SIGINT)
            break
    out = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert "Interrupted: 3 org(s) not started" in out
    report = next((tmp_path / "runs").glob("*/report.md")).read_text()
    assert "(interrupted by Ctrl-C)" in report and report.count("interrupted: not started") == 3
    org0 = next(line for line in report.splitlines() if line.startswith("| org0 "))
    assert "⏸ interrupted" in org0 and "✓ done" in org0  # phases 1-2 done, phase 3 never started
