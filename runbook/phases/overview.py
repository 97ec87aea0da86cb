"""Where you stand: each phase done, pending or failed, read from the work folder and the org.

Nothing is remembered between calls: a phase is *pending* until its record is in the work folder,
*done* when the record still holds against the files and the org (the key matches its certificate, the
app trusts that certificate and has the recorded consumer key, the policies and pre-authorizations are
in place, the verified login used the current app and key), and *failed* when the record and reality
disagree, with the reason and the phase to rerun. Without a session, the org checks are skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Literal, get_args

from runbook.errors import RunbookError
from runbook.phases import PHASES
from runbook.work.workdir import DEFAULT_WORKDIR, open_workdir

State = Literal["done", "pending", "failed"]
STATES: tuple[State, ...] = get_args(State)
_BADGE = {"done": ("✓ done", "#1a7f37", "#dafbe1"), "pending": ("○ pending", "#57606a", "#f6f8fa"),
          "failed": ("✗ failed", "#cf222e", "#ffebe9")}


@dataclass
class PhaseState:
    """One phase as it stands: ``state`` is done, pending or failed; ``detail`` says why in a line."""

    phase: str
    title: str
    notebook: str
    state: State
    detail: str


@dataclass
class Overview:
    """The four phases as they stand, for the notebook (HTML) and the terminal (text)."""

    workdir: Path
    org_checked: str  # how the org was checked, or why it was not
    phases: list[PhaseState] = field(default_factory=list)

    def state(self, phase: str) -> str:
        return next(p.state for p in self.phases if p.phase == phase)

    @property
    def next_phase(self) -> PhaseState | None:
        """The first phase that is not done: where to go next."""
        return next((p for p in self.phases if p.state != "done"), None)

    def __str__(self) -> str:
        lines = [f"{p.title:<24} {p.state:<8} {p.detail}" for p in self.phases]
        nxt = self.next_phase
        lines.append(f"Next: {nxt.notebook}" if nxt else "All four phases are done.")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cards = []
        for p in self.phases:
            badge, color, background = _BADGE[p.state]
            cards.append(
                f"<div class='runbook-phase' data-phase='{p.phase}' data-state='{p.state}' style='flex:1;"
                f"min-width:150px;border:2px solid {color};border-radius:8px;padding:8px;background:{background}'>"
                f"<div style='font-weight:600'><a href='{escape(p.notebook)}'>{escape(p.title)}</a></div>"
                f"<div class='runbook-phase-state' style='color:{color};font-weight:600'>{badge}</div>"
                f"<div style='font-size:90%'>{escape(p.detail)}</div></div>")
        arrow = "<div style='align-self:center;font-size:140%;color:#8c959f'>→</div>"
        nxt = self.next_phase
        footer = (f"Next: <a href='{escape(nxt.notebook)}'>{escape(nxt.notebook)}</a>" if nxt
                  else "All four phases are done.")
        return (f"<div class='runbook-overview'><div style='display:flex;gap:6px;align-items:stretch'>"
                f"{arrow.join(cards)}</div><div style='margin-top:6px;font-size:90%'>{footer} · work folder "
                f"<code>{escape(str(self.workdir))}</code> · org: {escape(self.org_checked)}</div></div>")


def phase_overview(workdir: str | Path, session=None) -> Overview:
    """Each phase's state from ``workdir``'s records, checked against the org when ``session`` is given."""
    wd = open_workdir(workdir)
    checked = session.method if session is not None else "not checked (no session)"
    states = {
        "certificate": _certificate_state(wd),
        "connected_app": _app_state(wd, session),
        "access": _access_state(wd, session),
        "verify": _verify_state(wd),
    }
    return Overview(wd.root, checked, [PhaseState(p.name, p.title, p.notebook, *states[p.name]) for p in PHASES])


def show_overview(org: str = "local", *, workdir: str | Path = DEFAULT_WORKDIR, api_version: str = "62.0") -> Overview:
    """Connect to ``org`` (as the phases do) and return the overview; without a connection, the work folder only."""
    from runbook.salesforce import connect

    try:
        session = connect(org, workdir=workdir, api_version=api_version)
    except RunbookError as exc:
        overview = phase_overview(workdir)
        overview.org_checked = f"not checked: {exc}"
        return overview
    return phase_overview(workdir, session)


def _certificate_state(wd) -> tuple[str, str]:
    from runbook.fingerprints import fingerprint
    from runbook.phases.certificate import load_certificate

    record = wd.load("certificate")
    if record is None:
        return "pending", "no key pair yet"
    key, cert_path = Path(record["key_path"]), Path(record["cert_path"])
    if not key.is_file():
        return "failed", f"the key {key} is gone: rerun phase 1 (it makes a new pair)"
    try:
        cert = load_certificate(cert_path)
    except RunbookError as exc:
        return "failed", f"{exc} — rerun phase 1"
    if fingerprint(cert) != record["sha256_fingerprint"]:
        return "failed", "the certificate file changed since phase 1 recorded it: rerun phase 1"
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        return "failed", f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}: rerun phase 1 with rotate"
    return "done", f"RSA {record['key_size']}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"


def _app_state(wd, session) -> tuple[str, str]:
    from runbook.apps import kind_named
    from runbook.fingerprints import pem_fingerprint

    record = wd.load("connected_app")
    if record is None:
        return "pending", "no app yet"
    name, cert = record["full_name"], wd.load("certificate") or {}
    if cert and record["certificate_fingerprint"] != cert.get("sha256_fingerprint"):
        return "failed", f"{name} trusts an older certificate than phase 1's: rerun phase 2"
    if session is None:
        return "done", f"{record['label']} ({name}), consumer key {_short(record['consumer_key'])}"
    try:
        app = kind_named(record["app_kind"]).read(session, name)
    except RunbookError as exc:
        return "failed", f"could not read {name} from the org: {exc}"
    if app is None:
        return "failed", f"the org has no app {name} any more: rerun phase 2"
    if app.consumer_key != record["consumer_key"]:
        return "failed", f"the org's consumer key for {name} is not the recorded one: rerun phase 2"
    if cert and pem_fingerprint(app.certificate) != cert.get("sha256_fingerprint"):
        return "failed", "the app in the org trusts another certificate: rerun phase 2"
    return "done", f"{app.label} ({name}), consumer key {_short(record['consumer_key'])}"


def _access_state(wd, session) -> tuple[str, str]:
    from runbook.phases.access import build_access_spec, plan_access

    record = wd.load("access")
    if record is None:
        return "pending", "no policies or pre-authorizations yet"
    who = ", ".join(record["profiles"] + record["permission_sets"]) or "nobody"
    summary = f"{'admin approved' if record['admin_approved'] else 'self-authorize'}; pre-authorized: {who}"
    if session is None:
        return "done", summary
    try:
        spec = build_access_spec(app_name=record["app_name"],
                                 permitted_users="admin_approved" if record["admin_approved"] else "all_users",
                                 ip_relaxation=record["ip_relaxation"],
                                 refresh_token_policy=record["refresh_token_policy"], profiles=record["profiles"],
                                 permission_sets=record["permission_sets"], workdir=wd.root)
        plan = plan_access(session, spec)
    except RunbookError as exc:
        return "failed", f"{exc} — rerun phase 3"
    if plan.policy_changes or plan.add:  # extra grants (plan.remove) only count with exclusive=True
        return "failed", f"the org differs ({'; '.join(plan.lines())}): rerun phase 3"
    return "done", summary


def _verify_state(wd) -> tuple[str, str]:
    record = wd.load("verify")
    if record is None:
        return "pending", "no JWT login yet"
    app, cert = wd.load("connected_app") or {}, wd.load("certificate") or {}
    if record["consumer_key"] != app.get("consumer_key") or \
            record.get("certificate_fingerprint") != cert.get("sha256_fingerprint"):
        return "failed", "verified with an earlier app or key: rerun phase 4"
    users = ", ".join(lr["username"] for lr in record["logins"])
    when = dt.datetime.fromtimestamp(wd.record_path("verify").stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return "done", f"JWT login as {users} ({when})"


def _short(consumer_key: str) -> str:
    return consumer_key[:12] + "…" if len(consumer_key) > 12 else consumer_key
