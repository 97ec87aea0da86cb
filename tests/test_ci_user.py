"""Phase 3's least-privilege CI user through papermill: its Dev Hub permission set, pre-authorized and assigned;
phase 4's scratch-org proof as that user; a rerun with 0 writes; teardown keeps the user."""

from __future__ import annotations

import pytest
from conftest import run_phases

from runbook.access import CI_PERMISSION_SET, check_ci_user, ensure_ci_user
from runbook.batch import run_runbook
from runbook.errors import InputError
from runbook.org import connect, start_local_org
from runbook.rest import query
from runbook.scratch_proof import ScratchOrgProofError, prove_scratch_org
from runbook.teardown import teardown_app
from runbook.verify import verify_setup
from runbook.workdir import open_workdir

CI = "ci@local.devhub"  # seeded, Standard User (the local org cannot insert users: reused as it is)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci")
    workdir = run_phases(root, ci_user=CI)
    return root, workdir, connect("local", workdir=workdir)


def _set_rows(session) -> tuple[list[dict], list[dict], list[dict]]:
    sets = query(session, f"SELECT Id FROM PermissionSet WHERE Name = '{CI_PERMISSION_SET}'")
    if not sets:
        return [], [], []
    rows = query(session, f"SELECT SobjectType FROM ObjectPermissions WHERE ParentId = '{sets[0]['Id']}'")
    held = query(session, f"SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = '{sets[0]['Id']}'")
    return sets, rows, held


def test_the_ci_user_gets_the_dev_hub_permission_set_and_the_proof_runs_as_it(ci_run):
    _root, workdir, session = ci_run
    wd = open_workdir(workdir)
    record = wd.load("ci_user")
    assert record["username"] == CI and record["created_set"] and record["created_assignment"]
    assert "reused with its profile 'Standard User'" in record["warnings"][0]
    sets, rows, held = _set_rows(session)
    assert len(sets) == 1 and {r["SobjectType"] for r in rows} == {"ScratchOrgInfo", "ActiveScratchOrg"}
    assert len(held) == 1
    assert CI_PERMISSION_SET in wd.load("access")["permission_sets"]  # pre-authorized for the app
    proof = wd.load("verify")["scratch_proof"]
    assert proof["hub_username"] == CI and proof["result"] == "created, queried and deleted"


def test_a_rerun_writes_nothing(ci_run):
    root, workdir, _session = ci_run
    org = start_local_org(workdir / "localorg")
    before = len(org.call_log())
    again = run_runbook(workdir=workdir, runs_dir=root / "runs", params={"ci_user": CI,
                        "callback_port": open_workdir(workdir).load("connected_app")["callback_port"]},
                        progress=lambda _m: None)
    assert again.ok, again.lines()
    assert [c.operation for c in org.call_log()[before:] if c.is_write] == []
    assert any(line.startswith("Scratch org:    created, queried and deleted") for line in again.lines())


def test_the_ci_user_without_the_dev_hub_permission_is_refused_with_the_fix_and_phase_3_restores_it(ci_run):
    _root, workdir, session = ci_run
    sets, _rows, _held = _set_rows(session)
    for row in query(session, f"SELECT Id FROM ObjectPermissions WHERE ParentId = '{sets[0]['Id']}'"):
        session.sf.ObjectPermissions.delete(row["Id"])  # as if someone untick the object settings
    handoff = verify_setup(session, workdir=workdir)
    with pytest.raises(ScratchOrgProofError) as caught:
        prove_scratch_org(session, handoff, workdir=workdir, mode="on")  # as the CI user, phase 3's record
    assert caught.value.step == "insert ScratchOrgInfo" and CI in caught.value.fix
    assert "Scratch Org Infos Read, Create, Edit, Delete" in caught.value.fix
    again = ensure_ci_user(session, ci_user=CI, workdir=workdir)
    assert again.created == ["ScratchOrgInfo Read/Create/Edit/Delete", "ActiveScratchOrg Read/Edit/Delete"]
    assert prove_scratch_org(session, handoff, workdir=workdir, mode="on").hub_username == CI


def test_a_bad_ci_user_is_refused_before_any_call():
    assert check_ci_user("") == "" and check_ci_user(" ci@example.com ") == "ci@example.com"
    with pytest.raises(InputError, match="ci_user"):
        check_ci_user("not a username")


def test_ensure_ci_user_without_one_does_nothing(ci_run):
    _root, workdir, session = ci_run
    assert ensure_ci_user(session, ci_user="", workdir=workdir) is None


def test_teardown_removes_the_assignment_and_the_permission_set_but_not_the_user(ci_run):
    _root, workdir, session = ci_run
    app = open_workdir(workdir).load("connected_app")["full_name"]
    plan = teardown_app(session, app, workdir=workdir)
    lines = "\n".join(plan.lines())
    assert f"remove the assignment of {CI_PERMISSION_SET} from {CI} (the user stays)" in lines
    assert f"delete permission set {CI_PERMISSION_SET}" in lines
    teardown_app(session, app, workdir=workdir, apply=True)
    assert _set_rows(session) == ([], [], [])
    assert query(session, f"SELECT Id, IsActive FROM User WHERE Username = '{CI}'")[0]["IsActive"] is True
    assert open_workdir(workdir).load("ci_user") is None
