"""Run All after an Apply: the form remembers what it applied that the parameters cell does not say, and says
so the next time it is shown, with both values, the fields filled with what it applied, and the lines to paste."""

from __future__ import annotations

import ast
import json
import re
import stat
from html import unescape

import pytest

from runbook.run.env import BATCH_ENV
from runbook.ui import FormPlaceholder, certificate_form, connected_app_form
from runbook.ui.applied import python_literal, record_path


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _copied(html: str) -> list[str]:
    """What each Copy button in ``html`` puts on the clipboard (the attribute as the browser decodes it)."""
    return [unescape(value) for value in re.findall(r'data-copy="([^"]*)"', html)]


def _cell(workdir) -> dict:
    """The parameters cell's variables after Run All (the callback port "auto": 1717 may be busy here)."""
    return {"workdir": str(workdir), "callback_port": "auto", "contact_email": "admin@example.com"}


@pytest.fixture
def applied(tmp_path):
    """Phase 2 applied through its form with another contact email than its parameters cell says."""
    workdir = tmp_path / "work"
    certificate_form(workdir=str(workdir)).apply()
    ns = _cell(workdir)
    form = connected_app_form(ns)
    form.fields["contact_email"].widget.value = "ci@example.com"
    assert form.apply() is not None, form.status.value
    return workdir, ns, form


def test_apply_records_only_what_differs_from_the_parameters_cell(applied):
    workdir, ns, _form = applied
    path = record_path(workdir, "connected_app")
    assert path == workdir.resolve() / "forms" / "connected_app.json"
    assert json.loads(path.read_text()) == {"phase": "connected_app", "applied": {"contact_email": "ci@example.com"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert ns["contact_email"] == "ci@example.com"  # the kernel has it until the parameters cell runs again


def test_run_all_after_apply_names_both_values_prefills_the_field_and_gives_the_lines(applied):
    workdir, _ns, _form = applied
    ns = _cell(workdir)  # Run All: the parameters cell ran first
    form = connected_app_form(ns)
    notice = form.notice.value
    assert ("contact_email: the form applied ci@example.com, the parameters cell says admin@example.com"
            in _text(notice))
    assert form.fields["contact_email"].widget.value == "ci@example.com"
    assert 'contact_email = "ci@example.com"' in _text(notice)
    assert _copied(notice) == ['contact_email = "ci@example.com"']
    assert ns["contact_email"] == "admin@example.com"  # the cells below the form use the cell's value


def test_no_warning_once_the_cell_says_what_was_applied_and_a_matching_apply_drops_the_record(applied):
    workdir, _ns, _form = applied
    ns = {**_cell(workdir), "contact_email": "ci@example.com"}  # the lines were pasted into the cell
    form = connected_app_form(ns)
    assert form.notice.value == ""
    assert form.apply() is not None, form.status.value
    assert not record_path(workdir, "connected_app").exists()


def test_the_warning_appears_right_after_the_apply_that_makes_the_cell_differ(applied):
    _workdir, _ns, form = applied
    assert "the form applied ci@example.com, the parameters cell says admin@example.com" in _text(form.notice.value)


def test_a_rotation_is_not_remembered(tmp_path):
    ns = {"workdir": str(tmp_path / "work")}
    form = certificate_form(ns)
    form.apply()
    form.fields["rotate"].widget.value = True
    assert form.apply().result.action == "rotated"
    assert not record_path(tmp_path / "work", "certificate").exists()  # done once: nothing to carry over
    assert certificate_form({"workdir": str(tmp_path / "work")}).notice.value == ""


def test_batch_kernels_neither_read_nor_write_the_record(applied, monkeypatch):
    workdir, _ns, _form = applied
    path = record_path(workdir, "connected_app")
    before = path.read_bytes()
    monkeypatch.setenv(BATCH_ENV, "1")
    assert isinstance(connected_app_form(_cell(workdir)), FormPlaceholder)
    assert path.read_bytes() == before


@pytest.mark.parametrize("value", ['ci "team"@example.com', "Équipe CI", "", ["api", "web"], [], True, 1717,
                                   "auto", "back\\slash"])
def test_the_lines_to_paste_are_python_giving_the_applied_value(value):
    assert ast.literal_eval(python_literal(value)) == value
