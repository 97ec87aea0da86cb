"""External Client Apps in phase 2, and both app kinds through papermill to a working JWT login."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_callback_port, user_id

from runbook import metadata
from runbook.access import build_access_spec, ensure_access
from runbook.apps.external_client_app import COMPONENTS, GLOBAL_OAUTH, PHASE2, component_names
from runbook.batch import run_runbook
from runbook.connected_app import build_spec, ensure_connected_app, plan_connected_app
from runbook.errors import InputError
from runbook.localorg import ADMIN_USERNAME
from runbook.teardown import teardown_app
from runbook.verify import jwt_login

PORT = 0


@pytest.fixture(autouse=True)
def _callback_port():
    """A fresh free callback port per test (not 1717: parallel tests and other programs may hold it)."""
    global PORT
    PORT = free_callback_port()


def _spec(cert, name: str, **overrides):
    return build_spec(**{"app_name": name, "contact_email": "admin@example.com", "cert_path": cert.cert_path,
                         "callback_port": PORT, "app_kind": "external_client_app", **overrides})


def _record(workdir: Path, phase: str) -> dict:
    return json.loads((workdir / "phases" / f"{phase}.json").read_text())


def _oauth_policies(session, app_name: str) -> list[dict]:
    listed = metadata.list_names(session, ["ExtlClntAppOauthConfigurablePolicies"])
    found = (metadata.read(session, "ExtlClntAppOauthConfigurablePolicies", n)
             for n in listed["ExtlClntAppOauthConfigurablePolicies"])
    return [c for c in found if c and c.get("externalClientApplication") == app_name]


def _ops(org, since: int) -> list[str]:
    return [c.operation for c in org.call_log()[since:]]


def test_eca_is_created_by_one_deploy_and_logs_in_once_phase_3_preauthorizes(org, session, cert, tmp_path):
    mark = len(org.call_log())
    plan, app = ensure_connected_app(session, _spec(cert, "Eca_Create"), workdir=tmp_path)

    assert str(plan).startswith("Create external client app Eca_Create")
    assert [c.operation for c in org.call_log()[mark:] if c.is_write] == ["mdapi.deploy"]  # one deploy, no CRUD
    names = component_names("Eca_Create")
    assert all(metadata.read(session, t, names[t]) is not None for t in PHASE2)
    # the org generated the OAuth policies on deploy: phase 3 updates that one, never a second
    generated = _oauth_policies(session, "Eca_Create")
    assert len(generated) == 1 and generated[0]["permittedUsersPolicyType"] == "AllSelfAuthorized"
    record = _record(tmp_path, "connected_app")
    assert record["app_kind"] == "external_client_app" and record["access_hint"] == generated[0]["fullName"]
    assert record["consumer_key"] == metadata.read(session, GLOBAL_OAUTH, names[GLOBAL_OAUTH])["consumerKey"]

    ensure_access(session, build_access_spec(app_name="Eca_Create", workdir=tmp_path), workdir=tmp_path)

    policies = _oauth_policies(session, "Eca_Create")
    assert len(policies) == 1 and policies[0]["permittedUsersPolicyType"] == "AdminApprovedPreAuthorized"
    login, _token = jwt_login(consumer_key=app.consumer_key, username=ADMIN_USERNAME, key_path=cert.key_path,
                              login_url=org.url)
    assert login.user_id == user_id(session, ADMIN_USERNAME)


def test_eca_update_in_place_keeps_the_consumer_key_and_deploys_only_the_changed_component(org, session, cert,
                                                                                          tmp_path):
    _plan, first = ensure_connected_app(session, _spec(cert, "Eca_Update"), workdir=tmp_path)
    global_oauth = component_names("Eca_Update")[GLOBAL_OAUTH]
    certificate_before = metadata.read(session, GLOBAL_OAUTH, global_oauth)["certificate"]
    plan = plan_connected_app(session, _spec(cert, "Eca_Update", scopes=["api", "refresh_token"]))
    assert [(c.field, c.old, c.new) for c in plan.changes] == \
        [("ExtlClntAppOauthSettings.scopes", "Api, RefreshToken, Web", "Api, RefreshToken")]
    mark = len(org.call_log())

    _plan, second = ensure_connected_app(session, _spec(cert, "Eca_Update", scopes=["api", "refresh_token"]),
                                         workdir=tmp_path)

    assert [c.operation for c in org.call_log()[mark:] if c.is_write] == ["mdapi.deploy"]
    assert second.consumer_key == first.consumer_key
    # declarative deploys: the global OAuth settings (not sent) keep their certificate
    assert metadata.read(session, GLOBAL_OAUTH, global_oauth)["certificate"] == certificate_before
    assert plan_connected_app(session, _spec(cert, "Eca_Update", scopes=["api", "refresh_token"])).action == "none"


def test_eca_jwt_without_refresh_token_scope_is_refused_up_front(org, session, cert, tmp_path):
    mark = len(org.call_log())
    with pytest.raises(InputError) as caught:
        ensure_connected_app(session, _spec(cert, "Eca_Api_Only", scopes=["api"]), workdir=tmp_path)
    assert "scopes=['Api'] is not valid: the jwt flow needs RefreshToken" in str(caught.value)
    assert "refresh_token offline_access" in str(caught.value)
    assert [c for c in org.call_log()[mark:] if c.is_write] == []


def test_eca_dry_run_checks_by_a_check_only_deploy_and_leaves_the_org_unchanged(org, session, cert, tmp_path):
    mark = len(org.call_log())
    plan, app = ensure_connected_app(session, _spec(cert, "Eca_Dry"), workdir=tmp_path, apply=False)
    assert plan.action == "create" and not app.applied and "check-only deploy passed" in plan.preflight
    assert "mdapi.deploy" in _ops(org, mark)
    assert [c for c in org.call_log()[mark:] if c.is_write] == []
    assert metadata.read(session, "ExternalClientApplication", "Eca_Dry") is None


def test_eca_teardown_leaves_nothing_behind(org, session, cert, tmp_path):
    ensure_connected_app(session, _spec(cert, "Eca_Gone"), workdir=tmp_path)
    ensure_access(session, build_access_spec(app_name="Eca_Gone", workdir=tmp_path), workdir=tmp_path)
    plan = teardown_app(session, "Eca_Gone", workdir=tmp_path)
    assert plan.app_kind == "external_client_app" and "one destructive deploy" in plan.lines()[0]

    teardown_app(session, "Eca_Gone", workdir=tmp_path, apply=True)

    names = component_names("Eca_Gone")
    assert all(metadata.read(session, t, names[t]) is None for t in COMPONENTS)
    assert _oauth_policies(session, "Eca_Gone") == []
    assert metadata.list_names(session, ["ExternalClientApplication"])["ExternalClientApplication"].count(
        "Eca_Gone") == 0
    assert not (tmp_path / "phases" / "connected_app.json").exists()


@pytest.mark.parametrize("app_kind", ["external_client_app", "connected_app"])
def test_runbook_through_papermill_ends_in_a_jwt_login_as_the_admin(tmp_path, app_kind):
    project = tmp_path / "project" / "sfdx-project.json"
    summary = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                          params={"app_kind": app_kind, "flows": ["jwt", "web"], "callback_port": PORT,
                                  "sfdx_project": str(project), "create_sfdx_project": True})
    assert summary.ok, summary.lines()
    app = _record(summary.workdir, "connected_app")
    verify = _record(summary.workdir, "verify")
    assert app["app_kind"] == app_kind and verify["consumer_key"] == app["consumer_key"]
    assert verify["logins"][0]["username"] == ADMIN_USERNAME and verify["logins"][0]["user_id"].startswith("005")
    assert app["callback_port"] == PORT
    assert json.loads(project.read_text())["oauthLocalPort"] == app["callback_port"]
    secret = Path(app["consumer_secret_file"]).read_text().strip()
    for notebook in summary.run_dir.glob("*.ipynb"):
        assert secret not in notebook.read_text()
