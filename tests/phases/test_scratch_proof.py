"""Phase 4's scratch-org proof against the local org: through the runbook's JWT app, as the verified user."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import run_phases

from runbook.localorg import ADMIN_USERNAME
from runbook.phases.scratch_proof import ScratchOrgProofError, prove_scratch_org
from runbook.phases.verify import verify_setup
from runbook.run.summary import PhaseRun, RunSummary
from runbook.salesforce import connect
from runbook.work.workdir import open_workdir

DEV = "dev@local.devhub"  # Standard User: pre-authorized for the app, but no Dev Hub object permissions


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Phases 1–4 (the admin and a Standard User verified) on a connected app."""
    workdir = run_phases(tmp_path_factory.mktemp("proof"), phases=["certificate", "connected_app", "access"],
                         profiles=["System Administrator", "Standard User"])
    session = connect("local", workdir=workdir)
    handoff = verify_setup(session, workdir=workdir, usernames=[ADMIN_USERNAME, DEV])
    return workdir, session, handoff


def test_the_proof_creates_queries_and_deletes_a_scratch_org_and_records_it(hub):
    workdir, session, handoff = hub
    proof = prove_scratch_org(session, handoff, workdir=workdir)
    assert proof.ran and proof.result == "created, queried and deleted"
    assert list(proof.steps) == ["hub login", "insert ScratchOrgInfo", "signup (poll until Active)",
                                 "scratch org login", "query Organization", "delete"]
    assert proof.hub_username == ADMIN_USERNAME and proof.signup_consumer_key == handoff.consumer_key
    assert proof.scratch_org_id.startswith("00D") and proof.scratch_username.startswith("test-")
    assert proof.summary().startswith("created, queried and deleted in ")
    record = open_workdir(workdir).load("verify")
    assert record["scratch_proof"]["scratch_org_id"] == proof.scratch_org_id
    assert "token" not in json.dumps(record["scratch_proof"]).lower()
    active = session.sf.query(f"SELECT Id FROM ActiveScratchOrg WHERE SignupUsername = '{proof.scratch_username}'")
    assert active["totalSize"] == 0  # deleted, as `sf org delete scratch` does


def test_a_rerun_shows_the_earlier_proof_with_no_write_and_on_repeats_it(hub):
    workdir, session, handoff = hub
    first = prove_scratch_org(session, handoff, workdir=workdir)
    calls = len(session.local_org.call_log())
    again = prove_scratch_org(session, handoff, workdir=workdir)
    assert again.reused and again.steps == first.steps and "not repeated" in again.summary()
    assert len(session.local_org.call_log()) == calls  # not even a login
    repeated = prove_scratch_org(session, handoff, workdir=workdir, mode="on")
    assert not repeated.reused and repeated.scratch_org_id != first.scratch_org_id


def test_the_batch_summary_shows_the_proof_in_one_line(hub):
    workdir, session, handoff = hub
    proof = prove_scratch_org(session, handoff, workdir=workdir)
    lines = RunSummary(run_dir=workdir, workdir=workdir, org="local",
                       phases=[PhaseRun("verify", workdir, workdir, 1.0, "done")]).lines()
    assert f"Scratch org:    {proof.summary()}" in lines
    assert any(line.startswith("Scratch org:    created, queried and deleted in ") for line in lines)


def test_off_and_auto_on_a_real_org_skip_the_proof(hub):
    workdir, session, handoff = hub
    assert not prove_scratch_org(session, handoff, workdir=workdir, mode="off").ran
    real = dataclasses.replace(session, is_local=False)
    skipped = prove_scratch_org(real, handoff, workdir=workdir)
    assert not skipped.ran and "daily scratch org allocation" in skipped.result


def test_a_user_without_the_dev_hub_permission_is_refused_with_the_fix(hub):
    workdir, session, handoff = hub
    with pytest.raises(ScratchOrgProofError) as caught:
        prove_scratch_org(session, handoff, workdir=workdir, username=DEV)
    assert caught.value.step == "insert ScratchOrgInfo" and caught.value.code == "NOT_FOUND"
    assert "Scratch Org Infos Read, Create, Edit, Delete" in caught.value.fix and DEV in caught.value.fix


def test_limits_reached_are_refused_before_the_insert_on_a_real_org_and_at_it_on_the_local_one(hub):
    workdir, session, handoff = hub
    org = session.local_org
    used = 6 - session.sf.restful("limits")["DailyScratchOrgs"]["Remaining"]
    org.set_setting("daily_scratch_orgs", used)
    try:
        real = dataclasses.replace(session, is_local=False)
        with pytest.raises(ScratchOrgProofError) as before:
            prove_scratch_org(real, handoff, workdir=workdir, mode="on")
        assert (before.value.step, before.value.code) == ("read /limits", "LIMIT_EXCEEDED")
        assert "DailyScratchOrgs 0 of" in before.value.sf_message and "sf org delete scratch" in before.value.fix
        with pytest.raises(ScratchOrgProofError) as at_insert:
            prove_scratch_org(session, handoff, workdir=workdir, mode="on")
        assert (at_insert.value.step, at_insert.value.code) == ("insert ScratchOrgInfo", "LIMIT_EXCEEDED")
        assert "daily scratch org signup limit" in at_insert.value.sf_message
    finally:
        org.set_setting("daily_scratch_orgs", 6)


@pytest.fixture(scope="module")
def eca_hub(tmp_path_factory):
    workdir = run_phases(tmp_path_factory.mktemp("eca"), phases=["certificate", "connected_app", "access"],
                         app_kind="external_client_app")
    session = connect("local", workdir=workdir)
    return workdir, session, verify_setup(session, workdir=workdir)


def test_an_external_client_app_hub_gets_c1016_without_the_workaround(eca_hub):
    workdir, session, handoff = eca_hub
    with pytest.raises(ScratchOrgProofError) as caught:
        prove_scratch_org(session, handoff, workdir=workdir, workaround=False)
    assert (caught.value.step, caught.value.code) == ("signup", "C-1016")
    assert "PlatformCLI" in caught.value.fix and "SF_SCRATCH_SIGNUP_CONNECTED_APP" in caught.value.fix


def test_an_external_client_app_hub_signs_up_with_the_platform_cli_workaround_and_says_so(eca_hub):
    workdir, session, handoff = eca_hub
    proof = prove_scratch_org(session, handoff, workdir=workdir)
    assert proof.result == "created, queried and deleted" and proof.signup_consumer_key == "PlatformCLI"
    assert "C-1016" in proof.workaround and "External Client App" in proof.workaround
