"""Taking the app out of the org again, through its kind (``runbook.apps``): what deleting it takes, then
the deletes.

The plan is read from the org first and shown; nothing is deleted unless it is applied. A kind deletes
the app before (or together with) its pre-authorizations, never after them, so no half-open app is left.
The work folder's phase 2–4 records and the consumer secret file for the app are removed with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from runbook.apps import DeleteStep, find_app_kind
from runbook.errors import InputError, SalesforceError
from runbook.phases import after
from runbook.phases.consumer_secret import secret_file
from runbook.salesforce import OrgSession, rest
from runbook.salesforce.names import check_api_name
from runbook.work.workdir import open_workdir


@dataclass
class TeardownPlan:
    """What deleting the app would remove, as read from the org."""

    app_name: str
    app_kind: str  # the kind's name, or "" (not in the org)
    steps: list[DeleteStep] = field(default_factory=list)  # carried out in order
    files: list[Path] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.steps or self.files)

    def lines(self) -> list[str]:
        out = [step.line for step in self.steps] + [f"remove {p}" for p in self.files]
        return out or [f"nothing to delete: the org has no app {self.app_name}"]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{escape(line)}</li>" for line in self.lines())
        return f"<b>Teardown plan for {escape(self.app_name)}</b><ul>{items}</ul>"


def plan_teardown(session: OrgSession, app_name: str, *, workdir: str | Path | None = None) -> TeardownPlan:
    """Read what the org (and the work folder) holds for ``app_name``; nothing is deleted."""
    check_api_name(app_name, "app")
    kind = find_app_kind(session, app_name)
    plan = TeardownPlan(app_name, kind.name if kind else "", kind.teardown_steps(session, app_name) if kind else [])
    if workdir is not None:
        wd = open_workdir(workdir)
        record = wd.load("connected_app") or {}
        if record.get("full_name") == app_name:
            plan.files = [wd.record_path(p.name) for p in after("certificate") if wd.record_path(p.name).is_file()]
            plan.steps += _ci_user_steps(session, wd.load("ci_user"))
            plan.files += [wd.record_path(r) for r in ("ci_user", "scratch_proof") if wd.record_path(r).is_file()]
        secret = secret_file(workdir, app_name)
        plan.files += [secret] if secret.is_file() else []
    return plan


def _ci_user_steps(session: OrgSession, record: dict | None) -> list[DeleteStep]:
    """Phase 3's CI user: remove the assignment and the permission set the runbook created, never the user.

    Users are deactivated, never deleted, and only when asked: the user stays, without the Dev Hub set.
    """
    if not record or not record.get("permission_set_id"):
        return []
    set_id, user_id = record["permission_set_id"], record.get("user_id", "")
    held = rest.query(session, f"SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = {rest.quote(set_id)} "
                               f"AND AssigneeId = {rest.quote(user_id)}") if record.get("created_assignment") else []
    steps = [DeleteStep(f"remove the assignment of {record['permission_set']} from {record['username']} "
                        "(the user stays)", lambda row=row: rest.delete(session, "PermissionSetAssignment", row["Id"]))
             for row in held]
    if record.get("created_set") and rest.query(session, f"SELECT Id FROM PermissionSet WHERE Id = "
                                                         f"{rest.quote(set_id)}"):
        steps.append(DeleteStep(f"delete permission set {record['permission_set']} (created by phase 3's ci_user)",
                                lambda: rest.delete(session, "PermissionSet", set_id)))
    return steps


def apply_teardown(session: OrgSession, plan: TeardownPlan) -> None:
    """Carry out ``plan``'s steps, then check the org has no app of that name left."""
    for step in plan.steps:
        step.run()
    for path in plan.files:
        path.unlink(missing_ok=True)
    left = find_app_kind(session, plan.app_name) if plan.steps else None
    if left is not None:
        raise SalesforceError(f"delete {plan.app_name}", "READBACK_MISMATCH", "the app is still in the org",
                              f"delete it in {left.setup_path}")


def teardown_app(session: OrgSession, app_name: str, *, workdir: str | Path | None = None,
                 apply: bool = False) -> TeardownPlan:
    """Plan the teardown of ``app_name`` and, with ``apply=True``, carry it out; returns the plan."""
    if not isinstance(apply, bool):
        raise InputError("apply", apply, "use True to delete, False to only show the plan")
    plan = plan_teardown(session, app_name, workdir=workdir)
    if apply and not plan.is_empty:
        apply_teardown(session, plan)
    return plan
