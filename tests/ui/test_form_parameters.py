"""Each phase's form against its notebook's parameters cell (the one source): a field for every parameter,
pre-filled with the cell's default, and no field the cell does not declare."""

from __future__ import annotations

import pytest

from runbook.phases import PHASE_NAMES, phase_named
from runbook.phases.parameters import phase_parameters
from runbook.ui import access_form, certificate_form, connected_app_form, verify_form

FORMS = {"certificate": certificate_form, "connected_app": connected_app_form, "access": access_form,
         "verify": verify_form}
# `apply` is the form's own two buttons (Preview plan = apply False, Apply = apply True), so it has no field.
# `org` and `workdir` are fields like any other and are checked too; the work folder is given (an empty one of
# the test's own), so only its value differs from the cell's "work".
BUTTONS = {"apply"}


def test_every_phase_has_a_form():
    assert set(FORMS) == set(PHASE_NAMES)


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_form_has_every_parameter_of_its_notebook_with_the_cells_default(phase, tmp_path):
    cell = {name: p.default for name, p in phase_parameters(phase_named(phase)).items() if name not in BUTTONS}
    cell["workdir"] = str(tmp_path)
    form = FORMS[phase](workdir=str(tmp_path))
    missing = [name for name in cell if name not in form.fields]
    assert missing == [], f"the {phase} form has no field for these parameters of its notebook: {missing}"
    extra = [name for name in form.fields if name not in cell]
    assert extra == [], f"the {phase} form has fields its notebook's parameters cell does not declare: {extra}"
    shown = form.values()
    differ = {name: (shown[name], default) for name, default in cell.items() if shown[name] != default}
    assert differ == {}, f"the {phase} form's defaults (form, parameters cell) differ: {differ}"
