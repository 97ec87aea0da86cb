"""``runbook init DIR``: copy the notebooks and a sample runbook.yaml into a folder of the user's.

The copies are the user's to edit: a file that is already there and differs from the shipped one is kept
(and reported) unless ``force`` is set; an identical one is left alone.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from runbook.phases import notebooks_dir

SAMPLE_CONFIG = Path(__file__).parent / "runbook.yaml"


@dataclass
class InitResult:
    folder: Path
    copied: list[str] = field(default_factory=list)  # new, or overwritten with force
    unchanged: list[str] = field(default_factory=list)  # already identical to the shipped file
    kept: list[str] = field(default_factory=list)  # the user's edited copy, left alone

    def lines(self) -> list[str]:
        out = [f"copied     {name}" for name in self.copied]
        out += [f"unchanged  {name}" for name in self.unchanged]
        out += [f"kept       {name} (yours differs from the shipped one; --force overwrites it)" for name in self.kept]
        return out


def shipped_files() -> list[Path]:
    """The files `runbook init` copies: the notebooks 00-04 and the sample runbook.yaml."""
    return [*sorted(notebooks_dir().glob("0[0-9]_*.ipynb")), SAMPLE_CONFIG]


def init_folder(folder: str | Path, *, force: bool = False) -> InitResult:
    """Copy the shipped files into ``folder`` (created if needed), never over an edited copy unless ``force``."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    result = InitResult(folder.resolve())
    for source in shipped_files():
        target = folder / source.name
        if target.exists() and target.read_bytes() == source.read_bytes():
            result.unchanged.append(source.name)
        elif target.exists() and not force:
            result.kept.append(source.name)
        else:
            shutil.copyfile(source, target)
            result.copied.append(source.name)
    return result
