"""What a run tells when it ends: this run's outcome only, and on a failure what it changed and how to go on.

A failed run never reads like a success: the app, consumer key and login lines are shown only for phases
that ran (or were found done and skipped) in this run, and a failure says which phase failed and why,
what the run had already changed (a key written, an app created, policies saved) and the exact command to
continue (``runbook run --resume …``, which reruns what failed or changed and everything after it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from runbook.work.workdir import open_workdir

Status = Literal["done", "failed", "skipped", "interrupted"]
_GOOD = ("done", "skipped")


@dataclass
class PhaseRun:
    phase: str
    notebook: Path
    output: Path
    seconds: float
    status: Status
    error: str = ""


@dataclass
class RunSummary:
    run_dir: Path
    workdir: Path
    org: str
    phases: list[PhaseRun] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # what the user gave (never a secret: refused earlier)

    @property
    def ok(self) -> bool:
        return all(p.status in _GOOD for p in self.phases)

    @property
    def interrupted(self) -> bool:
        return any(p.status == "interrupted" for p in self.phases)

    def _status(self, phase: str) -> str:
        return next((p.status for p in self.phases if p.phase == phase), "not run")

    def lines(self) -> list[str]:
        wd = open_workdir(self.workdir)
        out = [f"{p.phase:<14} {p.status:<11} {p.seconds:6.2f} s  {p.output}" for p in self.phases]
        app = wd.load("connected_app") or {} if self._status("connected_app") in _GOOD else {}
        verify = wd.load("verify") or {} if self._status("verify") in _GOOD else {}
        if app:
            out += [f"App:            {app['label']} ({app['full_name']}, {app['app_kind']})",
                    *([f"App kind:       {app['kind_choice']}"] if app.get("kind_choice") else []),
                    f"Consumer key:   {app['consumer_key']}"]
        logins = ", ".join(lr["username"] for lr in verify.get("logins", []))
        if logins:
            out += [f"JWT login as:   {logins} (org {verify['logins'][0]['org_id']})",
                    f"CLI command:    {verify['sf_command']}",
                    *(f"Note:           {note}" for note in verify.get("notes", []))]
        proof = verify.get("scratch_proof") or {}
        if proof:
            out.append(f"Scratch org:    {_proof_line(proof)}")
        out += self._failure_lines(wd)
        out.append(f"Executed notebooks: {self.run_dir}")
        return out

    def _failure_lines(self, wd) -> list[str]:
        stopped = next((p for p in self.phases if p.status not in _GOOD), None)
        if stopped is None:
            return []
        head = (f"INTERRUPTED in {stopped.phase} (Ctrl-C): the kernel was stopped; the notebook as far as it ran is "
                f"{stopped.output}" if stopped.status == "interrupted" else f"FAILED {stopped.phase}: {stopped.error}")
        changed = _changes(wd, [p.phase for p in self.phases if p.status == "done"])
        return [head, "Changed by this run: " + ("; ".join(changed) if changed else "nothing"),
                f"To continue: {self.resume_command()}"]

    def resume_command(self) -> str:
        """The command that continues this run: what failed or changed is redone, and everything after it."""
        parts = ["runbook", "run", "--resume", "--org", self.org, "--workdir", str(self.workdir)]
        for name, value in self.params.items():
            text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
            parts += ["-p", f"{name}={text.removesuffix(chr(10) + '...').strip()}"]
        return shlex.join(parts)


def _proof_line(proof: dict) -> str:
    """Phase 4's scratch-org proof (its record) in one line: the outcome, the total seconds and each step's."""
    from runbook.phases.scratch_proof import ScratchProof

    return ScratchProof(**{k: v for k, v in proof.items() if k != "seconds"}).summary()


def _changes(wd, done: list[str]) -> list[str]:
    """What the phases that finished in this run changed, from their records."""
    out = []
    if "certificate" in done:
        cert = wd.load("certificate") or {}
        if cert.get("action") in ("generated", "rotated", "generated certificate for existing key"):
            out.append(f"key pair {cert['action']} ({cert.get('key_path')})")
    if "connected_app" in done:
        app = wd.load("connected_app") or {}
        if app.get("action") in ("create", "update") and app.get("applied"):
            out.append(f"{app['app_kind'].replace('_', ' ')} {app['full_name']} "
                       f"{'created' if app['action'] == 'create' else 'updated'} in the org")
    if "access" in done:
        access = wd.load("access") or {}
        if access.get("applied") and access.get("changes"):
            out.append(f"policies and access saved ({'; '.join(access['changes'])})")
    return out
