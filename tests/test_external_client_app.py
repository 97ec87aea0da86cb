"""External Client Apps in phase 2, and both app kinds through papermill to a working JWT login."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_callback_port, user_id

from runbook import metadata
from runbook.batch import run_runbook
from runbook.connected_app import build_spec, ensure_connected_app, plan_connected_app
from runbook.external_client_app import COMPONENTS, GLOBAL_OAUTH, component_names
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


def test_eca_is_created_as_five_components_and_a_jwt_login_works(org, session, cert, tmp_path):
    plan, app = ensure_connected_app(session, _spec(cert, "Eca_Create"), workdir=tmp_path)
    assert str(plan).startswith("Create external client app Eca_Create")
    names = component_names("Eca_Create")
    assert all(metadata.read(session, t, names[t]) is not None for t in COMPONENTS)
    record = _record(tmp_path, "connected_app")
    assert record["app_kind"] == "external_client_app"
    assert record["consumer_key"] == metadata.read(session, GLOBAL_OAUTH, names[GLOBAL_OAUTH])["consumerKey"]
    login, _token = jwt_login(consumer_key=app.consumer_key, username=ADMIN_USERNAME, key_path=cert.key_path,
                              login_url=org.url)
    assert login.user_id == user_id(session, ADMIN_USERNAME)


def test_eca_update_in_place_keeps_the_consumer_key_and_sends_only_the_changed_component(org, session, cert,
                                                                                        tmp_path):
    _plan, first = ensure_connected_app(session, _spec(cert, "Eca_Update"), workdir=tmp_path)
    plan = plan_connected_app(session, _spec(cert, "Eca_Update", scopes=["api", "web"]))
    assert [(c.field, c.old, c.new) for c in plan.changes] == \
        [("ExtlClntAppOauthSettings.scopes", "Api, RefreshToken, Web", "Api, Web")]
    mark = len(org.call_log())
    _plan, second = ensure_connected_app(session, _spec(cert, "Eca_Update", scopes=["api", "web"]), workdir=tmp_path)
    assert [c.operation for c in org.call_log()[mark:] if c.is_write] == ["mdapi.updateMetadata"]
    assert second.consumer_key == first.consumer_key
    assert plan_connected_app(session, _spec(cert, "Eca_Update", scopes=["api", "web"])).action == "none"


def test_eca_dry_run_leaves_the_org_unchanged(org, session, cert, tmp_path):
    mark = len(org.call_log())
    plan, app = ensure_connected_app(session, _spec(cert, "Eca_Dry"), workdir=tmp_path, apply=False)
    assert plan.action == "create" and not app.applied
    assert [c for c in org.call_log()[mark:] if c.is_write] == []
    assert metadata.read(session, "ExternalClientApplication", "Eca_Dry") is None


def test_eca_teardown_removes_every_component(session, cert, tmp_path):
    ensure_connected_app(session, _spec(cert, "Eca_Gone"), workdir=tmp_path)
    plan = teardown_app(session, "Eca_Gone", workdir=tmp_path)
    assert plan.app_kind == "external_client_app" and len(plan.components) == 5
    teardown_app(session, "Eca_Gone", workdir=tmp_path, apply=True)
    names = component_names("Eca_Gone")
    assert all(metadata.read(session, t, names[t]) is None for t in COMPONENTS)


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
