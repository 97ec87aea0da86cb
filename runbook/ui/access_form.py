"""Phase 3's form: Manage → Edit Policies and Manage Profiles / Permission Sets, and the CI user; Apply converges."""

from __future__ import annotations

from collections.abc import MutableMapping

from runbook.phases.cards import Stacked
from runbook.ui.fields import check_field, choice_field, connection_fields, list_field, text_field
from runbook.ui.form import (
    Outcome,
    PhaseForm,
    Step,
    connect_org,
    overview_of,
    start_from,
    unless_batch,
)

_ACCESS_SPEC_NAMES = ("app_name", "permitted_users", "ip_relaxation", "refresh_token_policy", "profiles",
                      "permission_sets", "create_permission_sets", "assign_users", "exclusive")


def _access_spec(values: dict, permission_sets: list[str] | None = None):
    from runbook.phases.access import build_access_spec

    spec = {k: values[k] for k in _ACCESS_SPEC_NAMES}
    if permission_sets is not None:
        spec["permission_sets"] = permission_sets
    return build_access_spec(**spec, workdir=values.get("workdir"))


def _check(values: dict) -> list[str]:
    from runbook.phases.ci_user import check_ci_user

    check_ci_user(values["ci_user"])
    return list(_access_spec(values).warnings)


@unless_batch("access")
def access_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 3's form: the app's policies and pre-authorizations, and an optional least-privilege CI user."""
    from runbook.phases.access import IP_RELAXATION

    start = start_from("access", ns, params)
    p = start.values
    fields = [
        *connection_fields(p),
        text_field("app_name", "App API name", p["app_name"]),
        choice_field("permitted_users", "Permitted Users", p["permitted_users"],
                     [("Admin approved users are pre-authorized", "admin_approved"),
                      ("All users may self-authorize", "all_users")]),
        choice_field("ip_relaxation", "IP Relaxation", p["ip_relaxation"], list(IP_RELAXATION)),
        text_field("refresh_token_policy", "Refresh Token Policy", p["refresh_token_policy"],
                   "infinite, zero, specific_lifetime:N:DAYS"),
        list_field("profiles", "Profiles", p["profiles"]),
        list_field("permission_sets", "Permission sets", p["permission_sets"]),
        check_field("create_permission_sets", "Create missing permission sets", p["create_permission_sets"]),
        list_field("assign_users", "Assign them to users", p["assign_users"], "usernames, comma-separated"),
        check_field("exclusive", "Remove pre-authorizations not listed", p["exclusive"]),
        text_field("ci_user", "CI user (least privilege)", p["ci_user"],
                   "a username to create or reuse for CI; empty: none"),
    ]

    def plan(values: dict, step: Step, *, apply: bool):
        """The notebook's cells in order: the CI user (created only when applying), its set added, the plan."""
        from runbook.phases.access import plan_access
        from runbook.phases.ci_user import ensure_ci_user, with_ci_permission_set

        session = connect_org(values, step)
        ci = None
        if values["ci_user"]:
            step(f"{'Creating or reusing' if apply else 'Reading'} the CI user {values['ci_user']}…")
            ci = ensure_ci_user(session, ci_user=values["ci_user"], workdir=values["workdir"], apply=apply)
        spec = _access_spec(values, with_ci_permission_set(values["permission_sets"], ci))
        step(f"Reading {spec.app_name}'s policies, profiles and permission sets…")
        return session, ci, spec, plan_access(session, spec)

    def preview(values: dict, step: Step):
        _session, ci, _spec, access_plan = plan(values, step, apply=False)
        return Stacked([ci, access_plan])

    def apply(values: dict, step: Step) -> Outcome:
        from runbook.phases.access import apply_access_plan
        from runbook.phases.ci_user import with_ci_permission_set

        session, ci, spec, access_plan = plan(values, step, apply=True)
        step("Applying and reading back…")
        access = apply_access_plan(session, spec, access_plan, workdir=values["workdir"], apply=True)
        status = (f"Applied {len(access.changes)} change(s) to {spec.app_name}" if access.changes
                  else f"{spec.app_name} already has these policies and pre-authorizations: nothing changed")
        if ci is not None:
            status += f"; CI user {ci.username}: " + ("; ".join(ci.created) or "already in place")
        names = {**values, "permission_sets": with_ci_permission_set(values["permission_sets"], ci),
                 "session": session, "ci": ci,
                 "access_spec": spec, "access_plan": access_plan, "access": access}
        return Outcome(Stacked([ci, access]), status, names, overview_of(values["workdir"], session), access_plan)

    return PhaseForm(
        phase="access", title="Phase 3 — Policies and access",
        intro="App Manager → the app → <b>Manage → Edit Policies</b> (Permitted Users, IP Relaxation, Refresh "
              "Token Policy), then <b>Manage Profiles</b> / <b>Manage Permission Sets</b>. With a CI user: "
              "<b>Users → New User</b> (Minimum Access - API Only Integrations) and its Dev Hub permission set.",
        fields=fields, check=_check, preview=preview, apply=apply, start=start, steps=4, ns=ns)
