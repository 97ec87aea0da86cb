"""The unattended batch: the four phase notebooks run in order by papermill, in-process.

In-process papermill avoids its ~2 s import per call, and one kernel serves all four notebooks
of a run (started and stopped here), so the clients are imported and the org logged in once. Each notebook gets only the
parameters its ``parameters`` cell declares, and never a secret: credentials reach the kernels
through the environment (the local org's CA bundle and state folder) or files.

Where the time goes, and what this module does about it (``make bench`` measures it):

- the kernel is launched first and boots (~0.3 s, in its own process) while this process starts the
  local org and imports papermill;
- every notebook of a run talks to the kernel through one client: nbclient would connect a new one
  per notebook, wait 0.2 s of silence on IOPub each time, and leave its heartbeat thread running;
- the kernel knows it runs unattended (``runbook.run.env.BATCH_ENV``), so the form cells leave a
  one-line placeholder instead of building ~30 widgets that nobody can click, which papermill would
  then save as widget state with every cell;
- papermill writes each executed notebook when it starts and ends, and at most once a second in
  between, instead of before and after every cell (``_papermill_engine``);
- the kernel listens on Unix sockets (ipc) in a private folder instead of localhost TCP ports, and is
  killed and reaped without jupyter_client's 0.1 s poll.

A kernel that dies (between notebooks or mid-cell) fails that phase with "the kernel died while running
the notebook"; nbclient alone, with a blocking client, would wait for a dead kernel's reply forever.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError, RunbookError
from runbook.phases import PHASES, notebooks_dir, phase_named
from runbook.phases.org_checks import org_checked_values, phases_to_check
from runbook.phases.parameters import check_run
from runbook.run.kernel import execute, import_papermill, papermill_engine, run_kernel
from runbook.run.resume import decide as resume_decisions
from runbook.run.resume import inputs_of, record_outcome
from runbook.run.summary import PhaseRun, RunSummary
from runbook.salesforce import LOCAL_STATE_ENV, find_served_local_org, sf_cli_env, start_local_org
from runbook.work.files import PRIVATE, create_with_mode, make_private_dir
from runbook.work.workdir import DEFAULT_WORKDIR, open_workdir, resolve_workdir

if TYPE_CHECKING:
    from runbook.run.kernelpool import KernelTemplate

SECRET_NAME = re.compile(r"(password|passwd|secret|token|private_?key|passphrase|credential)s?$", re.I)


def check_no_secret_params(params: dict[str, Any]) -> None:
    """Refuse parameters that look like secrets: papermill writes parameters into the output twice."""
    for name in params:
        if SECRET_NAME.search(name):
            raise InputError(name, "<hidden>", "never pass secrets as notebook parameters: put the value in an "
                             "environment variable and pass its NAME (e.g. passphrase_env=MY_VAR)")


def parameters_of(notebook: Path) -> set[str]:
    """The names declared in a notebook's ``parameters`` cell (read once per notebook version)."""
    stat = Path(notebook).stat()
    return set(_parameters_of(str(notebook), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _parameters_of(notebook: str, _mtime_ns: int, _size: int) -> frozenset[str]:
    papermill = import_papermill()
    return frozenset(papermill.inspect_notebook(notebook))


def run_runbook(*, org: str = "local", workdir: str | Path = DEFAULT_WORKDIR, params: dict[str, Any] | None = None,
                runs_dir: str | Path = "runs", fresh_org: bool = False, phases: list[str] | None = None,
                progress=print, resume: bool = False, run_dir: str | Path | None = None,
                local_org: dict[str, Any] | None = None, kernel_template: KernelTemplate | None = None,
                stop: threading.Event | None = None) -> RunSummary:
    """Run the phases in order in one kernel; stops at the first failure (in the summary, not raised).

    ``resume`` skips the leading phases that are already done, as the work folder and the org say
    (``runbook.phases.overview``), and runs the rest. ``run_dir`` replaces ``runs_dir/<timestamp>`` (fleets use
    ``runs/<timestamp>/<org>``); ``local_org`` holds ``LocalOrg`` options (e.g. ``latency_ms``) for a
    local org this call starts. Nothing org-specific goes through this process's environment: the
    kernel gets its own. ``kernel_template`` (fleets) forks the kernel from a warm process
    (``runbook.run.kernelpool``) instead of starting one from scratch. ``stop`` (fleets, on Ctrl-C) ends the
    run at the next phase boundary: the phases not started are reported interrupted.
    """
    params = dict(params or {})
    check_no_secret_params(params)
    workdir = resolve_workdir(workdir)
    # every phase's parameters, checked (and coerced) before anything is written; all problems at once
    params = {k: v for k, v in check_run({**params, "org": org, "workdir": str(workdir)}, phases=phases).items()
              if k not in ("org", "workdir")}
    with open_workdir(workdir).lock():  # a second run on this work folder waits a little, then is refused
        return _run_locked(org, workdir, params, runs_dir, fresh_org, phases, progress, resume, run_dir,
                           local_org, kernel_template, stop)


def _run_locked(org: str, workdir: Path, params: dict[str, Any], runs_dir: str | Path, fresh_org: bool,
                phases: list[str] | None, progress, resume: bool, run_dir: str | Path | None,
                local_org: dict[str, Any] | None, kernel_template: KernelTemplate | None,
                stop: threading.Event | None = None) -> RunSummary:
    if run_dir is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run_dir = Path(runs_dir).expanduser().resolve() / stamp
    run_dir = Path(run_dir).expanduser().resolve()
    make_private_dir(run_dir, exist_ok=False)
    env = _local_env(workdir) if org == "local" else sf_cli_env()
    wd = open_workdir(workdir)
    summary = RunSummary(run_dir, workdir, org, params=dict(params))
    common = {"org": org, "workdir": str(workdir), **params}
    selected = [(p.name, p.notebook) for p in PHASES if not phases or p.name in phases]
    if resume:
        if org == "local":
            _start_local(workdir, fresh_org, local_org or {})
        done = _done_phases(org, workdir, params)
        for decision in resume_decisions([p for p, _n in selected], common, wd, done):
            progress(f"[{decision.phase}] {decision.why}")
            if not decision.rerun:  # only leading phases are skipped: a rerun redoes every phase after it
                phase, name = selected.pop(0)
                summary.phases.append(PhaseRun(phase, notebooks_dir() / name, run_dir / name, 0.0, "skipped"))
    if not selected:
        return summary
    workdir.parent.mkdir(parents=True, exist_ok=True)  # the kernel's working folder; the org starts after it
    with run_kernel(env, cwd=workdir.parent, template=kernel_template) as km:
        if org == "local" and not resume:
            _start_local(workdir, fresh_org, local_org or {})  # while the kernel boots
        import_papermill()  # likewise
        to_check = phases_to_check([p for p, _n in selected], params, workdir)
        if to_check:
            progress(f"[check] asking the org about the names {', '.join(to_check)} use")
            _check_org_in_kernel(km, org, workdir, params, to_check)
        for phase, name in selected:
            if stop is not None and stop.is_set():  # a fleet's Ctrl-C: stop between phases
                progress(f"[{phase}] interrupted before it started")
                summary.phases.append(PhaseRun(phase, notebooks_dir() / name, run_dir / name, 0.0, "interrupted"))
                break
            inputs = inputs_of(phase_named(phase), common, wd)
            try:
                run = _run_phase(km, phase, notebooks_dir() / name, run_dir / name, common, progress)
            except KeyboardInterrupt:  # Ctrl-C: the kernel is stopped on the way out; the notebook so far stays
                progress(f"[{phase}] interrupted")
                run = PhaseRun(phase, notebooks_dir() / name, run_dir / name, 0.0, "interrupted")
            record_outcome(wd, phase, inputs, run.status, run.error)
            summary.phases.append(run)
            if run.status != "done":
                break
    return summary


def _check_org_in_kernel(km, org: str, workdir: Path, params: dict[str, Any], phases: list[str]) -> None:
    """``runbook.phases.org_checks`` in the run's kernel, before phase 1: on the session the phases reuse, so its login
    and lookup are theirs (no round trip more); raises RunbookError with every problem, nothing written."""
    from runbook.salesforce import DEFAULT_API_VERSION

    payload = json.dumps({"org": org, "workdir": str(workdir), "params": org_checked_values(params), "phases": phases,
                          "api_version": str(params.get("api_version", DEFAULT_API_VERSION))})
    content = execute(km, f"from runbook.phases.org_checks import check_org_in_kernel as _check\n_check({payload!r})\n"
                          "del _check")
    if content["status"] != "ok":
        evalue = content.get("evalue", "")
        raise RunbookError(evalue if content.get("ename") in ("ParameterProblems", "InputError") else
                           f"checking the parameters against the org: {content.get('ename')}: {evalue}")


def _done_phases(org: str, workdir: Path, params: dict[str, Any]) -> set[str]:
    """The phases the work folder and the org say are done (the org is not checked if it cannot be reached)."""
    from runbook.phases.overview import phase_overview
    from runbook.salesforce import DEFAULT_API_VERSION, connect, connect_local

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
    papermill = import_papermill()
    from nbclient.exceptions import DeadKernelError

    wanted = parameters_of(notebook)
    started = time.perf_counter()
    progress(f"[{phase}] running {notebook.name}")
    create_with_mode(output, PRIVATE)  # papermill's open(output, "w") keeps the mode, whatever the umask
    try:
        papermill.execute_notebook(str(notebook), str(output), kernel_name="python3", progress_bar=False,
                                   parameters={k: v for k, v in common.items() if k in wanted}, km=km,
                                   engine_name=papermill_engine())
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except DeadKernelError:
        error = "the kernel died while running the notebook"
    else:
        return PhaseRun(phase, notebook, output, time.perf_counter() - started, "done")
    progress(f"[{phase}] FAILED: {error}")
    return PhaseRun(phase, notebook, output, time.perf_counter() - started, "failed", error)


def _local_env(workdir: Path) -> dict[str, str]:
    """What the kernel needs to reach the local org of ``workdir`` (known before the org starts)."""
    state = (workdir / "localorg").resolve()
    return {LOCAL_STATE_ENV: str(state), "REQUESTS_CA_BUNDLE": str(state / "ca-bundle.pem")}


def _start_local(workdir: Path, fresh: bool, options: dict[str, Any]) -> None:
    """Serve the local org from this process, at the state folder and CA bundle ``_local_env`` names.

    An org another process already serves from that folder (`runbook org serve`, `make lab`, the
    bench's fleet) is used as it is, with that process's settings: the kernel finds it the same way.
    """
    state = workdir / "localorg"
    served = find_served_local_org(state.resolve())
    if served is not None and served["pid"] != os.getpid():
        if fresh:
            raise InputError("--fresh-org", str(state), f"stop the process serving it first (pid {served['pid']}), "
                             "or run without --fresh-org to use that org as it is")
        return
    if fresh and state.exists():
        shutil.rmtree(state)
    start_local_org(state, **options)
