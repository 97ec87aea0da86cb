"""Phase 2: the app — desired definition, a plan against the org, apply, read back.

The org is the source of truth: the app is read first, a plan lists exactly what would change
(``apply=False`` stops there), and apply creates the app or updates it in place. The consumer
key is made by the org on create and never sent back; after applying, the app is read again and
checked against the plan, because Salesforce has silently dropped fields on create before.
Fields owned by phase 3 (policies, pre-authorized profiles) are carried over untouched.

What kind of app it is (a connected app or an External Client App) is the seam's business
(``runbook.apps``): this module asks the kind to read, check and save, and never branches on it.
``app_kind="auto"`` lets the org decide (``choose_app_kind``).

Flows: ``jwt`` uploads the certificate ("Use digital signatures"); ``web`` (the web server flow) turns
on PKCE and makes the consumer secret optional, because the Salesforce CLI is a public client that
always sends a PKCE challenge and keeps no secret. A confidential client can still use the secret: on
create it is generated here and written to ``<workdir>/secrets/<app>.consumer_secret`` (mode 0600),
never shown (``consumer_secret_by="org"`` leaves it to the org: read it in Setup > Manage Consumer Details).

Preflight: a dry run asks the org with a check-only deploy (nothing saved); a real run lets the save
itself answer, since the org refuses it whole (round trips fewer). A refusal is a ``PreflightError``
naming the ways out.

Ownership: every app the runbook saves carries ``OWNER_MARKER`` in its description. An app of the same name
that has no marker and is not the one this work folder's record names was made by someone else: its
certificate and callback are what their integrations log in with, so the plan says so and applying it needs
``adopt=True``. A changed ``app_name`` never renames the app phase 2 made before: the plan names the one left
behind and the teardown command for it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field, replace
from html import escape
from pathlib import Path

from runbook.apps import KIND_NAMES, KINDS, SCOPES, Action, AppSpec, AppState, Change, find_app_kind, kind_named
from runbook.apps.model import OWNER_MARKER, Ownership, with_owner_marker
from runbook.errors import NO_ANSWER, InputError, PreflightError, SalesforceError
from runbook.fingerprints import pem_fingerprint
from runbook.phases import consumer_secret, rotation
from runbook.phases.certificate import certificate_pem
from runbook.salesforce import OrgSession
from runbook.salesforce.names import check_api_name
from runbook.work.ports import check_callback_port
from runbook.work.sfdx_project import apply_project_port, plan_project_port
from runbook.work.workdir import open_workdir

LABEL_MAX = 40  # the "Connected App Name" field in Setup
DESCRIPTION_MAX = 255  # [U] Setup's description fields; kept under it with the owner marker appended
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_SCOPES = ("api", "web", "refresh_token offline_access")
FLOWS = ("jwt", "web")
APP_KINDS = ("auto", *KIND_NAMES)
SECRET_BY = ("runbook", "org")
ADOPT_FIX = "set adopt=True to take it over, or choose another app_name"


@dataclass
class AppPlan:
    """What applying would do: create, update (with the field changes) or nothing."""

    action: Action
    spec: AppSpec
    changes: list[Change]
    current: AppState | None = field(default=None, repr=False)
    preflight: str = ""
    kind_choice: str = ""  # app_kind="auto": which kind, and why
    fallback: bool = False  # a connected-app create that becomes an External Client App if the org refuses it
    ownership: str = ""  # the app is in the org but not the runbook's: what applying would overwrite
    left_behind: str = ""  # app_name changed: the app phase 2 made before stays in the org, and its teardown

    @property
    def needs_adopt(self) -> bool:
        """An app someone else made, which applying would overwrite without ``adopt=True``."""
        return bool(self.ownership) and not self.spec.ownership.adopt

    @property
    def notes(self) -> list[tuple[str, str]]:
        """The plan's notes in the order a reader needs them: whose app it is first."""
        owner = self.ownership and (f"{self.ownership}. {ADOPT_FIX[0].upper()}{ADOPT_FIX[1:]}." if self.needs_adopt
                                    else f"{self.ownership}. adopt=True: applying takes it over and marks it as the "
                                         "runbook's.")
        return [(label, text) for label, text in (("Not the runbook's", owner), ("Renamed", self.left_behind),
                                                  ("App kind", self.kind_choice), ("Preflight", self.preflight))
                if text]

    @property
    def kind_name(self) -> str:
        return kind_named(self.spec.app_kind).title if self.spec.app_kind in KINDS else self.spec.app_kind

    def rows(self) -> list[tuple[str, str, str]]:
        rows = [(c.field, c.old, c.new) for c in self.changes]
        if self.action == "create":
            rows = [("(new app)", "", f"{self.spec.full_name} ({self.spec.label})")]
        project = self.spec.sfdx_project
        if project is not None and project.action != "none":
            rows.append((f"{project.path.name}: oauthLocalPort", str(project.old or ""), str(project.new)))
        return rows

    def __str__(self) -> str:
        name = self.spec.full_name
        head = {"create": f"Create {self.kind_name} {name}",
                "update": f"Update {self.kind_name} {name}: {len(self.changes)} change(s)",
                "none": f"The {self.kind_name} {name} is up to date: nothing to change"}[self.action]
        lines = [head] + [f"  {c.field}: {c.old or '(empty)'} -> {c.new or '(empty)'}" for c in self.changes]
        if self.spec.sfdx_project is not None and self.spec.sfdx_project.action != "none":
            lines.append(f"  {self.spec.sfdx_project}")
        lines += [f"  {label.lower()}: {text}" for label, text in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td>{escape(c)}</td></tr>"
                       for a, b, c in self.rows())
        table = f"<table><tr><th>Field</th><th>Now</th><th>After</th></tr>{rows}</table>" if rows else ""
        note = "".join(f"<p>{label}: {escape(text)}</p>" for label, text in self.notes)
        return f"<p><b>{escape(str(self).splitlines()[0])}</b></p>{table}{note}"


@dataclass
class AppResult:
    """The app as the org has it after phase 2."""

    app_kind: str
    full_name: str
    label: str
    consumer_key: str
    callback_url: str
    scopes: list[str]
    certificate_fingerprint: str
    action: Action
    applied: bool
    changes: list[dict]
    flows: list[str] = field(default_factory=lambda: ["jwt"])
    callback_port: int = 1717
    consumer_secret_file: str = ""  # a path (mode 0600), never the secret
    sfdx_project: str = ""
    kind_choice: str = ""  # app_kind="auto": which kind was chosen, and why
    warnings: list[str] = field(default_factory=list)
    access_hint: str = ""  # where the kind keeps the app's access (for phase 3)

    def as_dict(self) -> dict:
        return asdict(self)

    def _repr_html_(self) -> str:
        from runbook.phases.cards import copy_button

        rows = [("App", f"{self.label} ({self.full_name})"), ("Kind", self.app_kind),
                ("Consumer key", self.consumer_key or "(dry run: not created)"),
                ("Callback URL", self.callback_url), ("Scopes", ", ".join(self.scopes)),
                ("Certificate SHA-256", self.certificate_fingerprint or "(no jwt flow)"),
                ("Flows", ", ".join(self.flows)),
                ("Consumer secret", self.consumer_secret_file or "held by the org: Setup > Manage Consumer Details"
                 if "web" in self.flows else "(not used)"),
                ("Action", self.action + ("" if self.applied else " (dry run)")),
                *(("Warning", w) for w in self.warnings)]
        copy = {"Consumer key": self.consumer_key}  # the exact text, only once the org made one
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}"
                       f"{copy_button(copy[k]) if copy.get(k) else ''}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"


def parse_scopes(scopes: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    """Friendly scope names (or metadata enum names) → metadata enum values, order kept, no repeats."""
    items = [scopes] if isinstance(scopes, str) else list(scopes)
    if not items:
        raise InputError("scopes", scopes, f"give at least one scope, e.g. {list(DEFAULT_SCOPES)}")
    enum_values = {v.lower(): v for v in SCOPES.values()}
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        value = SCOPES.get(key) or enum_values.get(key)
        if value is None:
            raise InputError("scopes", item, f"use one of: {', '.join(sorted(SCOPES))}")
        if value not in out:
            out.append(value)
    return tuple(out)


def _choice(field_name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(field_name, value, f"use one of: {', '.join(allowed)}")
    return value


def parse_flows(flows) -> tuple[str, ...]:
    """``"jwt"``, ``"web"``, ``"jwt,web"`` or a list of them → a tuple in a stable order."""
    items = [f.strip() for f in flows.split(",")] if isinstance(flows, str) else list(flows or ())
    if not items:
        raise InputError("flows", flows, 'give "jwt", "web" or both, e.g. ["jwt", "web"]')
    for item in items:
        _choice("flows", item, FLOWS)
    return tuple(f for f in FLOWS if f in items)


def build_spec(*, app_name: str, label: str = "", contact_email: str, description: str = "",
               callback_port: int | str = 1717, scopes=DEFAULT_SCOPES, cert_path: str | Path = "",
               flows=("jwt",), app_kind: str = "auto", consumer_secret_by: str = "runbook",
               sfdx_project: str | Path = "", create_sfdx_project: bool = False, workdir: str | Path = "",
               adopt: bool = False) -> AppSpec:
    """Validate phase 2's parameters into an AppSpec; nothing is written (the port is bound and released).

    The jwt flow's certificate is ``cert_path``, else the one phase 1 recorded in ``workdir``. With
    ``app_kind="auto"`` the kind phase 2 recorded for this app name is kept (the org is asked only once).
    The description gets the owner marker; ``adopt`` lets phase 2 take over an app someone else made.
    """
    check_api_name(app_name)
    if not isinstance(label, str) or len(label) > LABEL_MAX:
        raise InputError("label", label, f"give a label of at most {LABEL_MAX} characters")
    label = label or app_name.replace("_", " ")
    if not label.strip():
        raise InputError("label", label, f"give a non-empty label of at most {LABEL_MAX} characters")
    if not isinstance(contact_email, str) or not EMAIL.match(contact_email):
        raise InputError("contact_email", contact_email, "give an email address like admin@example.com")
    description = _marked_description(description)
    if not isinstance(adopt, bool):
        raise InputError("adopt", adopt, "use True to take over an app of this name the runbook did not create, "
                         "else False")
    flow_t = parse_flows(flows)
    _choice("app_kind", app_kind, APP_KINDS)
    record = _phase2_record(workdir)
    if app_kind == "auto" and record.get("full_name") == app_name:
        app_kind = str(record.get("app_kind") or app_kind)  # the kind phase 2 recorded: the org is asked once
    _choice("consumer_secret_by", consumer_secret_by, SECRET_BY)
    scope_t = parse_scopes(scopes)
    certificate = certificate_pem(_certificate_path(workdir, cert_path)) if "jwt" in flow_t else ""
    port = check_callback_port(callback_port)
    return AppSpec(
        full_name=app_name, label=label, contact_email=contact_email, description=description,
        callback_url=f"http://localhost:{port}/OauthRedirect", callback_port=port, scopes=scope_t,
        certificate=certificate, flows=flow_t, app_kind=app_kind, consumer_secret_by=consumer_secret_by,
        sfdx_project=plan_project_port(sfdx_project, port, create=bool(create_sfdx_project)),
        ownership=Ownership(recorded_app=str(record.get("full_name") or ""),
                            workdir=str(open_workdir(workdir).root) if workdir else "", adopt=adopt),
    )


def _marked_description(description: str) -> str:
    """The description as saved: the user's text and the owner marker, within the field's length."""
    if not isinstance(description, str):
        raise InputError("description", description, "give the description as text")
    marked = with_owner_marker(description)
    if len(marked) > DESCRIPTION_MAX:
        room = DESCRIPTION_MAX - len(OWNER_MARKER) - 1
        raise InputError("description", description, f"use at most {room} characters: the runbook appends "
                         f"{OWNER_MARKER} ({len(OWNER_MARKER) + 1} characters) to mark the app as its own",
                         problem=f"{len(description)} characters")
    return marked


def _phase2_record(workdir: str | Path) -> dict:
    """Phase 2's record in ``workdir`` (empty without one): the app it made there, and its kind."""
    return (open_workdir(workdir).load("connected_app") or {}) if workdir else {}


def plan_connected_app(session: OrgSession, spec: AppSpec, *, apply: bool = True) -> AppPlan:
    """Read the org's app and list what applying ``spec`` would change.

    A create is checked before anything is saved: by a check-only deploy in a dry run (``apply``
    False); when applying, by the save itself, which the org refuses whole (round trips fewer).
    ``app_kind="auto"`` is decided here (``choose_app_kind``); the plan says which kind and why. It also says
    whose app it is (``ownership``) and, after an ``app_name`` change, which app stays behind (``left_behind``).
    """
    plan = choose_app_kind(session, spec, apply=apply) if spec.app_kind == "auto" else \
        _plan_kind(session, spec, apply)
    plan.left_behind = _left_behind(session, spec)
    return plan


def _plan_kind(session: OrgSession, spec: AppSpec, apply: bool) -> AppPlan:
    """The plan for a named kind: a create, or the field changes of the app the org has."""
    kind = kind_named(spec.app_kind)
    kind.check_spec(spec)
    current = kind.read(session, spec.full_name)
    if current is None:
        return _create_plan(session, spec, apply)
    now, want = current.fields, kind.desired(spec)
    changes = [Change(k, now.get(k, ""), want[k]) for k in want if now.get(k, "") != want[k]]
    return AppPlan("update" if changes else "none", spec, changes, current,
                   ownership=_not_ours(spec, current, changes))


def _not_ours(spec: AppSpec, current: AppState, changes: list[Change]) -> str:
    """Why the app in the org is someone else's, and what applying would overwrite; "" when it is the runbook's.

    The runbook's apps carry the owner marker, or (made before the marker) are the one the work folder records.
    """
    if current.marked or spec.ownership.records(spec.full_name):
        return ""
    recorded = spec.ownership.recorded_app
    record = f"this work folder's phase 2 record names {recorded}" if recorded else \
        "no phase 2 record in this work folder names it"
    return (f"{spec.full_name} is in the org, but the runbook did not create it: its description has no "
            f"{OWNER_MARKER} and {record}. Applying overwrites {', '.join(c.field for c in changes)}, which its "
            "current users log in with")


def _left_behind(session: OrgSession, spec: AppSpec) -> str:
    """After an ``app_name`` change: the app phase 2 made before stays in the org; how to delete it."""
    old = spec.ownership.recorded_app
    if not old or spec.ownership.records(spec.full_name):
        return ""
    command = shlex.join(["runbook", "teardown", "--app", old, "--workdir", spec.ownership.workdir])
    org = "" if session.is_local else " --org ORG (ORG: the --org of this run)"
    return (f"app_name changed from {old} to {spec.full_name}: {old}, which phase 2 made before (recorded in "
            f"{spec.ownership.workdir}), is not renamed and stays in the org with its consumer key and "
            f"pre-authorizations; once nothing logs in with it, delete it with: {command}{org}")


def _create_plan(session: OrgSession, spec: AppSpec, apply: bool, **extra) -> AppPlan:
    kind = kind_named(spec.app_kind)
    preflight = kind.preflight(session, spec) if not apply else \
        "checked by the create itself (a refused create saves nothing)"
    return AppPlan("create", spec, [], None, preflight=preflight, **extra)


def choose_app_kind(session: OrgSession, spec: AppSpec, *, apply: bool = True) -> AppPlan:
    """The plan for ``app_kind="auto"``: an existing app keeps its kind; a new one is what the org allows.

    One listMetadata call asks for every kind by name. With none in the org, the first kind the org takes
    is planned, in ``KINDS`` order: a connected app where the org still allows one (Salesforce still advises
    it for a Dev Hub that creates scratch orgs [V SF DX guide 262.0]), else an External Client App. A dry run
    asks by check-only deploys; an apply lets the save ask, and falls back to the next kind if it is refused.
    """
    existing = find_app_kind(session, spec.full_name)
    if existing is not None:
        plan = _plan_kind(session, replace(spec, app_kind=existing.name), apply)
        plan.kind_choice = f"the org has {_article(existing.title)} {existing.title} named {spec.full_name}: kept " \
                           "as that kind"
        return plan
    first, *others = KINDS.values()
    if apply:
        return AppPlan("create", replace(spec, app_kind=first.name), [], None, fallback=True,
                       preflight="checked by the create itself (a refused create saves nothing)",
                       kind_choice=f"{_article(first.title)} {first.title} if the org allows new ones (the create "
                                   f"asks), else {_article(others[0].title)} {others[0].title}")
    try:
        return _create_plan(session, replace(spec, app_kind=first.name), apply,
                            kind_choice=f"the org allows new {first.title}s: {_article(first.title)} {first.title}, "
                                        "which Salesforce still advises for a Dev Hub that creates scratch orgs")
    except PreflightError as refusal:
        return _instead(session, spec, refusal, apply)


def _article(title: str) -> str:
    return "an" if title[0] in "aeiou" else "a"


def _instead(session: OrgSession, spec: AppSpec, refusal: PreflightError, apply: bool) -> AppPlan:
    """A create plan for the next kind, when the org refused a new app of the first (nothing exists yet)."""
    _first, second, *_rest = KINDS.values()
    chosen = replace(spec, app_kind=second.name)
    second.check_spec(chosen)
    return _create_plan(session, chosen, apply,
                        kind_choice=f"the org does not allow new {_first.title}s ({refusal.sf_message}): "
                                    f"{_article(second.title)} {second.title} instead")


def check_readback(plan: AppPlan, want: dict[str, str], got: dict[str, str]) -> None:
    """Raise when the org did not keep a field the plan set (Salesforce has dropped fields silently)."""
    drift = sorted(k for k, v in want.items() if got.get(k) != v)
    if drift:
        raise SalesforceError(f"{plan.action} {plan.kind_name} {plan.spec.full_name}", "READBACK_MISMATCH",
                              f"the org did not keep {', '.join(drift)}",
                              f"rerun the phase; if it persists, set the field in "
                              f"{kind_named(plan.spec.app_kind).setup_path}")


def apply_plan(session: OrgSession, plan: AppPlan, secret: str | None = None) -> AppState | None:
    """Create or update the app as planned; the app as read back (as read for the plan with nothing to change)."""
    if plan.action == "none":
        return plan.current
    kind = kind_named(plan.spec.app_kind)
    after = kind.save(session, plan.spec, plan.current, secret)
    check_readback(plan, kind.desired(plan.spec), after.fields)
    return after


def apply_connected_app(session: OrgSession, plan: AppPlan, *, workdir: str | Path,
                        apply: bool = True) -> AppResult:
    """Apply ``plan`` (unless ``apply`` is False: a dry run) and record the consumer key.

    The web flow's consumer secret is written (pending) before the create sends it; see
    ``runbook.phases.consumer_secret`` for what a lost answer, a refusal and a rerun do with it. An app someone else
    made is refused (``adopt``) before anything is written.
    """
    if apply and plan.needs_adopt:
        raise InputError("adopt", plan.spec.ownership.adopt, ADOPT_FIX, problem=plan.ownership)
    spec, warnings = plan.spec, [text for text in (plan.left_behind, plan.ownership if plan.needs_adopt else "")
                                 if text]
    makes_secret = spec.web_flow and spec.consumer_secret_by == "runbook"
    pending = consumer_secret.pending_secret(workdir, spec.full_name) if makes_secret else None
    if apply and plan.action == "create" and makes_secret:
        pending = pending or consumer_secret.write_pending(workdir, spec.full_name)
    rotated = rotation.pending_rotation(workdir, spec, plan.current) if apply and plan.action == "update" else None
    try:
        after, plan = _apply_with_fallback(session, plan, pending.value if pending else None, apply)
    except SalesforceError as exc:
        if not (pending and plan.action == "create"):
            raise
        if exc.code != NO_ANSWER:
            consumer_secret.discard(pending)  # the org answered no: it holds no secret of ours
            raise
        raise SalesforceError(exc.operation, exc.code, exc.sf_message,
                              f"rerun phase 2: it reads the org first, so nothing is made twice; the consumer "
                              f"secret sent with the create is kept in {pending.path} (pending) and adopted if "
                              "the org made the app") from None
    spec = plan.spec
    if rotated is not None and after is not None:  # prove the new key at once; undone (and raised) if it fails
        warnings.append(rotation.cut_over(session, spec, after, workdir=workdir, backup=rotated))
    if apply and pending:
        consumer_secret.confirm(pending)  # created now, or by the earlier create whose answer was lost
    secret_path = consumer_secret.secret_file(workdir, spec.full_name)
    if apply and makes_secret and plan.action != "create" and not secret_path.is_file():
        warnings.append(consumer_secret.unknown_secret_warning(secret_path, spec.full_name))
    if apply:
        apply_project_port(spec.sfdx_project)
    result = AppResult(
        app_kind=spec.app_kind, full_name=spec.full_name, label=spec.label,
        consumer_key=after.consumer_key if after else "", callback_url=spec.callback_url, scopes=list(spec.scopes),
        certificate_fingerprint=pem_fingerprint(spec.certificate), action=plan.action, applied=apply,
        changes=[asdict(c) for c in plan.changes], flows=list(spec.flows), callback_port=spec.callback_port,
        consumer_secret_file=str(secret_path) if spec.web_flow and secret_path.is_file() else "",
        sfdx_project=str(spec.sfdx_project.path) if spec.sfdx_project else "",
        kind_choice=plan.kind_choice, warnings=warnings, access_hint=after.access_hint if after else "",
    )
    if apply:
        open_workdir(workdir).save("connected_app", result.as_dict())
    return result


def _apply_with_fallback(session: OrgSession, plan: AppPlan, secret: str | None,
                         apply: bool) -> tuple[AppState | None, AppPlan]:
    """The app after applying and the plan that was applied: the next kind where ``auto``'s first create
    was refused."""
    if not apply:
        return plan.current, plan
    try:
        after = apply_plan(session, plan, secret)
    except PreflightError as refusal:
        if not plan.fallback:
            raise
        plan = _instead(session, plan.spec, refusal, apply=True)
        return apply_plan(session, plan, secret), plan
    if plan.fallback:  # the create answered yes: say what was chosen, not what might have been
        title = kind_named(plan.spec.app_kind).title
        plan = replace(plan, kind_choice=f"the org allowed a new {title}: {_article(title)} {title}, which "
                                         "Salesforce still advises for a Dev Hub that creates scratch orgs")
    return after, plan


def ensure_connected_app(session: OrgSession, spec: AppSpec, *, workdir: str | Path,
                         apply: bool = True) -> tuple[AppPlan, AppResult]:
    """Phase 2 in one call: plan, then apply."""
    plan = plan_connected_app(session, spec, apply=apply)
    return plan, apply_connected_app(session, plan, workdir=workdir, apply=apply)


def _certificate_path(workdir: str | Path, cert_path: str | Path = "") -> Path:
    """The certificate to upload: the parameter, else the one phase 1 recorded."""
    if cert_path:
        return Path(cert_path).expanduser()
    record = open_workdir(workdir).load("certificate") if workdir else None
    if record is None:
        raise InputError("cert_path", str(cert_path), "the jwt flow needs a certificate: run phase 1 "
                         "(01_certificate) first, or give cert_path")
    return Path(record["cert_path"])
