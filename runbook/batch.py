"""The unattended batch: the four phase notebooks run in order by papermill, in-process.

In-process papermill avoids its ~2 s import per call, and one kernel serves all four notebooks
of a run (started and stopped here), so the clients are imported and the org logged in once. Each notebook gets only the
parameters its ``parameters`` cell declares, and never a secret: credentials reach the kernels
through the environment (the local org's CA bundle and state folder) or files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.errors import InputError, PhaseError
from runbook.org import LOCAL_STATE_ENV, start_local_org
from runbook.workdir import open_workdir

PHASES: tuple[tuple[str, str], ...] = (
    ("certificate", "01_certificate.ipynb"),
    ("connected_app", "02_connected_app.ipynb"),
    ("access", "03_policies_and_access.ipynb"),
    ("verify", "04_verify.ipynb"),
)
SECRET_NAME = re.compile(r"(password|passwd|secret|token|private_?key|passphrase|credential)s?$", re.I)


def notebooks_dir() -> Path:
    """The phase notebooks: shipped inside the package, or the checkout's notebooks/ folder."""
    packaged = Path(__file__).parent / "notebooks"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "notebooks"


def check_no_secret_params(params: dict[str, Any]) -> None:
    """Refuse parameters that look like secrets: papermill writes parameters into the output twice."""
    for name in params:
        if SECRET_NAME.search(name):
            raise InputError(name, "<hidden>", "never pass secrets as notebook parameters: put the value in an "
                             "environment variable and pass its NAME (e.g. passphrase_env=MY_VAR)")


@dataclass
class PhaseRun:
    phase: str
    notebook: Path
    output: Path
    seconds: float
    status: str  # done | failed | skipped
    error: str = ""


@dataclass
class RunSummary:
    run_dir: Path
    workdir: Path
    org: str
    phases: list[PhaseRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.status != "failed" for p in self.phases)

    def lines(self) -> list[str]:
        wd = open_workdir(self.workdir)
        app, verify = wd.load("connected_app") or {}, wd.load("verify") or {}
        logins = ", ".join(lr["username"] for lr in verify.get("logins", []))
        out = [f"{p.phase:<14} {p.status:<7} {p.seconds:6.2f} s  {p.output}" for p in self.phases]
        failed = [p for p in self.phases if p.status == "failed"]
        out += [f"FAILED {p.phase}: {p.error}" for p in failed]
        if app:
            out += [f"App:            {app['label']} ({app['full_name']}, {app['app_kind']})",
                    f"Consumer key:   {app['consumer_key']}"]
        if logins:
            out += [f"JWT login as:   {logins} (org {verify['logins'][0]['org_id']})",
                    f"CLI command:    {verify['sf_command']}"]
        out.append(f"Executed notebooks: {self.run_dir}")
        return out


def parameters_of(notebook: Path) -> set[str]:
    """The names declared in a notebook's ``parameters`` cell (read once per notebook version)."""
    stat = Path(notebook).stat()
    return set(_parameters_of(str(notebook), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _parameters_of(notebook: str, _mtime_ns: int, _size: int) -> frozenset[str]:
    import papermill

    return frozenset(papermill.inspect_notebook(notebook))


def run_runbook(*, org: str = "local", workdir: str | Path = "work", params: dict[str, Any] | None = None,
                runs_dir: str | Path = "runs", fresh_org: bool = False, phases: list[str] | None = None,
                progress=print, resume: bool = False, run_dir: str | Path | None = None,
                local_org: dict[str, Any] | None = None) -> RunSummary:
    """Run the phases in order in one kernel; stops at the first failure (in the summary, not raised).

    ``resume`` skips the leading phases that are already done, as the work folder and the org say
    (``runbook.overview``), and runs the rest. ``run_dir`` replaces ``runs_dir/<timestamp>`` (fleets use
    ``runs/<timestamp>/<org>``); ``local_org`` holds ``LocalOrg`` options (e.g. ``latency_ms``) for a
    local org this call starts. Nothing org-specific goes through this process's environment: the
    kernel gets its own.
    """
    params = dict(params or {})
    check_no_secret_params(params)
    workdir = Path(workdir).expanduser().resolve()
    if run_dir is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run_dir = Path(runs_dir).expanduser().resolve() / stamp
    run_dir = Path(run_dir).expanduser().resolve()
    run_dir.mkdir(parents=True)
    env = _start_local(workdir, fresh_org, local_org or {}) if org == "local" else {}
    summary = RunSummary(run_dir, workdir, org)
    common = {"org": org, "workdir": str(workdir), **params}
    selected = [(phase, name) for phase, name in PHASES if not phases or phase in phases]
    if resume:
        done = _done_phases(org, workdir, params)
        while selected and selected[0][0] in done:
            phase, name = selected.pop(0)
            progress(f"[{phase}] already done: skipped")
            summary.phases.append(PhaseRun(phase, notebooks_dir() / name, run_dir / name, 0.0, "skipped"))
    if not selected:
        return summary
    with _kernel(env, cwd=workdir.parent) as km:
        for phase, name in selected:
            run = _run_phase(km, phase, notebooks_dir() / name, run_dir / name, common, progress)
            summary.phases.append(run)
            if run.status == "failed":
                break
    return summary


def _done_phases(org: str, workdir: Path, params: dict[str, Any]) -> set[str]:
    """The phases the work folder and the org say are done (the org is not checked if it cannot be reached)."""
    from runbook.errors import RunbookError
    from runbook.org import DEFAULT_API_VERSION, connect, connect_local
    from runbook.overview import phase_overview

    api_version = str(params.get("api_version", DEFAULT_API_VERSION))
    try:
        session = connect_local(workdir / "localorg", api_version=api_version) if org == "local" else \
            connect(org, workdir=workdir, api_version=api_version)
    except RunbookError:
        session = None
    overview = phase_overview(workdir, session)
    done = {p.phase for p in overview.phases if p.state == "done"}
    if session is None:
        done &= {"certificate"}  # the org could not be asked: only the local key pair can be trusted
    return done


def _run_phase(km, phase: str, notebook: Path, output: Path, common: dict[str, Any], progress) -> PhaseRun:
    import papermill
    from nbclient.exceptions import DeadKernelError

    wanted = parameters_of(notebook)
    started = time.perf_counter()
    progress(f"[{phase}] running {notebook.name}")
    try:
        papermill.execute_notebook(str(notebook), str(output), kernel_name="python3", progress_bar=False,
                                   parameters={k: v for k, v in common.items() if k in wanted}, km=km)
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except DeadKernelError:
        error = "the kernel died while running the notebook"
    else:
        return PhaseRun(phase, notebook, output, time.perf_counter() - started, "done")
    progress(f"[{phase}] FAILED: {error}")
    return PhaseRun(phase, notebook, output, time.perf_counter() - started, "failed", error)


@contextlib.contextmanager
def _kernel(env: dict[str, str], cwd: Path):
    """One kernel for all the phases of a run: one start, one import of the clients, one login."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, **env}, cwd=str(cwd))
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)


def _start_local(workdir: Path, fresh: bool, options: dict[str, Any]) -> dict[str, str]:
    """Serve the local org from this process; returns the environment the kernel needs to reach it."""
    state = workdir / "localorg"
    if fresh and state.exists():
        shutil.rmtree(state)
    org = start_local_org(state, **options)
    return {LOCAL_STATE_ENV: str(org.state_dir), "REQUESTS_CA_BUNDLE": str(org.ca_bundle)}


def raise_for_failure(summary: RunSummary) -> None:
    for run in summary.phases:
        if run.status == "failed":
            raise PhaseError(run.phase, run.notebook.name, run.error)
