"""Phase 3's form with a least-privilege CI user: the notebook's cells in order (ensure_ci_user, then its
permission set pre-authorized with the others), against the local org."""

from __future__ import annotations

import re
from html import unescape

import pytest

from runbook.phases.ci_user import CI_PERMISSION_SET
from runbook.salesforce import connect, start_local_org
from runbook.salesforce.rest import query
from runbook.ui import access_form, certificate_form, connected_app_form

NEW_CI = "runbook-ci@local.devhub"  # not seeded: the form creates it


def _text(html: str) -> str:
    """An HTML widget's value as the user reads it, table cells apart: tags dropped, entities decoded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture(scope="module")
def app_workdir(tmp_path_factory):
    """Phases 1 and 2 applied through their forms; the org and the work folder."""
    workdir = tmp_path_factory.mktemp("access") / "work"
    org = start_local_org(workdir / "localorg")
    for make in (certificate_form, connected_app_form):
        form = make(workdir=str(workdir), **({"callback_port": "auto"} if make is connected_app_form else {}))
        assert form.apply() is not None, form.status.value
    return workdir, org


def test_a_ci_user_that_is_no_username_is_refused_beside_its_field(app_workdir):
    workdir, _org = app_workdir
    form = access_form(workdir=str(workdir), ci_user="ci at example")
    assert "ci_user='ci at example' is not valid" in _text(form.fields["ci_user"].message.value)
    assert form.apply_button.disabled


def test_the_form_creates_the_ci_user_and_pre_authorizes_its_permission_set(app_workdir):
    workdir, org = app_workdir
    ns = {"workdir": str(workdir), "ci_user": NEW_CI}
    form = access_form(ns)
    before = len(org.call_log())
    form.preview()
    plan = _text(form.plan.value)
    assert f"would create user {NEW_CI}" in plan  # the preview names what Apply creates, and writes nothing
    assert [c.operation for c in org.call_log()[before:] if c.is_write] == []

    outcome = form.apply()
    assert outcome is not None, form.status.value
    assert ns["ci"].username == NEW_CI and f"user {NEW_CI}" in ns["ci"].created[0]
    assert ns["permission_sets"] == [CI_PERMISSION_SET]  # as the notebook's cell leaves the variable
    assert CI_PERMISSION_SET in ns["access"].permission_sets
    result = _text(form.result.value)
    assert f"CI user {NEW_CI}" in result and f"Pre-authorized permission sets {CI_PERMISSION_SET}" in result
    assert f"CI user {NEW_CI}: user {NEW_CI}" in _text(form.status.value)
    session = connect("local", workdir=workdir)
    users = query(session, f"SELECT Id FROM User WHERE Username = '{NEW_CI}'")
    sets = query(session, f"SELECT Id FROM PermissionSet WHERE Name = '{CI_PERMISSION_SET}'")
    held = query(session, f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{users[0]['Id']}' "
                          f"AND PermissionSetId = '{sets[0]['Id']}'")
    assert len(held) == 1

    before = len(org.call_log())
    again = access_form(workdir=str(workdir), ci_user=NEW_CI)
    assert again.apply() is not None, again.status.value
    assert f"CI user {NEW_CI}: already in place" in _text(again.status.value)
    assert [c.operation for c in org.call_log()[before:] if c.is_write] == []
