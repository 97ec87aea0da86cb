"""Atomic file writes with explicit modes, so a crash never leaves half a key on disk."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644


def _write_temp(path: Path, data: bytes | str, mode: int) -> str:
    """Write ``data`` to a temp file beside ``path``, chmod'ed before the first byte lands."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _place(path: Path, data: bytes | str, mode: int, move) -> Path:
    """Write a temp file beside ``path`` and ``move`` it into place; the temp file never outlives the call."""
    path = Path(path)
    tmp = _write_temp(path, data, mode)
    try:
        move(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def write_atomic(path: Path, data: bytes | str, mode: int = PRIVATE) -> Path:
    """Replace ``path`` with ``data`` all-or-nothing (temp file + rename), with ``mode``."""
    return _place(path, data, mode, os.replace)


def write_new_atomic(path: Path, data: bytes | str, mode: int = PRIVATE) -> Path:
    """Create ``path`` all-or-nothing; ``FileExistsError`` if it exists, so no key is clobbered."""
    return _place(path, data, mode, os.link)
