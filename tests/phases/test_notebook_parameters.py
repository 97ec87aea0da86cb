"""The notebooks' parameters cells: papermill must see every parameter a reader sees."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent.parent / "notebooks").glob("0[1-4]_*.ipynb"))
STABLE_NAMES = {"org", "workdir", "key_path", "cert_path", "app_name", "contact_email", "callback_port", "scopes",
                "profiles", "permission_sets", "username"}


def _declared(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {target.id for node in ast.parse(cell.source).body for target in node.targets}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_declared_parameter(notebook):
    # papermill silently drops a line with a second "=" (e.g. in a comment); -p would then be ignored
    assert set(papermill.inspect_notebook(str(notebook))) == _declared(notebook)


def test_the_stable_parameter_names_exist():
    declared = set().union(*(_declared(p) for p in NOTEBOOKS))
    assert declared >= STABLE_NAMES, STABLE_NAMES - declared
