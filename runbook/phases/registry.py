"""The phase registry: the one list of the runbook's phases, in order.

Each phase is a notebook (``notebooks/<notebook>``) whose work the package does, and a record of the
same name in the work folder (``<workdir>/phases/<name>.json``). The batch, fleets, the overview, the
work folder's resume and teardown all read this list; nothing else names the notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Phase:
    """One phase: its name (also its record's), its notebook and its title as the overview shows it."""

    name: str
    notebook: str
    title: str

    @property
    def path(self) -> Path:
        return notebooks_dir() / self.notebook


PHASES: tuple[Phase, ...] = (
    Phase("certificate", "01_certificate.ipynb", "1. Certificate"),
    Phase("connected_app", "02_connected_app.ipynb", "2. Connected app"),
    Phase("access", "03_policies_and_access.ipynb", "3. Policies and access"),
    Phase("verify", "04_verify.ipynb", "4. Verify and hand over"),
)
PHASE_NAMES = tuple(p.name for p in PHASES)


def notebooks_dir() -> Path:
    """The phase notebooks: shipped inside the package, or the checkout's notebooks/ folder."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "notebooks"
    return packaged if packaged.is_dir() else package.parent / "notebooks"


def phase_named(name: str) -> Phase:
    return next(p for p in PHASES if p.name == name)


def after(name: str) -> tuple[Phase, ...]:
    """The phases that come after ``name`` (they build on its record)."""
    index = PHASE_NAMES.index(name)
    return PHASES[index + 1:]
