"""Atomic file writes and folders with explicit modes, whatever the umask, so a crash never leaves half
a key on disk and nothing the runbook makes is readable by others by accident.

A write goes to a temp file beside its target, named ``.<target>.<pid>.<random>.tmp``, then is
renamed or linked into place. A process killed in between leaves that temp file behind (for a key:
a second copy of the private key); the pid in its name tells the next write, or phase 1, that its
writer is gone, and ``remove_stale_temps`` deletes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644
PRIVATE_DIR = 0o700
TEMP_SUFFIX = ".tmp"
# what follows ".<target>." in a temp file's name: "<pid>.<mkstemp's random part>", or, from
# versions before the pid was added, the random part alone (mkstemp never puts a dot in it)
_TEMP_TAIL = re.compile(r"(?:(?P<pid>\d+)\.)?[^.]+")
_TEMP_NAME = re.compile(r"\..+\.[^.]+" + re.escape(TEMP_SUFFIX))  # .<target>[.<pid>].<random>.tmp


def make_private_dir(path: Path, *, tighten: bool = False, exist_ok: bool = True) -> Path:
    """``path`` as a folder, creating it and each missing parent with mode 0700, whatever the umask.

    A folder that already exists keeps its mode (a user's home or project folder is theirs to set),
    unless ``tighten``: then ``path`` itself is set to 0700 (a folder only the runbook reads, such as
    the local org's state). ``exist_ok=False`` raises FileExistsError if ``path`` exists, as mkdir does.
    """
    path = Path(path)
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    if not missing and not exist_ok:
        raise FileExistsError(f"{path} exists already")
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another process: its mode is that process's
            continue
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode went through the umask, which may have taken bits off
    if tighten:
        os.chmod(path, PRIVATE_DIR)
    return path


def create_with_mode(path: Path, mode: int = PRIVATE) -> Path:
    """``path`` created empty (or kept as it is) with exactly ``mode``, its folders made as by make_private_dir.

    For files another library writes with a plain ``open(path, "w")`` (papermill's executed notebooks):
    opening an existing file for writing keeps its mode, so they are written with ``mode`` instead of
    0666 minus the umask.
    """
    path = Path(path)
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_temps(path: Path) -> list[Path]:
    """The temp files of writes to ``path`` whose writing process is gone (a crash between write and rename)."""
    path = Path(path)
    prefix = f".{path.name}."
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for candidate in path.parent.iterdir():
            name = candidate.name
            if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
                continue
            tail = _TEMP_TAIL.fullmatch(name[len(prefix):-len(TEMP_SUFFIX)])
            if tail is None:
                continue  # a temp file of another target whose name starts with this one's
            pid = tail.group("pid")
            if pid is None or (int(pid) != os.getpid() and not _pid_alive(int(pid))):
                found.append(candidate)
    return sorted(found)


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete the temp files crashed writes to ``path`` left behind; returns the ones deleted."""
    removed = []
    for temp in stale_temps(path):
        with contextlib.suppress(FileNotFoundError):  # another run removed it first
            temp.unlink()
            removed.append(temp)
    return removed


def is_write_temp(path: Path) -> bool:
    """Whether ``path`` is named like the temp file of an atomic write (``.<target>.<pid>.<random>.tmp``)."""
    return _TEMP_NAME.fullmatch(Path(path).name) is not None


def _write_temp(path: Path, data: bytes | str, mode: int) -> str:
    """Write ``data`` to a temp file beside ``path``, chmod'ed before the first byte lands."""
    make_private_dir(path.parent)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
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


def _place(path: Path, data: bytes | str, mode: int, move: Callable[[str, Path], None]) -> Path:
    """Write a temp file beside ``path`` and ``move`` it into place; the temp file never outlives the call."""
    path = Path(path)
    remove_stale_temps(path)
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
