"""Phase 4 with phase 3's CI user, through papermill: the CI user is verified beside the admin, the scratch-org
proof runs as it, and the hand-off card shows the proof's outcome and time; once ``ci_user`` is emptied, phase 4
stops logging in as that user (its record stays for teardown)."""

from __future__ import annotations

import html
import json
import re

import pytest
from conftest import run_phases

from runbook.phases.ci_user import ensure_ci_user
from runbook.salesforce import connect
from runbook.work.workdir import open_workdir

CI = "ci@local.devhub"  # seeded in the local org
ADMIN = "admin@local.devhub"


def _handoff_card(root) -> str:
    """The rows of the last hand-off card the executed 04_verify notebook shows, as "label: value" lines."""
    runs = sorted((root / "runs").iterdir())
    nb = json.loads((runs[-1] / "04_verify.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    shown = [html.unescape("".join(o["data"]["text/html"])) for o in outputs if "text/html" in o.get("data", {})]
    card = [h for h in shown if "Verified users" in h][-1]
    rows = re.findall(r"<th[^>]*>(.*?)</th><td>(?:<code>)?(.*?)(?:</code>)?</td>", card)
    return "\n".join(f"{k}: {v}" for k, v in rows)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci4")
    return root, run_phases(root, ci_user=CI)


def test_phase_4_verifies_the_ci_user_and_the_proof_runs_as_it_on_the_hand_off_card(ci_run):
    root, workdir = ci_run
    verify = open_workdir(workdir).load("verify")
    assert [lr["username"] for lr in verify["logins"]] == [ADMIN, CI]  # a real JWT token for each
    assert all(lr["org_id"].startswith("00D") for lr in verify["logins"])
    card = _handoff_card(root)
    assert f"Verified users: {ADMIN}, {CI}" in card
    line = next(x for x in card.splitlines() if x.startswith("Scratch org proof: "))
    assert "created, queried and deleted in " in line and line.endswith(f" as {CI}")
    assert verify["scratch_proof"]["seconds"] > 0


def test_without_ci_user_phase_4_no_longer_logs_in_as_it(ci_run):
    root, workdir = ci_run
    session = connect("local", workdir=workdir)
    assert ensure_ci_user(session, ci_user="", workdir=workdir) is None
    record = open_workdir(workdir).load("ci_user")
    assert record["username"] == CI and record["in_use"] is False  # kept: teardown removes what it created
    run_phases(root, phases=["verify"], callback_port=open_workdir(workdir).load("connected_app")["callback_port"])
    verify = open_workdir(workdir).load("verify")
    assert [lr["username"] for lr in verify["logins"]] == [ADMIN]
    assert verify["scratch_proof"]["hub_username"] == ADMIN
