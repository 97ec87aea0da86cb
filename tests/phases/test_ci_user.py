"""Phase 3's least-privilege CI user through papermill: its Dev Hub permission set, pre-authorized and assigned;
phase 4's scratch-org proof as that user; a rerun with 0 writes; teardown keeps the user. And a CI user the org
does not have yet, created by phase 3's own functions and logged in by JWT with the runbook's key."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_phases

from runbook.errors import InputError
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.ci_user import CI_PERMISSION_SET, CI_PROFILES, check_ci_user, ensure_ci_user, with_ci_permission_set
from runbook.phases.jwt_bearer import jwt_login
from runbook.phases.scratch_proof import ScratchOrgProofError, prove_scratch_org
from runbook.phases.teardown import teardown_app
from runbook.phases.verify import verify_setup
from runbook.run.batch import run_runbook
from runbook.salesforce import connect, start_local_org
from runbook.salesforce.rest import query
from runbook.work.workdir import open_workdir

CI = "ci@local.devhub"  # seeded, Standard User: reused as it is
NEW_CI = "runbook-ci@local.devhub"  # not seeded: phase 3 creates it


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


@pytest.fixture(scope="module")
def new_ci(tmp_path_factory):
    """Phases 1 and 2 only, in an org of its own: phase 3 is run below through its public functions."""
    root = tmp_path_factory.mktemp("ci-new")
    workdir = run_phases(root, phases=["certificate", "connected_app"])
    return workdir, start_local_org(workdir / "localorg"), connect("local", workdir=workdir)


def _phase_3(session, workdir):
    """What the phase 3 notebook runs for ``ci_user``: the user and its set, then the app's access naming the set."""
    ci = ensure_ci_user(session, ci_user=NEW_CI, workdir=workdir)
    app = open_workdir(workdir).load("connected_app")["full_name"]
    spec = build_access_spec(app_name=app, permission_sets=with_ci_permission_set([], ci), workdir=workdir)
    return ci, ensure_access(session, spec, workdir=workdir)[1]


def test_a_new_ci_user_is_created_with_the_api_only_profile_assigned_preauthorized_and_logs_in_by_jwt(new_ci):
    workdir, org, session = new_ci
    assert query(session, f"SELECT Id FROM User WHERE Username = '{NEW_CI}'") == []
    ci, access = _phase_3(session, workdir)
    assert ci.created == [f"user {NEW_CI} ({CI_PROFILES[0]}, no password: JWT only)",
                          f"permission set {CI_PERMISSION_SET}", "ScratchOrgInfo Read/Create/Edit/Delete",
                          "ActiveScratchOrg Read/Edit/Delete", f"assignment of {CI_PERMISSION_SET} to {NEW_CI}"]
    assert ci.warnings == [] and ci.profile == CI_PROFILES[0]
    user = query(session, f"SELECT Id, IsActive, Profile.Name FROM User WHERE Username = '{NEW_CI}'")[0]
    assert user["IsActive"] is True and user["Profile"]["Name"] == CI_PROFILES[0] and ci.user_id == user["Id"]
    sets, rows, held = _set_rows(session)
    assert len(sets) == 1 and {r["SobjectType"] for r in rows} == {"ScratchOrgInfo", "ActiveScratchOrg"}
    assert len(held) == 1 and CI_PERMISSION_SET in access.permission_sets

    before = len(org.call_log())
    again, access_again = _phase_3(session, workdir)
    assert again.created == [] and access_again.changes == [] and again.user_id == user["Id"]
    assert [c.operation for c in org.call_log()[before:] if c.is_write] == []

    app, cert = open_workdir(workdir).load("connected_app"), open_workdir(workdir).load("certificate")
    login, _token = jwt_login(consumer_key=app["consumer_key"], username=NEW_CI, key_path=Path(cert["key_path"]),
                              login_url=org.url)
    assert login.username == NEW_CI and login.user_id == user["Id"]
