"""Committed notebooks are sources: no outputs, no execution counts, a parameters cell, no secret parameter.

An output committed by accident carries whatever the author's run printed (an org id, a token, a key);
a parameter named like a secret invites a user to pass one, and papermill copies parameters into the
executed notebook twice. The rule for "named like a secret" is the scanner's (``runbook.scan``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from runbook.scan import scan_paths, secret_parameter_names

REPO = Path(__file__).parent.parent
# runbook/notebooks may be a link to notebooks/ (the packaged copy): each notebook is checked once
FOLDERS = [REPO / "notebooks", REPO / "runbook" / "notebooks"]
NOTEBOOKS = sorted({path.resolve() for folder in FOLDERS if folder.is_dir() for path in folder.glob("*.ipynb")})


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    return next((c for c in _code_cells(nb) if "parameters" in c.metadata.get("tags", [])), None)


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(notebook):
    nb = _read(notebook)
    with_outputs = [index for index, cell in enumerate(nb.cells) if cell.get("outputs")]
    assert with_outputs == [], f"{notebook.name}: clear the outputs of cells {with_outputs} before committing"
    # saved widget state is an output too: it keeps what the forms showed
    assert "widgets" not in nb.metadata, f"{notebook.name}: saved widget state in the metadata"
    assert "papermill" not in nb.metadata, f"{notebook.name}: an executed notebook was committed"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_execution_counts(notebook):
    counted = [index for index, cell in enumerate(_read(notebook).cells) if cell.get("execution_count") is not None]
    assert counted == [], f"{notebook.name}: cells {counted} were run before committing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_a_parameters_cell(notebook):
    assert _parameters_cell(_read(notebook)) is not None, \
        f"{notebook.name}: tag a code cell 'parameters' so papermill can inject -p values"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_declares_no_secret_parameter(notebook):
    cell = _parameters_cell(_read(notebook))
    assert cell is not None
    assert secret_parameter_names(cell.source) == [], \
        f"{notebook.name}: take the secret from the environment and name the variable (e.g. passphrase_env)"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_holds_no_secret(notebook):
    assert [str(f) for f in scan_paths([notebook])] == []
