"""The public API: every name ``runbook.__all__`` lists resolves, is documented, and ``import runbook`` loads none of
the heavy modules until a name is used."""

from __future__ import annotations

import subprocess
import sys

import runbook


def test_every_public_name_resolves_to_a_documented_object():
    for name in runbook.__all__:
        value = getattr(runbook, name)
        if name != "__version__" and name != "PHASES":
            assert (value.__doc__ or "").strip(), f"runbook.{name} has no docstring"
    assert {p.name for p in runbook.PHASES} == {"certificate", "connected_app", "access", "verify"}
    assert issubclass(runbook.ParameterProblems, runbook.RunbookError)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    try:
        runbook.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("runbook.no_such_thing resolved")


def test_importing_runbook_loads_no_phase_client_or_notebook_machinery():
    code = ("import sys, runbook; heavy = [m for m in ('runbook.phases.verify', 'runbook.run.batch', 'requests', "
            "'cryptography', 'papermill', 'simple_salesforce') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
