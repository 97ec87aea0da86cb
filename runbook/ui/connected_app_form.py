"""Phase 2's form: App Manager → New Connected App, as fields; Apply creates or updates the app."""

from __future__ import annotations

from collections.abc import MutableMapping

from runbook.phases.cards import Link
from runbook.ui.fields import (
    area_field,
    check_field,
    choice_field,
    connection_fields,
    multi_field,
    port_field,
    text_field,
)
from runbook.ui.form import (
    Outcome,
    PhaseForm,
    Step,
    connect_org,
    overview_of,
    start_from,
    unless_batch,
)

# [U] Setup's pages for each kind, as the runbook's brief gives them (the reference notes have no Setup URLs):
# App Manager lists connected apps, External Client App Manager the external client apps.
SETUP_PAGES = {"connected_app": ("App Manager", "/lightning/setup/NavigationMenus/home"),
               "external_client_app": ("External Client App Manager",
                                       "/lightning/setup/ManageExternalClientApplication/home")}


def setup_link(instance_url: str, app_kind: str, *, local: bool = False) -> Link:
    """The "View in Setup" link for an app of ``app_kind``: the Setup page that lists apps of that kind."""
    page, path = SETUP_PAGES[app_kind]
    note = f"({page}; the local org has no Setup pages: on a real org this opens it)" if local else f"({page})"
    return Link("View in Setup", instance_url.rstrip("/") + path, note)


def _app_spec(values: dict):
    from runbook.phases.connected_app import build_spec

    return build_spec(app_name=values["app_name"], label=values["label"], contact_email=values["contact_email"],
                      description=values["description"], callback_port=values["callback_port"],
                      scopes=values["scopes"], flows=values.get("flows", ["jwt"]),
                      app_kind=values.get("app_kind", "auto"),
                      consumer_secret_by=values.get("consumer_secret_by", "runbook"),
                      sfdx_project=values.get("sfdx_project", ""),
                      create_sfdx_project=values.get("create_sfdx_project", False),
                      cert_path=values["cert_path"], workdir=values["workdir"], adopt=values.get("adopt", False))


@unless_batch("connected_app")
def connected_app_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 2's form: App Manager → New Connected App, as fields; Apply creates or updates the app."""
    from runbook.phases.connected_app import APP_KINDS
    from runbook.ui.scopes import scope_options

    start = start_from("connected_app", ns, params)
    p = start.values
    fields = [
        *connection_fields(p),
        text_field("app_name", "API name", p["app_name"]),
        text_field("label", "Connected App Name", p["label"], "empty: the API name with spaces"),
        text_field("contact_email", "Contact Email", p["contact_email"]),
        area_field("description", "Description", p["description"]),
        port_field("callback_port", "Callback URL port", p["callback_port"]),
        multi_field("scopes", "Selected OAuth Scopes", p["scopes"], scope_options()),
        text_field("cert_path", "Digital signature cert", p["cert_path"], "empty: phase 1's certificate"),
        multi_field("flows", "OAuth flows", p["flows"], ["jwt", "web"]),
        choice_field("app_kind", "App kind", p["app_kind"], list(APP_KINDS)),
        choice_field("consumer_secret_by", "Consumer secret made by", p["consumer_secret_by"], ["runbook", "org"]),
        text_field("sfdx_project", "sfdx-project.json", p["sfdx_project"], "empty: leave project files alone"),
        check_field("create_sfdx_project", "Create a minimal sfdx-project.json if missing",
                    p["create_sfdx_project"]),
        check_field("adopt", "Take over an app of this name the runbook did not create", p["adopt"]),
    ]

    def plan(values: dict, step: Step):
        from runbook.phases.connected_app import plan_connected_app

        spec = _app_spec(values)
        session = connect_org(values, step)
        step(f"Reading {spec.full_name} from the org…")
        return session, spec, plan_connected_app(session, spec)

    def apply(values: dict, step: Step) -> Outcome:
        from runbook.phases.connected_app import apply_connected_app

        session, spec, app_plan = plan(values, step)
        step({"create": "Creating the app…", "update": "Updating the app…"}.get(app_plan.action, "Reading back…"))
        app = apply_connected_app(session, app_plan, workdir=values["workdir"], apply=True)
        what = {"create": "Created", "update": f"Updated ({len(app_plan.changes)} change(s))",
                "none": "Up to date, nothing changed:"}[app_plan.action]
        status = f"{what} connected app {app.full_name} — consumer key {app.consumer_key}"
        names = {**values, "session": session, "spec": spec, "plan": app_plan, "app": app}
        return Outcome(app, status, names, overview_of(values["workdir"], session), app_plan,
                       links=[setup_link(session.instance_url, app.app_kind, local=session.is_local)])

    return PhaseForm(
        phase="connected_app", title="Phase 2 — The connected app",
        intro="Setup → App Manager → New Connected App: name, contact email, <b>Enable OAuth Settings</b> with the "
              "callback URL and scopes, and <b>Use digital signatures</b> with phase 1's certificate.",
        fields=fields, check=lambda v: _app_spec(v) and None, preview=lambda v, step: plan(v, step)[2],
        apply=apply, start=start, steps=3, ns=ns, apply_label="Apply")
