"""``app_kind="auto"``: the org decides which kind a new app is; an existing app keeps its kind; a missing
permission is never read as "no new connected apps". Against local orgs over HTTPS, through papermill too."""

from __future__ import annotations

import json
import os

import pytest
from conftest import free_callback_port, user_id

from runbook.errors import SalesforceError
from runbook.localorg import ADMIN_USERNAME, LocalOrg
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.connected_app import build_spec, ensure_connected_app, plan_connected_app
from runbook.phases.jwt_bearer import jwt_login
from runbook.run.batch import run_runbook
from runbook.salesforce import OrgSession, connect_local, metadata


@pytest.fixture
def closed_org(tmp_path):
    """A local org that refuses new connected apps (as `runbook org serve --no-connected-apps`)."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path / "closed", allow_connected_apps=False) as running:
        os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca_bundle)
        yield running
    os.environ.pop("REQUESTS_CA_BUNDLE", None) if previous is None else os.environ.update(
        REQUESTS_CA_BUNDLE=previous)


def _spec(cert, name: str, workdir=None, **overrides):
    return build_spec(**{"app_name": name, "contact_email": "admin@example.com", "cert_path": cert.cert_path,
                         "callback_port": free_callback_port(), "workdir": workdir or "", **overrides})


def _ops(org, since: int) -> list[str]:
    return [c.operation for c in org.call_log()[since:]]


def test_auto_is_the_default_and_makes_a_connected_app_where_the_org_allows_one(org, session, cert, tmp_path):
    spec = _spec(cert, "Auto_Allowed")
    assert spec.app_kind == "auto"
    mark = len(org.call_log())

    plan, app = ensure_connected_app(session, spec, workdir=tmp_path)

    assert app.app_kind == "connected_app" and app.consumer_key.startswith("3MVG")
    assert "app kind: a connected app if the org allows new ones" in str(plan)
    assert app.kind_choice.startswith("the org allowed a new connected app")
    # one listMetadata for both kinds replaces the read: a fresh create costs what it did
    assert _ops(org, mark) == ["mdapi.listMetadata", "mdapi.createMetadata", "mdapi.readMetadata"]
    record = json.loads((tmp_path / "phases" / "connected_app.json").read_text())
    assert record["app_kind"] == "connected_app" and "connected app" in record["kind_choice"]


def test_auto_dry_run_names_the_choice_from_a_check_only_deploy(org, session, cert, tmp_path):
    mark = len(org.call_log())
    plan, app = ensure_connected_app(session, _spec(cert, "Auto_Dry"), workdir=tmp_path, apply=False)

    assert plan.spec.app_kind == "connected_app" and not app.applied
    assert "the org allows new connected apps" in plan.kind_choice
    assert [c for c in org.call_log()[mark:] if c.is_write] == []


def test_auto_makes_an_external_client_app_where_the_org_refuses_connected_apps(closed_org, cert, tmp_path):
    session = connect_local(closed_org.state_dir)

    _plan, app = ensure_connected_app(session, _spec(cert, "Auto_Refused"), workdir=tmp_path)

    assert app.app_kind == "external_client_app"
    assert "does not allow new connected apps" in app.kind_choice and "external client app" in app.kind_choice
    assert metadata.read(session, "ConnectedApp", "Auto_Refused") is None
    assert metadata.read(session, "ExternalClientApplication", "Auto_Refused") is not None
    ensure_access(session, build_access_spec(app_name="Auto_Refused", workdir=tmp_path), workdir=tmp_path)
    login, _token = jwt_login(consumer_key=app.consumer_key, username=ADMIN_USERNAME, key_path=cert.key_path,
                              login_url=closed_org.url)
    assert login.user_id == user_id(session, ADMIN_USERNAME)


def test_auto_dry_run_on_a_refusing_org_plans_an_external_client_app_and_writes_nothing(closed_org, cert, tmp_path):
    session = connect_local(closed_org.state_dir)
    mark = len(closed_org.call_log())

    plan, app = ensure_connected_app(session, _spec(cert, "Auto_Refused_Dry"), workdir=tmp_path, apply=False)

    assert str(plan).startswith("Create external client app Auto_Refused_Dry")
    assert "Connected apps creation is restricted" in plan.kind_choice
    assert [c for c in closed_org.call_log()[mark:] if c.is_write] == [] and not app.applied


def test_auto_keeps_an_existing_external_client_app_as_that_kind(org, session, cert, tmp_path):
    port = free_callback_port()
    ensure_connected_app(session, _spec(cert, "Auto_Keeps_Eca", app_kind="external_client_app", callback_port=port),
                         workdir=tmp_path / "other")

    plan = plan_connected_app(session, _spec(cert, "Auto_Keeps_Eca", callback_port=port))

    assert plan.spec.app_kind == "external_client_app" and plan.action == "none"
    assert "the org has an external client app named Auto_Keeps_Eca" in plan.kind_choice


def test_auto_rerun_takes_the_recorded_kind_without_asking_the_org_again(org, session, cert, tmp_path):
    port = free_callback_port()
    ensure_connected_app(session, _spec(cert, "Auto_Rerun", callback_port=port), workdir=tmp_path)
    mark = len(org.call_log())

    plan, _app = ensure_connected_app(session, _spec(cert, "Auto_Rerun", workdir=tmp_path, callback_port=port),
                                      workdir=tmp_path)

    assert plan.action == "none" and _ops(org, mark) == ["mdapi.readMetadata"]


def test_a_missing_permission_is_named_and_never_read_as_no_new_connected_apps(org, session, cert, tmp_path):
    """A Standard User may log in by JWT but lacks Modify All Data: the Metadata API refuses them."""
    _plan, app = ensure_connected_app(session, _spec(cert, "Auto_Perm"), workdir=tmp_path)
    ensure_access(session, build_access_spec(app_name="Auto_Perm", profiles=["Standard User"]), workdir=tmp_path)
    _login, token = jwt_login(consumer_key=app.consumer_key, username="dev@local.devhub", key_path=cert.key_path,
                              login_url=org.url)
    weak = OrgSession(instance_url=org.url, access_token=token, api_version="62.0", method="a Standard User",
                      login_url=org.url)

    with pytest.raises(SalesforceError) as caught:
        plan_connected_app(weak, _spec(cert, "Auto_Perm_New"))

    message = str(caught.value)
    assert "INSUFFICIENT_ACCESS" in message and "Modify All Data" in message
    assert "Support" not in message and "external_client_app" not in message


def test_runbook_run_on_a_refusing_org_reaches_a_jwt_login_through_an_external_client_app(tmp_path):
    summary = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                          fresh_org=True, local_org={"allow_connected_apps": False},
                          params={"callback_port": free_callback_port()})

    assert summary.ok, summary.lines()
    app = json.loads((tmp_path / "work" / "phases" / "connected_app.json").read_text())
    assert app["app_kind"] == "external_client_app"
    text = "\n".join(summary.lines())
    assert "external_client_app" in text and f"JWT login as:   {ADMIN_USERNAME}" in text
    assert "App kind:       the org does not allow new connected apps" in text
    assert "C-1016" in text and "SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI" in text
