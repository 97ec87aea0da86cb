"""Fleets: the runbook against many orgs at once, from one YAML file, with a bounded pool.

The file lists the orgs and their parameters; ``defaults`` at the top apply to every org::

    defaults:                     # parameters shared by every org (any notebook parameter)
      contact_email: admin@example.com
    workdir: work/fleet           # optional: each org works in <workdir>/<name> (default work/<name>)
    orgs:
      - name: team-a              # folder names, report rows
        org: my-devhub-a          # local (default), a CLI alias or username, env[:A,B], password[:A,B,C]
        params: {app_name: CI_A}
      - name: team-b
        org: local
        local_org: {latency_ms: 100}   # options for a local org (LocalOrg keyword arguments)

Each org runs ``run_runbook`` in its own work folder and ``runs/<timestamp>/<name>/``, in its own
kernel (forked from a warm template process: ``runbook.run.kernelpool``); a failing org does not stop the
others. Nothing org-specific passes through this process's environment (each kernel gets its own), so
the orgs cannot see each other's settings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runbook.errors import InputError, RunbookError
from runbook.phases import PHASE_NAMES
from runbook.run.batch import check_no_secret_params, run_runbook
from runbook.run.kernel import import_papermill
from runbook.run.kernelpool import KernelTemplate, forking_supported, template_for
from runbook.run.summary import RunSummary
from runbook.work.files import make_private_dir
from runbook.work.workdir import DEFAULT_WORKDIR

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ORG_KEYS = {"name", "org", "workdir", "params", "local_org", "fresh_org"}


@dataclass
class FleetOrg:
    """One org of a fleet: its name (folder and report row), target, work folder and parameters."""

    name: str
    org: str
    workdir: Path
    params: dict[str, Any] = field(default_factory=dict)
    local_org: dict[str, Any] = field(default_factory=dict)
    fresh_org: bool = False


@dataclass
class OrgResult:
    """How one org's run ended: its summary, or the error that kept it from running at all."""

    org: FleetOrg
    summary: RunSummary | None
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.summary is not None and self.summary.ok


@dataclass
class FleetResult:
    run_dir: Path
    results: list[OrgResult]
    seconds: float
    interrupted: bool = False  # Ctrl-C: orgs not started, or stopped at a phase boundary

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[OrgResult]:
        return [r for r in self.results if not r.ok]


def load_fleet(path: str | Path) -> list[FleetOrg]:
    """The orgs a fleet file lists, each with the shared defaults under its own parameters."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError("--config", str(path), f"give a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("orgs"), list | dict) or not data["orgs"]:
        raise InputError("--config", str(path), 'list the orgs under "orgs:" (see runbook.run.fleet for the format)')
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InputError("defaults", defaults, "give the shared parameters as a mapping")
    root = _relative_to(path, data["workdir"]) if data.get("workdir") else Path(DEFAULT_WORKDIR)
    entries = data["orgs"]
    if isinstance(entries, dict):
        entries = [{"name": name, **(spec or {})} for name, spec in entries.items()]
    orgs = [_fleet_org(entry, defaults, root, path) for entry in entries]
    names = [o.name for o in orgs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError("orgs", ", ".join(duplicates), "give every org a different name")
    return orgs


def _relative_to(config: Path, folder: str) -> Path:
    """A folder named in the fleet file: relative paths are relative to the file."""
    return Path(folder).expanduser() if Path(folder).expanduser().is_absolute() else config.parent / folder


def _fleet_org(entry: Any, defaults: dict[str, Any], root: Path, config: Path) -> FleetOrg:
    if not isinstance(entry, dict):
        raise InputError("orgs", entry, "give each org as a mapping with at least a name")
    name = str(entry.get("name", ""))
    if not _NAME.match(name):
        raise InputError("orgs[].name", name, "use letters, digits, '.', '_' or '-' (it names the org's folders)")
    unknown = set(entry) - _ORG_KEYS
    if unknown:
        raise InputError(f"orgs[{name}]", ", ".join(sorted(unknown)),
                         f"put notebook parameters under params:; known keys: {', '.join(sorted(_ORG_KEYS))}")
    params = {**defaults, **(entry.get("params") or {})}
    check_no_secret_params(params)
    workdir = _relative_to(config, entry["workdir"]) if entry.get("workdir") else root / name
    return FleetOrg(name, str(entry.get("org") or "local"), workdir, params, dict(entry.get("local_org") or {}),
                    bool(entry.get("fresh_org", False)))


def default_jobs(*, forked: bool | None = None) -> int:
    """How many orgs run at once by default: 5 per core (at most 16) with forked kernels, else 2 per core + 1.

    ``forked`` None means where kernels can be forked (``runbook.run.kernelpool.forking_supported``); the
    second rule is capped at 8. An org's run is a chain: its kernel computes (start, imports, keys,
    plans), then waits on the org, and one org never keeps more than one core busy. Kernels started
    from scratch (~1.4 s of CPU, ~80 MiB each) on 2 cores, 25 local orgs at 100 ms per call: 4 at once
    took 18.7 s, 5 took 17.4 s, 6 no less. Kernels forked from the template (``runbook.run.kernelpool``:
    ~0.5 s, ~35 MiB each) spend most of a run waiting, so more are needed to keep the cores busy: on
    2 cores, 50 orgs, the cores stood idle 7% of the time with 5 at once, 6% with 8, 1% with 10 or 12
    (455-605 MiB in all).
    """
    cores = os.cpu_count() or 1
    if forking_supported() if forked is None else forked:
        return max(1, min(16, 5 * cores))
    return max(1, min(8, 2 * cores + 1))


def run_fleet(orgs: list[FleetOrg], *, runs_dir: str | Path = "runs", jobs: int | None = None,
              resume: bool = False, progress: Callable[[str], None] = print,
              fork_kernels: bool = True) -> FleetResult:
    """Run every org's phases with at most ``jobs`` at once; never raises for one org's failure.

    The orgs' kernels are forked from one warm template process (``runbook.run.kernelpool``) where that
    works, unless ``fork_kernels`` is False: each then starts from scratch, as a single run's does.
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_dir = Path(runs_dir).expanduser().resolve() / stamp
    make_private_dir(run_dir, exist_ok=False)
    lock = threading.Lock()

    def say(message: str) -> None:
        with lock:
            progress(message)

    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        template = template_for("python3") if fork_kernels else None  # first: it warms up meanwhile
        if template is not None:
            stack.enter_context(template)
        _import_clients()
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=jobs or default_jobs(forked=template is not None),
                                thread_name_prefix="fleet") as pool:
            futures = [pool.submit(_run_one, o, run_dir / o.name, resume, say, template, stop) for o in orgs]
            _wait_or_stop(futures, stop, say)
            results = [f.result() if not f.cancelled() else OrgResult(o, None, 0.0, "interrupted: not started")
                       for f, o in zip(futures, orgs, strict=True)]
    return FleetResult(run_dir, results, time.perf_counter() - started, interrupted=stop.is_set())


def _wait_or_stop(futures: list, stop: threading.Event, say: Callable[[str], None]) -> None:
    """Wait for the orgs; a first Ctrl-C starts no new org and ends the running ones at their next phase
    boundary (the report is still written); a second one stops at once."""
    pending = set(futures)
    while pending:
        try:
            _done, pending = wait(pending, timeout=0.5)
        except KeyboardInterrupt:
            if stop.is_set():
                raise
            stop.set()
            cancelled = sum(f.cancel() for f in pending)
            say(f"Interrupted: {cancelled} org(s) not started; the running ones stop at their next phase "
                "(Ctrl-C again to stop at once)")


def _import_clients() -> None:
    """Import what the threads use before they start: concurrent first imports of one module can fail."""
    import_papermill()  # first: before anything else imports jsonschema
    import jupyter_client.manager  # noqa: F401
    import simple_salesforce
    import simple_salesforce.login  # noqa: F401
    import zeep  # noqa: F401

    import runbook.phases.overview  # noqa: F401


def _run_one(org: FleetOrg, run_dir: Path, resume: bool, say: Callable[[str], None],
             template: KernelTemplate | None, stop: threading.Event | None = None) -> OrgResult:
    started = time.perf_counter()
    say(f"[{org.name}] starting ({org.org})")
    try:
        summary = run_runbook(org=org.org, workdir=org.workdir, params=org.params, run_dir=run_dir,
                              fresh_org=org.fresh_org, resume=resume, local_org=org.local_org,
                              progress=lambda m: say(f"[{org.name}] {m}"), kernel_template=template,
                              stop=stop)
    except RunbookError as exc:
        result = OrgResult(org, None, time.perf_counter() - started, str(exc))
    except Exception as exc:  # one org's unexpected error must not stop the others
        last = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
        result = OrgResult(org, None, time.perf_counter() - started, error)
    else:
        result = OrgResult(org, summary, time.perf_counter() - started)
    say(f"[{org.name}] {'done' if result.ok else 'FAILED'} in {result.seconds:.1f} s"
        + (f": {result.error}" if result.error else ""))
    return result


def phase_status(result: OrgResult, phase: str) -> str:
    """done, failed, skipped (already done), or "not run" (an earlier phase failed)."""
    runs = {p.phase: p for p in result.summary.phases} if result.summary else {}
    return runs[phase].status if phase in runs else "not run"


def phase_names() -> list[str]:
    return list(PHASE_NAMES)
