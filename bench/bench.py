"""`make bench`: the runbook's speed and cost, measured on this machine against the local org.

Prints: key generation time; wall time per phase through papermill next to the floor (the same
package calls made directly in one process, plus one measured kernel start); org round trips per
phase for a fresh setup and for a rerun with nothing to change, counted by the local org itself.
"""

from __future__ import annotations

import statistics
import tempfile
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


def _kernel_start_seconds() -> float:
    from jupyter_client.manager import start_new_kernel

    started = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3")
    elapsed = time.perf_counter() - started
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return elapsed


def _floor_run(workdir: Path) -> dict[str, float]:
    """The same package calls the notebooks make, in this process: the cost of the work itself."""
    from runbook.access import apply_access_plan, build_access_spec, plan_access
    from runbook.certificate import ensure_certificate
    from runbook.connected_app import apply_connected_app, build_spec, cert_path_from_workdir, plan_connected_app
    from runbook.org import connect
    from runbook.verify import verify_setup

    times = {}
    started = time.perf_counter()
    ensure_certificate(workdir=workdir, app_name="Runbook_CI")
    times["certificate"] = time.perf_counter() - started
    started = time.perf_counter()
    session = connect("local", workdir=workdir)
    spec = build_spec(app_name="Runbook_CI", contact_email="admin@example.com",
                      cert_path=cert_path_from_workdir(workdir))
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


def _papermill_run(workdir: Path, runs: Path, org) -> tuple[dict[str, float], dict[str, Counter], float]:
    """One `runbook run`, with each phase's org calls counted by the local org."""
    from runbook.batch import run_runbook

    marks: list[tuple[str, int]] = []

    def progress(message: str) -> None:
        if message.endswith(".ipynb") and "running" in message:
            marks.append((message.split("]")[0].strip("["), len(org.call_log())))

    started = time.perf_counter()
    summary = run_runbook(workdir=workdir, runs_dir=runs, progress=progress)
    total = time.perf_counter() - started
    assert summary.ok, summary.lines()
    calls = org.call_log()
    bounds = [m[1] for m in marks] + [len(calls)]
    per_phase = {}
    for (phase, start), end in zip(marks, bounds[1:], strict=True):
        per_phase[phase] = Counter("write" if c.is_write else "read" for c in calls[start:end])
    return {p.phase: p.seconds for p in summary.phases}, per_phase, total


def bench_runbook() -> None:
    from runbook.org import start_local_org, stop_local_orgs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kernel = _kernel_start_seconds()
        floor_dir = root / "floor"
        start_local_org(floor_dir / "localorg")
        floor = _floor_run(floor_dir)
        work = root / "work"
        org = start_local_org(work / "localorg")
        fresh_times, fresh_calls, fresh_total = _papermill_run(work, root / "runs", org)
        _rerun_times, rerun_calls, rerun_total = _papermill_run(work, root / "runs", org)
        stop_local_orgs()
    floor_total = sum(floor.values()) + kernel
    print("\n## Wall time, fresh setup (seconds)")
    print(f"{'phase':<14} {'papermill':>9} {'floor':>7}")
    for phase, seconds in fresh_times.items():
        print(f"{phase:<14} {seconds:9.2f} {floor[phase]:7.2f}")
    print(f"{'kernel start':<14} {'':>9} {kernel:7.2f}")
    print(f"{'whole run':<14} {fresh_total:9.2f} {floor_total:7.2f}   ratio {fresh_total / floor_total:.2f}x "
          "(goal <= 1.3x)")
    print(f"rerun, nothing to change: {rerun_total:.2f} s")
    print("\n## Org round trips per phase (counted by the local org)")
    print(f"{'phase':<14} {'fresh r/w':>10} {'rerun r/w':>10}")
    for phase in fresh_calls:
        f, r = fresh_calls[phase], rerun_calls.get(phase, Counter())
        print(f"{phase:<14} {f['read']:>4}/{f['write']:<5} {r['read']:>4}/{r['write']:<5}")
    fresh_sum = sum(sum(c.values()) for c in fresh_calls.values())
    rerun_reads = sum(c["read"] for c in rerun_calls.values())
    rerun_writes = sum(c["write"] for c in rerun_calls.values())
    print(f"total fresh: {fresh_sum} (goal <= 8); rerun: {rerun_writes} writes (goal 0), "
          f"{rerun_reads} reads (goal <= 4)")


def main() -> None:
    bench_keygen()
    bench_runbook()


if __name__ == "__main__":
    main()
