"""``--resume`` by inputs and outcomes: a phase is skipped only if its last run succeeded with the inputs it
would run with now, and the work folder and the org still say it is done.

After each phase the batch records ``<workdir>/phases/<phase>.run.json``: the phase's effective inputs
(its parameters with their defaults, plus what it builds on: the certificate's fingerprint, the app's kind
and consumer key) and the outcome. A resume reruns the first phase whose last run failed, whose inputs
changed, or that the overview finds not done, and every phase after it, and says why for each.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from runbook.phases import PHASES, Phase, phase_named
from runbook.phases.parameters import effective
from runbook.work.workdir import Workdir


def inputs_of(phase: Phase, params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    """What ``phase`` would run with now: its effective parameters and the earlier phases' results it uses."""
    inputs = {k: v for k, v in effective(phase, params).items() if k != "workdir"}
    names = [p.name for p in PHASES]
    if names.index(phase.name) > 0:
        inputs["(certificate)"] = (wd.load("certificate") or {}).get("sha256_fingerprint", "")
    if names.index(phase.name) > 1:
        app = wd.load("connected_app") or {}
        inputs["(app)"] = f"{app.get('app_kind', '')}:{app.get('full_name', '')}:{app.get('consumer_key', '')}"
    return inputs


def record_outcome(wd: Workdir, phase: str, inputs: dict[str, Any], status: str, error: str = "") -> None:
    wd.record_run(phase, {"inputs": inputs, "outcome": status, "error": error,
                          "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})


@dataclass(frozen=True)
class Decision:
    phase: str
    rerun: bool
    why: str


def decide(selected: list[str], params: dict[str, Any], wd: Workdir, done: set[str]) -> list[Decision]:
    """For each selected phase in order: skip it, or rerun it (and all after it), and why."""
    out: list[Decision] = []
    for name in selected:
        if out and out[-1].rerun:
            out.append(Decision(name, True, f"after {out[-1].phase}: rerun"))
            continue
        last = wd.last_run(name)
        now = inputs_of(phase_named(name), params, wd)
        if last is None:
            out.append(Decision(name, True, "no run of it recorded: run"))
        elif last.get("outcome") != "done":
            out.append(Decision(name, True, f"its last run {last.get('outcome')}: rerun"))
        elif (changed := sorted(k for k in now.keys() | last["inputs"].keys()
                                if now.get(k) != last["inputs"].get(k))):
            out.append(Decision(name, True, f"inputs changed ({', '.join(changed)}): rerun"))
        elif name not in done:
            out.append(Decision(name, True, "the work folder or the org no longer says it is done: rerun"))
        else:
            out.append(Decision(name, False, "done, inputs unchanged: skipped"))
    return out

