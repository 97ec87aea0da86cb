"""The work folder: where each phase leaves what the next one needs (never a secret).

Layout::

    <workdir>/keys/server.key      private key, mode 0600
    <workdir>/keys/server.crt      certificate, mode 0644
    <workdir>/phases/<phase>.json  what the phase did: paths, names, consumer key, status
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.files import PUBLIC, write_atomic

PHASES = ("certificate", "connected_app", "access", "verify")


@dataclass(frozen=True)
class Workdir:
    """A phase-record store rooted at one folder."""

    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    def record_path(self, phase: str) -> Path:
        return self.root / "phases" / f"{phase}.json"

    def save(self, phase: str, data: dict[str, Any]) -> Path:
        """Record a phase's outcome; atomic, so a crash leaves the previous record intact."""
        return write_atomic(self.record_path(phase), json.dumps(data, indent=2, default=str) + "\n", PUBLIC)

    def load(self, phase: str) -> dict[str, Any] | None:
        """The phase's last record, or None if it never completed here."""
        path = self.record_path(phase)
        if not path.is_file():
            return None
        return json.loads(path.read_text())


def open_workdir(workdir: str | Path) -> Workdir:
    """The work folder for ``workdir`` (created lazily, on first write)."""
    return Workdir(Path(workdir).expanduser().resolve())
