"""Taking the app out of the org again: its pre-authorizations, its components, then the app.

The plan is read from the org first and shown; nothing is deleted unless it is applied. Works for
both kinds: a connected app (``ConnectedApp`` and its ``SetupEntityAccess`` rows) and an external
client app (its four settings and policies components, then ``ExternalClientApplication``). The
work folder's phase 2–4 records and the consumer secret file for the app are removed with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from runbook import metadata, rest
from runbook.connected_app import METADATA_TYPE, check_api_name
from runbook.consumer_secret import secret_file
from runbook.errors import InputError, SalesforceError
from runbook.external_client_app import APP, COMPONENTS, component_names
from runbook.org import OrgSession
from runbook.workdir import open_workdir

LATER_PHASES = ("connected_app", "access", "verify")


@dataclass
class TeardownPlan:
    """What deleting the app would remove, as read from the org."""

    app_name: str
    app_kind: str  # connected_app | external_client_app | "" (not in the org)
    components: list[tuple[str, str]] = field(default_factory=list)  # (type, fullName), deleted in order
    access_rows: list[str] = field(default_factory=list)  # SetupEntityAccess Ids
    files: list[Path] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.components or self.access_rows or self.files)

    def lines(self) -> list[str]:
        out = [f"delete {len(self.access_rows)} pre-authorization(s) (SetupEntityAccess)"] if self.access_rows else []
        out += [f"delete {t} {n}" for t, n in self.components]
        out += [f"remove {p}" for p in self.files]
        return out or [f"nothing to delete: the org has no app {self.app_name}"]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{escape(line)}</li>" for line in self.lines())
        return f"<b>Teardown plan for {escape(self.app_name)}</b><ul>{items}</ul>"


def _access_rows(session: OrgSession, sobject: str, where: str) -> list[str]:
    apps = rest.query(session, f"SELECT Id FROM {sobject} WHERE {where}")
    if not apps:
        return []
    rows = rest.query(session, f"SELECT Id FROM SetupEntityAccess WHERE SetupEntityId = {rest.quote(apps[0]['Id'])}")
    return [row["Id"] for row in rows]


def plan_teardown(session: OrgSession, app_name: str, *, workdir: str | Path | None = None) -> TeardownPlan:
    """Read what the org (and the work folder) holds for ``app_name``; nothing is deleted."""
    check_api_name(app_name, "app")
    plan = TeardownPlan(app_name, "")
    app = metadata.read(session, METADATA_TYPE, app_name)
    if app is not None:
        plan.app_kind = "connected_app"
        label = app.get("label") or app_name
        plan.access_rows = _access_rows(session, "ConnectedApplication", f"Name = {rest.quote(label)}")
        plan.components = [(METADATA_TYPE, app_name)]
    elif metadata.read(session, APP, app_name) is not None:
        plan.app_kind = "external_client_app"
        plan.access_rows = _access_rows(session, APP, f"DeveloperName = {rest.quote(app_name)}")
        names = component_names(app_name)
        plan.components = [(t, names[t]) for t in reversed(COMPONENTS) if t == APP or
                           metadata.read(session, t, names[t]) is not None]
    if workdir is not None:
        wd = open_workdir(workdir)
        record = wd.load("connected_app") or {}
        if record.get("full_name") == app_name:
            plan.files = [wd.record_path(p) for p in LATER_PHASES if wd.record_path(p).is_file()]
        secret = secret_file(workdir, app_name)
        plan.files += [secret] if secret.is_file() else []
    return plan


def apply_teardown(session: OrgSession, plan: TeardownPlan) -> None:
    """Delete what ``plan`` lists, then check the org has no app of that name left."""
    for row_id in plan.access_rows:
        rest.delete(session, "SetupEntityAccess", row_id)
    for type_name, full_name in plan.components:
        metadata.delete(session, type_name, full_name)
    for path in plan.files:
        path.unlink(missing_ok=True)
    if plan.components and (metadata.read(session, METADATA_TYPE, plan.app_name) is not None
                            or metadata.read(session, APP, plan.app_name) is not None):
        raise SalesforceError(f"delete {plan.app_name}", "READBACK_MISMATCH", "the app is still in the org",
                              "delete it in Setup > App Manager (or External Client App Manager)")


def teardown_app(session: OrgSession, app_name: str, *, workdir: str | Path | None = None,
                 apply: bool = False) -> TeardownPlan:
    """Plan the teardown of ``app_name`` and, with ``apply=True``, carry it out; returns the plan."""
    if not isinstance(apply, bool):
        raise InputError("apply", apply, "use True to delete, False to only show the plan")
    plan = plan_teardown(session, app_name, workdir=workdir)
    if apply and not plan.is_empty:
        apply_teardown(session, plan)
    return plan
