"""`make lab`: JupyterLab on the notebooks, with the local org already running and in the environment.

``python -m runbook.ui.lab`` starts the emulated Dev Hub in this process, then JupyterLab as a child
process whose environment (inherited by every kernel) names the org: ``RUNBOOK_LOCAL_ORG_STATE`` (so
``org = "local"`` in any notebook reaches this org instead of starting its own),
``RUNBOOK_LOCAL_ORG_URL``, and ``REQUESTS_CA_BUNDLE`` (the org's ``ca-bundle.pem``: the usual public CAs
plus the org's own CA, so kernels can still reach a real Dev Hub too). The org stops when JupyterLab exits.

It is the org and work folder of `make run` and the CLI: the state is ``work/localorg`` (the CLI's default
``--workdir work``), and ``RUNBOOK_PROJECT_DIR`` (the folder the lab started in) makes the notebooks'
relative ``workdir = "work"`` that same ``work/``, not ``notebooks/work``. So `runbook export-ci` after a
walkthrough exports the app the walkthrough made, and `make run` while the lab is open uses the lab's org.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from runbook.salesforce import LOCAL_STATE_ENV
from runbook.work.workdir import DEFAULT_WORKDIR, PROJECT_DIR_ENV

LOCAL_URL_ENV = "RUNBOOK_LOCAL_ORG_URL"
DEFAULT_STATE = Path(DEFAULT_WORKDIR) / "localorg"  # `runbook run`'s (default --workdir work) and `runbook org serve`'s


def lab_environment(*, state_dir: Path, url: str, ca_bundle: Path, project_dir: Path) -> dict[str, str]:
    """The variables a Lab server (and so its kernels) needs to use an already running local org, and the
    folder the notebooks' relative work folder is under."""
    return {LOCAL_STATE_ENV: str(Path(state_dir).resolve()), LOCAL_URL_ENV: url, "REQUESTS_CA_BUNDLE": str(ca_bundle),
            PROJECT_DIR_ENV: str(Path(project_dir).resolve())}


def lab_command(*, root: Path, port: int | None = None, token: bool = True, open_browser: bool = True,
                extra: Sequence[str] = ()) -> list[str]:
    """The JupyterLab command line for ``root`` on 127.0.0.1; ``token=False`` only for throwaway test servers."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={Path(root).resolve()}", "--ip=127.0.0.1"]
    if port is not None:
        cmd.append(f"--port={port}")
    if not token:
        cmd += ["--IdentityProvider.token=", "--PasswordIdentityProvider.hashed_password="]
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root
        cmd.append("--allow-root")
    return [*cmd, *extra]


LAB_STOP_GRACE = 15.0  # seconds JupyterLab gets to shut down on SIGTERM before it is killed


def _stop(proc: subprocess.Popen) -> None:
    """Ask JupyterLab to shut down (it stops its kernels), and kill it if it has not after ``LAB_STOP_GRACE``: a
    server caught mid-start can ignore the request, and the launcher, waiting for it, would never stop the org."""
    proc.terminate()
    kill = threading.Timer(LAB_STOP_GRACE, lambda: proc.poll() is None and proc.kill())
    kill.daemon = True  # the launcher exits as soon as Lab has
    kill.start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbook.ui.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="the local org's state folder")
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="JupyterLab's root folder")
    parser.add_argument("--port", type=int, default=None, help="JupyterLab's port (default: 8888 or the next free)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args, extra = parser.parse_known_args(argv)

    from runbook.localorg import ADMIN_USERNAME, LocalOrg

    org = LocalOrg(args.state).start()
    try:
        env = {**os.environ, **lab_environment(state_dir=org.state_dir, url=org.url, ca_bundle=org.ca_bundle,
                                               project_dir=Path.cwd())}
        print(f"Local org: {org.url} (admin {ADMIN_USERNAME}, state {args.state.resolve()})", flush=True)
        proc = subprocess.Popen(lab_command(root=args.notebooks, port=args.port, open_browser=not args.no_browser,
                                            extra=extra), env=env)
        signal.signal(signal.SIGTERM, lambda *_: _stop(proc))  # stop Lab (and its kernels) before the org
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Jupyter got the same Ctrl-C and runs its own shutdown: wait for it
                continue
    finally:
        org.stop()


if __name__ == "__main__":
    sys.exit(main())
