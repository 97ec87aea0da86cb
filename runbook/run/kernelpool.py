"""Kernels forked from one warm template process, for fleets: each kernel starts with its imports done.

A kernel started from scratch (``python -m ipykernel_launcher``) spends ~0.3 s of CPU importing
ipykernel and IPython, then its run imports the clients (simple-salesforce, zeep, cryptography:
~0.3 s) and parses the Metadata API's WSDL (~0.35 s): two thirds of a kernel's CPU in a run, paid
again by every org of a fleet. A ``KernelTemplate`` is one process that pays it once: it imports all
that, parses the WSDL (``runbook.salesforce.metadata.metadata_wsdl``), freezes its objects out of the garbage
collector's reach, and then forks a child per kernel, which starts the way ``ipykernel_launcher``
would, with the run's environment, working folder and connection file. The children share the
template's pages copy-on-write, so a fleet's kernels also take less memory.

The parent side is a jupyter_client provisioner (``provisioner``): the kernel manager, nbclient and
``runbook.run.batch`` treat a forked kernel like any other. Each fork comes back as a pidfd (Linux), so
the parent can watch and signal a process that is not its child without racing pid reuse; the
template reaps the kernels, and ends when the parent closes it or dies (its kernels then see their
parent change and exit, as ipykernel's parent poller has them do).

Only where ``fork`` and pidfds exist (Linux), and only for a kernel spec that is
``<python> [flags] -m ipykernel_launcher -f {connection_file}``: elsewhere fleets start kernels as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_LAUNCHER_TAIL = ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
_MAX_MESSAGE = 1 << 20
# What a run's kernel imports besides the notebooks' own import statements (``_notebook_imports``):
# ipykernel's start (its debugger imports debugpy), and what the phases' functions import when called.
# runbook.localorg.org is there because runbook.salesforce imports it to find an org another process serves, and
# runbook.phases.org_checks because the batch runs the up-front org check in the kernel before phase 1.
WARM_IMPORTS = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.comm",
                "ipykernel.debugger", "IPython.core.history", "IPython.core.debugger", "IPython.core.oinspect",
                "IPython.core.completerlib", "IPython.core.logger", "IPython.extensions.storemagic",
                "tornado.platform.asyncio", "tornado.queues", "ipykernel_launcher",
                "runbook.localorg.org", "runbook.phases.webflow", "runbook.phases.org_checks",
                "runbook.salesforce.metadata", "runbook.salesforce.rest",
                "simple_salesforce", "simple_salesforce.login", "zeep", "jwt")


def forking_supported() -> bool:
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def template_for(kernel_name: str = "python3") -> KernelTemplate | None:
    """A started template for the named kernel spec's kernels, or None where they cannot be forked."""
    argv = template_argv(kernel_name) if forking_supported() else None
    return KernelTemplate(argv) if argv else None


def template_argv(kernel_name: str = "python3") -> list[str] | None:
    """The interpreter and flags of the named kernel spec, or None if it is not an ipykernel spec."""
    from jupyter_client.kernelspec import KernelSpecManager

    argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    if len(argv) < len(_LAUNCHER_TAIL) + 1 or argv[-len(_LAUNCHER_TAIL):] != _LAUNCHER_TAIL:
        return None
    argv = argv[:-len(_LAUNCHER_TAIL)]
    if argv[0] in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        argv[0] = sys.executable  # as jupyter_client does for the kernel itself
    return argv


class ForkedKernel:
    """What jupyter_client's LocalProvisioner needs of a ``Popen``, for a kernel the template forked.

    The template, not this process, is the kernel's parent and reaps it, so its exit status is not
    known here: ``returncode`` is minus the last signal sent to it, or 0.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd: int | None = pidfd
        self._signalled = 0
        self.returncode: int | None = None

    def _exited(self, timeout: float | None) -> bool:
        if self._pidfd is None:
            return True
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        if not poller.poll(None if timeout is None else int(timeout * 1000)):
            return False
        os.close(self._pidfd)
        self._pidfd = None
        self.returncode = -self._signalled
        return True

    def poll(self) -> int | None:
        self._exited(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited(timeout):
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        if self._pidfd is not None:
            self._signalled = signum
            with contextlib.suppress(ProcessLookupError):  # it exited and is not reaped yet
                signal.pidfd_send_signal(self._pidfd, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class TemplateUnavailable(RuntimeError):
    """The template cannot fork kernels (it failed to warm up, or ended): kernels start as usual instead."""


class KernelTemplate:
    """A warm process forking kernels on request; ``close()`` (or ``with``) ends it. Thread-safe.

    If the template cannot serve (it failed to warm up or ended), ``fork`` raises ``TemplateUnavailable``
    and the provisioner starts that kernel the usual way: a broken template costs time, never a run.
    """

    def __init__(self, argv: list[str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            code = f"from runbook.run.kernelpool import serve; serve({theirs.fileno()})"
            self._process = subprocess.Popen([*argv, "-c", code], pass_fds=[theirs.fileno()],
                                             stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours
        self._lock = threading.Lock()
        self._broken = False

    @property
    def pid(self) -> int:
        return self._process.pid

    def fork(self, connection_file: str, env: dict[str, str], cwd: str) -> ForkedKernel:
        """A new kernel for ``connection_file`` (already written), started in ``cwd`` with exactly ``env``."""
        request = json.dumps({"connection_file": connection_file, "env": dict(env), "cwd": cwd}).encode()
        answer, fds = b"", []
        with self._lock:
            if not self._broken:
                try:
                    self._socket.send(request)
                    answer, fds, _flags, _addr = socket.recv_fds(self._socket, _MAX_MESSAGE, 1)
                except OSError:
                    pass
                self._broken = not answer
        if not answer:
            raise TemplateUnavailable(f"the kernel template (process {self.pid}) ended")
        reply = json.loads(answer)
        if "error" in reply:
            raise TemplateUnavailable(f"the kernel template could not fork a kernel: {reply['error']}")
        return ForkedKernel(reply["pid"], fds[0])

    def provisioner(self, km: Any) -> Any:
        """A provisioner for ``km`` (a KernelManager not started yet) that starts its kernel from this template."""
        return _provisioner_class()(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km, template=self)

    def close(self) -> None:
        self._socket.close()  # the template's next read ends, and so does the template
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> KernelTemplate:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _provisioner_class() -> type:
    from jupyter_client.provisioning import LocalProvisioner

    class ForkingProvisioner(LocalProvisioner):
        """LocalProvisioner, except that ``launch_kernel`` asks the template instead of spawning a process."""

        def __init__(self, *, template: KernelTemplate, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.template = template

        async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
            cwd = str(kwargs.get("cwd") or Path.cwd())
            try:
                self.process = self.template.fork(cmd[cmd.index("-f") + 1], kwargs.get("env") or dict(os.environ),
                                                  cwd)
            except TemplateUnavailable:
                return await super().launch_kernel(cmd, **kwargs)
            self.pid = self.pgid = self.process.pid  # the kernel leads its own session, as jupyter_client's do
            self.cwd = cwd
            return self.connection_info

    return ForkingProvisioner


# The template process.

def serve(fd: int) -> None:
    """The template's life: warm up, then fork a kernel per request on ``fd`` until the parent closes it."""
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; the template ends with it
    os.environ["JPY_PARENT_PID"] = str(os.getpid())  # ipykernel reads it at import: its kernels watch us
    try:
        _warm()
    except Exception as exc:  # the parent then starts its kernels the usual way
        print(f"runbook: the kernel template cannot fork kernels ({type(exc).__name__}: {exc}); "
              "kernels start as usual", file=sys.stderr, flush=True)
        return
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        request = sock.recv(_MAX_MESSAGE)
        if not request:
            _reap_the_rest()
            return
        try:
            pid, pidfd = _fork(json.loads(request), sock)
        except Exception as exc:  # e.g. out of processes: that kernel starts the usual way, the template serves on
            sock.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
            continue
        try:
            socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [pidfd])
        finally:
            os.close(pidfd)


def _warm() -> None:
    import gc
    import importlib

    if sys.path and sys.path[0] == "":  # as ipykernel_launcher does: IPython puts it back in each kernel
        del sys.path[0]
    for name in [*WARM_IMPORTS, *_notebook_imports()]:
        with contextlib.suppress(ImportError):  # a module moved or gone is just not warm
            importlib.import_module(name)
    from runbook.salesforce.metadata import metadata_wsdl

    metadata_wsdl()
    if threading.active_count() != 1:  # a thread would not survive the fork: nothing may have started one
        raise RuntimeError(f"the kernel template has threads after its imports: {threading.enumerate()}")
    gc.collect()
    gc.freeze()  # the collector never touches these objects again, so the kernels' copies stay shared


def _notebook_imports() -> list[str]:
    """The modules the phase notebooks' code cells import (their top-level ``import`` statements)."""
    import ast

    from runbook.phases import PHASES

    names: list[str] = []
    for phase in PHASES:
        for cell in json.loads(phase.path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            try:
                tree = ast.parse("".join(cell["source"]))
            except SyntaxError:  # IPython syntax (magics): not Python
                continue
            for node in tree.body:
                if isinstance(node, ast.Import):
                    names += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.append(node.module)
    return names


def _reap(_signum: int, _frame: Any) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _reap_the_rest(wait: float = 2.0) -> None:
    """Reap the kernels still to be reaped (their CPU time then counts as ours, for whoever measures it).

    By the time the parent closes the template its managers have killed their kernels; one still
    alive after ``wait`` seconds is left to end by itself (it sees the template gone and exits).
    """
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if not os.waitpid(-1, os.WNOHANG)[0]:
                time.sleep(0.01)
        except ChildProcessError:
            return


def _fork(spec: dict[str, Any], sock: socket.socket) -> tuple[int, int]:
    """Fork a kernel for ``spec``; its pid and a pidfd, opened before the kernel can be reaped."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            _become_kernel(spec, sock)
        return pid, os.pidfd_open(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _become_kernel(spec: dict[str, Any], sock: socket.socket) -> None:
    """In the child: what ``python -m ipykernel_launcher -f <file>`` in ``spec["cwd"]`` with ``spec["env"]`` does."""
    code = 1
    try:
        sock.close()
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(spec["cwd"])
        os.environ.clear()
        os.environ.update(spec["env"])
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
        import ipykernel_launcher  # its body runs only as __main__: this names its file
        from ipykernel import kernelapp

        sys.argv = [ipykernel_launcher.__file__, "-f", spec["connection_file"]]
        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
