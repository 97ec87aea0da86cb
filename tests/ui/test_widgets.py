"""The phase forms without a browser: the same widgets, driven from Python, against the local org."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import ipywidgets as w
import pytest

from runbook.localorg import ADMIN_USERNAME
from runbook.run.env import BATCH_ENV
from runbook.salesforce import connect, start_local_org
from runbook.ui import FormPlaceholder, access_form, certificate_form, connected_app_form, verify_form


def _text(html: str) -> str:
    """An HTML widget's value as the user reads it: tags dropped, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def _state(form) -> dict:
    """What a user sees: the status line's state and text, and the result card's text."""
    line = form.status.value
    return {"state": line.split("data-state='")[1].split("'")[0], "status": _text(line),
            "result": _text(form.result.value)}


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def org(workdir):
    return start_local_org(workdir / "localorg")


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """The four forms applied in order, one notebook namespace each, as a person would; shared, read-only."""
    workdir = tmp_path_factory.mktemp("forms") / "work"
    org = start_local_org(workdir / "localorg")
    spaces, forms = [], []
    for make in (certificate_form, connected_app_form, access_form, verify_form):
        ns = {"workdir": str(workdir), "callback_port": "auto"}  # "auto": 1717 may be busy on this machine
        form = make(ns)
        outcome = form.apply()
        assert outcome is not None, form.status.value
        spaces.append(ns)
        forms.append(form)
    return workdir, org, spaces, forms


def test_form_is_prefilled_from_the_notebook_variables(workdir):
    ns = {"workdir": str(workdir), "app_name": "Team_CI", "label": "Team CI", "contact_email": "team@example.com",
          "callback_port": "auto", "scopes": ["api", "refresh_token offline_access"], "unrelated": 1}
    form = connected_app_form(ns)
    values = form.values()
    assert values["app_name"] == "Team_CI" and values["label"] == "Team CI"
    assert values["callback_port"] == "auto"
    assert values["scopes"] == ["api", "refresh_token offline_access"]
    assert values["org"] == "local"  # not in the namespace: the notebook's default


def test_keyword_arguments_override_the_namespace(workdir):
    form = access_form({"workdir": str(workdir), "profiles": ["Standard User"]}, profiles=["System Administrator"],
                       exclusive=True)
    assert form.values()["profiles"] == ["System Administrator"]
    assert form.values()["exclusive"] is True


def test_invalid_field_gets_its_message_and_apply_is_disabled(workdir):
    certificate_form(workdir=str(workdir)).apply()
    form = connected_app_form(workdir=str(workdir))
    form.fields["contact_email"].widget.value = "not-an-email"
    assert "contact_email='not-an-email' is not valid" in _text(form.fields["contact_email"].message.value)
    assert form.apply_button.disabled and form.preview_button.disabled
    assert _state(form)["state"] == "invalid"
    assert form.apply() is None
    form.fields["contact_email"].widget.value = "ci@example.com"
    assert form.fields["contact_email"].message.value == ""
    assert not form.apply_button.disabled


def test_app_form_before_phase_one_says_to_run_it(workdir):
    form = connected_app_form(workdir=str(workdir))
    assert "run phase 1 (01_certificate) first" in _text(form.fields["cert_path"].message.value)
    assert form.apply_button.disabled


def test_showing_and_checking_the_forms_calls_nothing_in_the_org(workdir, org):
    certificate_form(workdir=str(workdir)).apply()
    before = len(org.call_log())
    for make in (connected_app_form, access_form, verify_form):
        form = make(workdir=str(workdir))
        form.fields["workdir"].widget.value = str(workdir) + "/"  # a change re-validates: still local only
    assert org.call_log()[before:] == []


def test_forms_set_up_the_app_and_write_back_into_the_notebook(applied):
    workdir, _org, spaces, forms = applied
    cert_ns, app_ns, access_ns, verify_ns = spaces
    assert cert_ns["certificate"].action == "generated"
    consumer_key = app_ns["app"].consumer_key
    assert consumer_key and app_ns["plan"].action == "create"
    assert f"Consumer key</th><td>{consumer_key}" in forms[1].result.value
    assert _state(forms[1])["status"] == f"✓ Created connected app Runbook_CI — consumer key {consumer_key}"
    assert access_ns["access"].profiles == ["System Administrator"]
    assert verify_ns["handoff"].logins[0].username == ADMIN_USERNAME
    assert "data-state='done'" in forms[3].status.value
    assert forms[3].result.value.count("data-state='done'") == 4  # the overview under the result
    session = connect("local", workdir=workdir)
    from runbook.salesforce import metadata

    assert metadata.read(session, "ConnectedApp", "Runbook_CI")["oauthConfig"]["consumerKey"] == consumer_key


def test_verify_form_shows_the_scratch_org_proof_on_the_hand_off_card_as_the_notebook_does(applied):
    _workdir, _org, spaces, forms = applied
    verify_ns = spaces[3]
    assert verify_ns["proof"].ran  # "auto": the local org
    assert verify_ns["handoff"].scratch_org_proof.startswith(verify_ns["proof"].summary())
    assert f"Scratch org proof{verify_ns['handoff'].scratch_org_proof}" in _text(forms[3].result.value)


def test_second_apply_changes_nothing(applied):
    workdir, org, _spaces, _forms = applied
    before = len(org.call_log())
    form = connected_app_form(workdir=str(workdir), callback_port="auto")
    outcome = form.apply()
    assert outcome.names["plan"].action == "none"
    assert _state(form)["status"] == f"✓ Up to date, nothing changed: connected app Runbook_CI — consumer key " \
        f"{outcome.result.consumer_key}"
    assert [c.operation for c in org.call_log()[before:] if c.is_write] == []


def test_rotation_is_done_once_and_the_box_is_cleared(workdir):
    ns = {"workdir": str(workdir)}
    form = certificate_form(ns)
    form.apply()
    form.fields["rotate"].widget.value = True
    assert "Rotate: copy the current pair" in _text(form.plan.value)
    assert form.apply().result.action == "rotated"
    assert form.fields["rotate"].widget.value is False and ns["rotate"] is False
    assert form.apply().result.action == "reused"


def test_refused_login_shows_the_cause_and_fix_in_the_status_line(applied):
    workdir, _org, _spaces, _forms = applied
    form = verify_form(workdir=str(workdir), username="dev@local.devhub")
    assert form.apply() is None
    seen = _state(form)
    assert seen["state"] == "failed"
    assert "invalid_app_access: user is not admin approved to access this app" in seen["status"]
    assert "Fix: add the user's profile" in seen["status"]
    assert form.apply_button.disabled is False  # the user can correct the field and try again


def test_no_secret_in_any_widget_state(applied):
    workdir, org, _spaces, _forms = applied
    password = json.loads((Path(org.state_dir) / "admin-credentials.json").read_text())["password"]
    key_body = (workdir / "keys" / "server.key").read_text().splitlines()[1]
    token = connect("local", workdir=workdir).access_token
    states = json.dumps(w.Widget.get_manager_state(drop_defaults=False))
    for secret in (password, key_body, token):
        assert secret not in states


def test_form_output_without_a_frontend_names_the_form(workdir):
    bundle = certificate_form(workdir=str(workdir))._repr_mimebundle_()
    assert bundle["text/plain"] == "[certificate form: open this notebook in JupyterLab to use it]"
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_batch_kernel_gets_a_one_line_placeholder_and_no_widgets(workdir, monkeypatch):
    monkeypatch.setenv(BATCH_ENV, "1")  # what `runbook run` puts in its kernels' environment
    for phase, make in (("certificate", certificate_form), ("connected_app", connected_app_form),
                        ("access", access_form), ("verify", verify_form)):
        form = make({"workdir": str(workdir)})
        assert isinstance(form, FormPlaceholder)
        assert form._repr_mimebundle_() == {"text/plain": f"[{phase} form: open this notebook in JupyterLab to use it]"}


def test_importing_the_forms_does_not_import_ipywidgets():
    code = "import sys, runbook.ui; print('ipywidgets' in sys.modules, 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]  # imported when a form is built, never in a batch kernel


def test_verify_form_logs_in_each_listed_user_and_writes_them_back(applied):
    workdir, _org, _spaces, _forms = applied
    ns = {"workdir": str(workdir), "usernames": [ADMIN_USERNAME], "web_flow": "off"}
    form = verify_form(ns)
    assert form.values()["usernames"] == [ADMIN_USERNAME] and form.values()["web_flow"] == "off"
    outcome = form.apply()
    assert outcome is not None, form.status.value
    assert [lr.username for lr in ns["handoff"].logins] == [ADMIN_USERNAME]
    assert ns["usernames"] == [ADMIN_USERNAME] and f"JWT login as {ADMIN_USERNAME} works" in _state(form)["status"]
    form.fields["usernames"].widget.value = "nobody@local.devhub"
    assert form.apply() is None  # refused by the org: the status line says why, nothing is written back
    assert "nobody@local.devhub" not in str(ns["usernames"])


def _labelled(form, label: str):
    """The field a user finds by its label."""
    return next(f for f in form.fields.values() if f.widget.description == label)


def test_verify_form_log_in_as_takes_a_comma_list(applied):
    workdir, _org, _spaces, _forms = applied
    form = verify_form(workdir=str(workdir), web_flow="off")
    _labelled(form, "Log in as").widget.value = f"{ADMIN_USERNAME}, dev@local.devhub"
    assert "Log in as (sub)" in _text(form.plan.value) and f"{ADMIN_USERNAME}, dev@local.devhub" in \
        _text(form.plan.value)
    assert form.apply() is None
    status = _state(form)["status"]  # the admin logged in; the second user of the list was tried as itself
    assert "invalid_app_access: user is not admin approved" in status and "dev@local.devhub is not pre-authorized" \
        in status


def test_verify_form_flags_a_login_url_that_is_not_salesforce_beside_the_field(applied):
    workdir, org, _spaces, _forms = applied
    form = verify_form(workdir=str(workdir))
    before = len(org.call_log())
    form.fields["login_url"].widget.value = "https://login.salesforce.con"
    assert "did you mean https://login.salesforce.com?" in _text(form.fields["login_url"].message.value)
    assert form.apply_button.disabled and org.call_log()[before:] == []
