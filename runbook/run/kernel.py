"""The runner's use of library internals: papermill's engine, nbclient's client handling, jupyter_client's
client and channels. One module, so a newcomer finds every non-public API the runner leans on in one place.

None of this is public API of those libraries, so pyproject.toml caps them at the tested minor versions, and
``tests/run/test_library_internals.py`` fails at once (imports and signatures, no kernel) naming the internal
that changed when a new version is let in. What each piece buys is measured by ``make bench``:

- papermill writes each executed notebook when it starts and ends, and at most once a second in between,
  instead of before and after every cell (``papermill_engine``);
- every notebook of a run talks to the kernel through one client, checked once (``kernel_manager_class``);
- the kernel listens on Unix sockets in a private folder, and is killed and reaped without jupyter_client's
  0.1 s poll; a kernel that dies mid-cell is noticed instead of waited for forever.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.run.env import BATCH_ENV

if TYPE_CHECKING:
    from runbook.run.kernelpool import KernelTemplate


def import_papermill():
    """papermill, imported without jsonschema's optional IRI format checker (0.95 s → 0.25 s here).

    ``import papermill`` → nbformat → jsonschema, whose format module imports ``rfc3987_syntax`` if it
    is installed, and that builds ~35 Earley grammars at import (0.7 s; python-jsonschema/jsonschema#1428).
    Nothing here checks IRI formats: nbformat validates notebooks with fastjsonschema. Only jsonschema's
    import is kept from it; ``rfc3987_syntax`` stays importable for anyone who asks for it afterwards.
    """
    if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # makes its import raise ImportError
        try:
            import jsonschema  # noqa: F401
        finally:
            del sys.modules["rfc3987_syntax"]
    import papermill

    return papermill


SAVE_EVERY = 1.0  # seconds: how stale the executed notebook on disk may be while its notebook runs


@functools.cache
def papermill_engine() -> str:
    """papermill's nbclient engine, writing the executed notebook at most every ``SAVE_EVERY`` s while it runs.

    papermill writes (validates, copies, serialises) the whole notebook before and after every cell,
    markdown cells included: 104 writes a run, a third of this process's CPU per run. Here a
    notebook is written when it starts, in between at most once a second, and when it ends: by
    papermill's final write (with the error marked, if a cell failed), which follows every engine
    run that returns, so the engine's own last write is kept only for a run that raises (its kernel
    died). The files end the same; a notebook takes two writes.
    """
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class ThrottledSaves(NotebookExecutionManager):
        _saved_at: float | None = None
        _written_by_papermill = False

        def save(self, **kwargs: Any) -> None:
            if self._written_by_papermill:
                return
            if self._saved_at is None or time.monotonic() - self._saved_at >= SAVE_EVERY:
                super().save(**kwargs)
                self._saved_at = time.monotonic()

        def notebook_complete(self, *, final_write_follows: bool = False, **kwargs: Any) -> None:
            self._saved_at = None  # unless papermill writes it next, its save is the one that always happens
            self._written_by_papermill = final_write_follows
            super().notebook_complete(**kwargs)

    class RunbookEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                             autosave_cell_every=30, **kwargs):
            # papermill's Engine.execute_notebook, with the manager above
            nb_man = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                    autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            except BaseException:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()  # papermill writes nothing after a raise: this is the last write
                raise
            nb_man.cleanup_pbar()
            nb_man.notebook_complete(final_write_follows=True)
            return nb_man.nb

    papermill_engines.register("runbook", RunbookEngine)
    return "runbook"


@contextlib.contextmanager
def run_kernel(env: dict[str, str], cwd: Path, template: KernelTemplate | None = None):
    """One kernel for all the phases of a run: one start, one import of the clients, one login.

    The kernel is launched, not waited for: the first notebook waits for it to answer. It listens on
    Unix sockets (ipc) in a private folder (0700) that also holds its connection file, which spares
    every run ipykernel's "running over TCP without encryption" warning; its stderr still reaches ours,
    so a crashing kernel is still heard. With a ``template``, the kernel is forked from it.
    """
    folder = tempfile.mkdtemp(prefix="runbook-kernel-")
    km = kernel_manager_class()(kernel_name="python3", transport="ipc", ip=os.path.join(folder, "kernel"),
                               connection_file=os.path.join(folder, "kernel.json"))
    if template is not None:
        km.kernel_id = str(uuid.uuid4())
        km.provisioner = template.provisioner(km)
    try:
        km.start_kernel(env={**os.environ, **env, BATCH_ENV: "1"}, cwd=str(cwd))
        yield km
    finally:
        try:
            km.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@functools.cache
def kernel_manager_class() -> type:
    """A KernelManager whose ``client()`` is one connected client, shared by every notebook of the run.

    nbclient asks the manager for a new client per notebook, starts its channels and waits for it to
    be ready, which ends with 0.2 s of waiting for silence on IOPub (4 notebooks: 0.8 s a run); with
    a manager it did not create, it never stops that client either, so each notebook left a heartbeat
    thread and four sockets behind. Here the client connects and checks the kernel once; nbclient
    ignores IOPub messages that answer requests other than its own, so nothing needs draining.
    (Built on first use: jupyter_client is imported only when a run starts.)
    """
    from queue import Empty

    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.channels import ZMQSocketChannel
    from jupyter_client.manager import KernelManager

    class WatchedChannel(ZMQSocketChannel):
        """A channel whose endless wait (``timeout=None``) gives up once the kernel process is gone.

        nbclient waits for a cell's messages with ``get_msg(timeout=None)`` and checks that the kernel
        lives in another task of the same event loop, which a blocking client's wait never lets run: a
        kernel that died mid-cell was waited for forever. Set ``kernel_alive`` to the check.
        """

        kernel_alive: Callable[[], bool] | None = None

        def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
            while timeout is None and self.kernel_alive is not None:
                try:
                    return super().get_msg(timeout=1)
                except Empty:
                    if not self.kernel_alive():
                        from nbclient.exceptions import DeadKernelError

                        raise DeadKernelError("Kernel died") from None
            return super().get_msg(timeout=timeout)

    class RunKernelClient(BlockingKernelClient):
        shell_channel_class = WatchedChannel
        iopub_channel_class = WatchedChannel
        _ready = False

        def start_channels(self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = True,
                           control: bool = True) -> None:
            # no heartbeat: the manager that started the kernel watches its process (is_alive)
            if not self.channels_running:
                super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=False, control=control)
                self.shell_channel.kernel_alive = self.iopub_channel.kernel_alive = self.is_alive

        def wait_for_ready(self, timeout: float | None = None) -> None:
            """jupyter_client's check (a kernel_info reply, then IOPub connected), once, without the drain."""
            if self._ready and not self.is_alive():  # it died between two notebooks
                from nbclient.exceptions import DeadKernelError

                raise DeadKernelError("Kernel died")
            deadline = time.monotonic() + (timeout if timeout is not None else 60)
            while not self._ready:
                self.kernel_info()
                with contextlib.suppress(Empty):
                    reply = self.shell_channel.get_msg(timeout=1)
                    if reply["msg_type"] == "kernel_info_reply":
                        self.iopub_channel.get_msg(timeout=0.2)  # raises Empty until IOPub is connected
                        self._handle_kernel_info_reply(reply)
                        self._ready = True
                        return
                if not self.is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    class RunKernelManager(KernelManager):
        _shared: RunKernelClient | None = None

        def client(self, **kwargs: Any) -> RunKernelClient:
            if self._shared is None:
                self._shared = RunKernelClient(**{**self.get_connection_info(session=True),
                                                  "connection_file": self.connection_file, "parent": self,
                                                  **kwargs})
            return self._shared

        def stop(self) -> None:
            """Close the client and kill the kernel: what ``shutdown_kernel(now=True)`` does, 0.1 s sooner.

            ``shutdown_kernel`` kills, then polls every 0.1 s until the process is gone (so at least once);
            the kernel is reaped here within a few ms, and ``shutdown_kernel`` only cleans up after it.
            """
            if self._shared is not None:
                self._shared.stop_channels()
                self._shared = None
            if self.has_kernel:
                self.signal_kernel(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while self.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.002)
                self.shutdown_kernel(now=True)

    return RunKernelManager


def execute(km: Any, code: str) -> dict[str, Any]:
    """Run ``code`` in the kernel of ``km`` through the run's one client, outputs dropped; the reply's content
    (``status``, and ``ename``/``evalue`` on an error)."""
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    reply = client.execute_interactive(code, store_history=False, allow_stdin=False, output_hook=lambda _msg: None)
    return reply["content"]
