"""External Client Apps in phase 2, and both app kinds through papermill to a working JWT login."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_callback_port, user_id

from runbook.apps.external_client_app import COMPONENTS, GLOBAL_OAUTH, PHASE2, component_names
from runbook.errors import InputError
from runbook.localorg import ADMIN_USERNAME
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.connected_app import build_spec, ensure_connected_app, plan_connected_app
from runbook.phases.jwt_bearer import jwt_login
from runbook.phases.teardown import teardown_app
from runbook.run.batch import run_runbook
from runbook.salesforce import metadata

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
    assert record["app_kind"] == "external_client_app"
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

    # the overview shows four done cards, --resume right after skips them all, and a rerun writes nothing
    from runbook.phases.overview import phase_overview
    from runbook.salesforce import connect_local, start_local_org

    org = start_local_org(summary.workdir / "localorg")
    overview = phase_overview(summary.workdir, connect_local(org.state_dir))
    assert [p.state for p in overview.phases] == ["done"] * 4, str(overview)
    params = {"app_kind": app_kind, "flows": ["jwt", "web"], "callback_port": PORT, "sfdx_project": str(project),
              "create_sfdx_project": True}  # the same inputs: --resume reruns a phase whose inputs changed
    resumed = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                          params=params, resume=True)
    assert [p.status for p in resumed.phases] == ["skipped"] * 4, resumed.lines()
    mark = len(org.call_log())
    rerun = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=lambda _m: None,
                        params=params)
    assert rerun.ok, rerun.lines()
    assert [c.operation for c in org.call_log()[mark:] if c.is_write] == []


@pytest.fixture
def fresh_org(tmp_path):
    """A local org of the test's own, with options, trusted while it runs."""
    import os

    from runbook.localorg import LocalOrg
    from runbook.salesforce import connect_local

    started = []

    def start(**options):
        org = LocalOrg(tmp_path / f"org{len(started)}", **options).start()
        started.append((org, os.environ.get("REQUESTS_CA_BUNDLE")))
        os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
        return org, connect_local(org.state_dir)

    yield start
    for org, previous in reversed(started):
        org.stop()
        os.environ.pop("REQUESTS_CA_BUNDLE", None) if previous is None else os.environ.update(
            REQUESTS_CA_BUNDLE=previous)


@pytest.mark.parametrize("apply", [False, True], ids=["dry-run", "apply"])
def test_eca_without_the_org_opt_in_is_refused_with_the_fix_and_nothing_is_written(fresh_org, cert, tmp_path,
                                                                                  apply):
    from runbook.errors import SalesforceError

    org, session = fresh_org(external_client_apps=False)
    with pytest.raises(SalesforceError) as caught:
        ensure_connected_app(session, _spec(cert, "Eca_No_Opt_In"), workdir=tmp_path, apply=apply)

    message = str(caught.value)
    assert "Opt in to External Client Apps is not enabled for this org" in message
    assert "Fix: turn on the org's \"External Client Apps\" opt-in" in message
    # a dry run asks by a check-only deploy; an apply's deploy is refused whole: either way the org holds nothing
    assert [c.operation for c in org.call_log() if c.is_write] == (["mdapi.deploy"] if apply else [])
    assert metadata.list_names(session, ["ExternalClientApplication"])["ExternalClientApplication"] == []
    assert not (tmp_path / "phases" / "connected_app.json").exists()


def test_eca_consumer_key_comes_by_connect_rest_when_the_retrieve_leaves_it_out(fresh_org, cert, tmp_path):
    org, session = fresh_org(eca_consumer_key_in_retrieve=False)
    org.set_setting("eca_client_secret_in_rest_api", True)

    _plan, app = ensure_connected_app(session, _spec(cert, "Eca_Key_By_Rest"), workdir=tmp_path)

    assert app.consumer_key.startswith("3MVG")
    ops = [c.operation for c in org.call_log()]
    assert any("apps/oauth" in op or "connect" in op for op in ops), ops
    ensure_access(session, build_access_spec(app_name="Eca_Key_By_Rest", workdir=tmp_path), workdir=tmp_path)
    login, _token = jwt_login(consumer_key=app.consumer_key, username=ADMIN_USERNAME, key_path=cert.key_path,
                              login_url=org.url)
    assert login.username == ADMIN_USERNAME


def test_eca_consumer_key_neither_by_retrieve_nor_by_rest_stops_with_the_setting_and_permissions(fresh_org, cert,
                                                                                               tmp_path):
    from runbook.errors import SalesforceError

    _org, session = fresh_org(eca_consumer_key_in_retrieve=False)
    with pytest.raises(SalesforceError) as caught:
        ensure_connected_app(session, _spec(cert, "Eca_No_Key"), workdir=tmp_path)

    message = str(caught.value)
    assert "gave no consumer key, and Connect REST refused it too" in message and "not currently enabled" in message
    assert "enableClientSecretInRestApiAccess" in message and "View Client Secret" in message
    assert "then turn both off again" in message
