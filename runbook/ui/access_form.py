"""Phase 3's form: Manage → Edit Policies and Manage Profiles / Permission Sets; Apply converges."""

from __future__ import annotations

from collections.abc import MutableMapping

from runbook.ui.fields import check_field, choice_field, list_field, org_field, text_field
from runbook.ui.form import (
    Outcome,
    PhaseForm,
    Step,
    connect_org,
    overview_of,
    phase_defaults,
    start_values,
    unless_batch,
)

_ACCESS_SPEC_NAMES = ("app_name", "permitted_users", "ip_relaxation", "refresh_token_policy", "profiles",
                      "permission_sets", "create_permission_sets", "assign_users", "exclusive")


def _access_spec(values: dict):
    from runbook.access import build_access_spec

    return build_access_spec(**{k: values[k] for k in _ACCESS_SPEC_NAMES}, workdir=values.get("workdir"))


@unless_batch("access")
def access_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 3's form: Manage → Edit Policies and Manage Profiles / Permission Sets; Apply converges."""
    from runbook.access import IP_RELAXATION

    p = start_values(ns, params, phase_defaults("access"))
    fields = [
        org_field(p["org"]),
        text_field("workdir", "Work folder", p["workdir"]),
        text_field("api_version", "API version", p["api_version"]),
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
    ]

    def plan(values: dict, step: Step):
        from runbook.access import plan_access

        spec = _access_spec(values)
        session = connect_org(values, step)
        step(f"Reading {spec.app_name}'s policies, profiles and permission sets…")
        return session, spec, plan_access(session, spec)

    def apply(values: dict, step: Step) -> Outcome:
        from runbook.access import apply_access_plan

        session, spec, access_plan = plan(values, step)
        step("Applying and reading back…")
        access = apply_access_plan(session, spec, access_plan, workdir=values["workdir"], apply=True)
        status = (f"Applied {len(access.changes)} change(s) to {spec.app_name}" if access.changes
                  else f"{spec.app_name} already has these policies and pre-authorizations: nothing changed")
        names = {**values, "session": session, "access_spec": spec, "access_plan": access_plan, "access": access}
        return Outcome(access, status, names, overview_of(values["workdir"], session), access_plan)

    return PhaseForm(
        phase="access", title="Phase 3 — Policies and access",
        intro="App Manager → the app → <b>Manage → Edit Policies</b> (Permitted Users, IP Relaxation, Refresh "
              "Token Policy), then <b>Manage Profiles</b> / <b>Manage Permission Sets</b>.",
        fields=fields, check=lambda v: list(_access_spec(v).warnings), preview=lambda v, step: plan(v, step)[2],
        apply=apply, steps=3, ns=ns)
