"""The work folder: where each phase leaves what the next one needs (never a secret).

Layout (folders the runbook makes are 0700, whatever the umask)::

    <workdir>/keys/server.key      private key, mode 0600
    <workdir>/keys/server.crt      certificate, mode 0644
    <workdir>/phases/<phase>.json  what the phase did: paths, names, consumer key, status
    <workdir>/.lock                the pid of the run holding the folder (``Workdir.lock``)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.errors import RunbookError
from runbook.work.files import PUBLIC, make_private_dir, write_atomic

DEFAULT_WORKDIR = "work"  # the notebooks' ``workdir`` default too (a test holds them equal)
PROJECT_DIR_ENV = "RUNBOOK_PROJECT_DIR"  # set by `make lab` for its kernels: what a relative workdir is under
LOCK_NAME = ".lock"
LOCK_WAIT = 5.0  # seconds a run waits for another run to finish with the work folder before refusing
_LOCK_POLL = 0.1


class WorkdirBusy(RunbookError):
    """Another run holds the work folder; ``pid`` is its process id (None if it had not written it yet)."""

    def __init__(self, root: Path, pid: int | None, waited: float):
        self.root = root
        self.pid = pid
        who = f"another runbook run (pid {pid})" if pid else "another runbook run"
        stop = f" (or stop it: kill {pid})" if pid else ""
        super().__init__(f"The work folder {root} is in use by {who}; waited {waited:.0f} s for it. Fix: wait "
                         f"for that run to finish{stop}, or give this run another --workdir.")


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

    def last_run(self, phase: str) -> dict[str, Any] | None:
        """The phase's last run as the batch recorded it (its inputs and outcome), or None."""
        return self.load(f"{phase}.run")

    def record_run(self, phase: str, data: dict[str, Any]) -> Path:
        return self.save(f"{phase}.run", data)

    @contextlib.contextmanager
    def lock(self, *, wait: float = LOCK_WAIT) -> Iterator[Workdir]:
        """Hold the work folder for one run: two runs at once would each make a key, an app, a record.

        Waits up to ``wait`` seconds for a run holding it to finish, then raises WorkdirBusy naming
        that run's pid. The lock is an ``flock`` on ``<workdir>/.lock``, so the kernel drops it when
        the holder exits, even by kill -9: a crashed run never leaves the folder locked. A process
        holds it once; taking it again in the same process waits like any other taker.
        """
        make_private_dir(self.root)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PUBLIC)
        try:
            _acquire(fd, self.root, wait)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield self
            finally:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the flock


def _acquire(fd: int, root: Path, wait: float) -> None:
    """Take the flock on ``fd``, polling for at most ``wait`` seconds; WorkdirBusy after that."""
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited >= wait:
                raise WorkdirBusy(root, _holder_pid(fd), waited) from None
            time.sleep(min(_LOCK_POLL, wait - waited))


def _holder_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def resolve_workdir(workdir: str | Path) -> Path:
    """``workdir`` as an absolute path: a relative one is under ``$RUNBOOK_PROJECT_DIR`` when that is set.

    A notebook's kernel runs in the notebook's folder, so under `make lab` the notebooks' ``workdir = "work"``
    would be ``notebooks/work``, another folder than the ``work/`` of `make run` and `runbook export-ci`.
    The lab names the folder it was started in, and every relative work folder is taken from there.
    """
    path = Path(workdir).expanduser()
    base = os.environ.get(PROJECT_DIR_ENV, "")
    return (Path(base) / path if base and not path.is_absolute() else path).resolve()


def open_workdir(workdir: Workdir | str | Path) -> Workdir:
    """The work folder for ``workdir`` (created lazily, on first write); a ``Workdir`` is returned as it is, so the
    entry points that take a notebook's ``workdir`` string open it once and hand the object on."""
    return workdir if isinstance(workdir, Workdir) else Workdir(resolve_workdir(workdir))
