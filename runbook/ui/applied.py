"""What a form applied that its notebook's parameters cell does not say, kept for the next time it is shown.

Run All runs the parameters cell first: the values a form applied and wrote back into the kernel are
replaced by the cell's, and the cells below the form then use those. A kernel cannot change the cell
itself: in JupyterLab the notebook document lives in the frontend, and a kernel reaches it only through a
frontend extension, which the runbook does not need or install. So after an Apply the form records the
applied values that differ from the parameters cell in ``<workdir>/forms/<phase>.json`` (the work folder
the cell names; mode 0644, written atomically), and when it is shown again with a cell that still
differs, it names each such parameter with both values, fills its fields with what it applied, and gives
the lines to paste into the cell. Not a secret ever lands there: no parameter is one (a key's passphrase
is named by its variable, passwords come from the environment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from runbook.phases.cards import copy_button
from runbook.work.files import PUBLIC, write_atomic
from runbook.work.workdir import open_workdir


@dataclass(frozen=True)
class Drift:
    """One parameter a form applied with another value than the parameters cell has."""

    name: str
    applied: Any
    cell: Any

    def sentence(self) -> str:
        return f"{self.name}: the form applied {_shown(self.applied)}, the parameters cell says {_shown(self.cell)}"

    def line(self) -> str:
        """The parameters cell's line that makes the cell say what the form applied."""
        return f"{self.name} = {python_literal(self.applied)}"


def record_path(workdir: str | Path, phase: str) -> Path:
    return open_workdir(workdir).root / "forms" / f"{phase}.json"


def remember(phase: str, applied: dict[str, Any], cell: dict[str, Any]) -> Path:
    """Record the ``applied`` values that differ from the ``cell``'s (none: the record is removed)."""
    path = record_path(cell["workdir"], phase)
    differ = {name: _plain(value) for name, value in applied.items()
              if name in cell and _plain(value) != _plain(cell[name])}
    if differ:
        write_atomic(path, json.dumps({"phase": phase, "applied": differ}, indent=2) + "\n", PUBLIC)
    else:
        path.unlink(missing_ok=True)
    return path


def drift(phase: str, cell: dict[str, Any]) -> list[Drift]:
    """The parameters the form last applied with other values than ``cell`` has now, in the cell's order."""
    path = record_path(cell["workdir"], phase)
    if not path.is_file():
        return []
    applied = json.loads(path.read_text()).get("applied", {})
    return [Drift(name, applied[name], value) for name, value in cell.items()
            if name in applied and applied[name] != _plain(value)]


def python_literal(value: Any) -> str:
    """``value`` as a parameters cell writes it: double-quoted strings, True/False, lists."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a Python string literal too
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    return repr(value)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) and value else python_literal(value)


def _plain(value: Any) -> Any:
    """``value`` as the record holds it (tuples are lists), so a value and its record compare equal."""
    return json.loads(json.dumps(value, default=str))


def notice_html(drifts: list[Drift]) -> str:
    """The warning a form shows above its fields while its parameters cell differs from what it applied."""
    if not drifts:
        return ""
    items = "".join(f"<li>{escape(d.sentence())}</li>" for d in drifts)
    lines = "\n".join(d.line() for d in drifts)
    return ("<div class='runbook-drift' style='border:1px solid #d4a72c;background:#fff8c5;border-radius:6px;"
            "padding:6px 10px;margin:4px 0'><b>⚠ This form applied values the parameters cell does not have"
            f"</b><ul style='margin:4px 0'>{items}</ul>Run All runs the parameters cell first, and the "
            "cells below this form then use its values. The fields below hold what the form applied; to keep "
            "it, paste these lines at the end of the parameters cell (a kernel cannot edit a notebook's cells):"
            f"<pre class='runbook-drift-lines' style='margin:4px 0'>{escape(lines)}</pre>{copy_button(lines)}</div>")
