"""Phase 3 against the local org: exactly the users the admin meant may log in by JWT, and nobody else.

The connected-app journey runs notebook 03 through papermill (as ``runbook run`` does) and checks each
outcome with a real JWT bearer login; the external client app case calls the same functions directly,
with the app's components created through the Metadata API as phase 2 would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook.errors import InputError, LoginError, RunbookError
from runbook.localorg import ADMIN_USERNAME
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.jwt_bearer import jwt_login
from runbook.run.batch import run_runbook
from runbook.salesforce import connect_local, metadata, rest, start_local_org
from runbook.salesforce.rest import create_many, query

DEV, CI, READONLY = "dev@local.devhub", "ci@local.devhub", "readonly@local.devhub"
NEW_SET = {"permission_sets": ["Runbook JWT Users"], "create_permission_sets": True, "assign_users": [CI]}


def _record(workdir: Path, phase: str) -> dict:
    return json.loads((workdir / "phases" / f"{phase}.json").read_text())


class Journey:
    """One workdir and its local org; runs phase 3 with parameters and says what the org saw."""

    def __init__(self, root: Path):
        self.root, self.workdir = root, root / "work"
        first = run_runbook(workdir=self.workdir, runs_dir=root / "runs", progress=lambda _m: None,
                            phases=["certificate", "connected_app", "access"])
        assert first.ok, first.lines()
        self.org = start_local_org(self.workdir / "localorg")
        self.consumer_key = _record(self.workdir, "connected_app")["consumer_key"]
        self.key_path = Path(_record(self.workdir, "certificate")["key_path"])

    def access(self, **params):
        """Run notebook 03; returns (the phase run, the org's API calls it caused)."""
        before = len(self.org.call_log())
        run = run_runbook(workdir=self.workdir, runs_dir=self.root / "runs", phases=["access"], params=params,
                          progress=lambda _m: None)
        return run.phases[-1], self.org.call_log()[before:]

    def login(self, username: str) -> str:
        """"ok", or Salesforce's error as the user would see it."""
        try:
            jwt_login(consumer_key=self.consumer_key, username=username, key_path=self.key_path,
                      login_url=self.org.url)
        except LoginError as exc:
            return f"{exc.error}: {exc.description}"
        return "ok"


def _writes(calls) -> list[str]:
    return [c.operation for c in calls if c.is_write]


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    return Journey(tmp_path_factory.mktemp("access"))


def test_preauthorized_profile_logs_in_and_a_user_outside_it_is_refused(journey):
    assert journey.login(ADMIN_USERNAME) == "ok"
    assert journey.login(DEV) == "invalid_app_access: user is not admin approved to access this app"
    assert journey.login(READONLY) == "invalid_app_access: user is not admin approved to access this app"


def test_permission_set_created_and_assigned_by_the_runbook_grants_login_and_rerun_writes_nothing(journey):
    run, calls = journey.access(**NEW_SET)
    assert run.status == "done", run.error
    # the set and its assignment in one all-or-none Composite request, the grant in one metadata update
    assert _writes(calls) == ["rest.composite", "mdapi.updateMetadata"]
    session = connect_local(journey.org.state_dir)
    made = query(session, "SELECT Name, Label FROM PermissionSet WHERE Name = 'Runbook_JWT_Users'")
    assert made == [{"Name": "Runbook_JWT_Users", "Label": "Runbook JWT Users"}]
    assert journey.login(CI) == "ok"
    assert journey.login(DEV).startswith("invalid_app_access")
    assert _record(journey.workdir, "access")["permission_sets"] == ["Runbook_JWT_Users"]

    again, calls = journey.access(**NEW_SET)
    assert again.status == "done", again.error
    assert _writes(calls) == []
    reads = [c for c in calls if not c.is_write]
    print(f"rerun: {len(_writes(calls))} writes, {len(reads)} reads")
    assert _record(journey.workdir, "access")["changes"] == []


def test_exclusive_revokes_exactly_the_extras_and_nothing_is_removed_unasked(journey):
    run, calls = journey.access(profiles=["System Administrator", "standard user"], **NEW_SET)
    assert run.status == "done", run.error
    assert "mdapi.updateMetadata" in _writes(calls)  # Standard User (the set too, if this test runs first)
    assert journey.login(DEV) == "ok"

    # Standard User is no longer listed, but without exclusive it stays: nothing is removed unasked.
    kept, calls = journey.access(profiles=["System Administrator"], **NEW_SET)
    assert kept.status == "done", kept.error
    assert _writes(calls) == []
    assert journey.login(DEV) == "ok"
    warnings = _record(journey.workdir, "access")["warnings"]
    assert any("profile Standard User" in w and "exclusive=True would remove" in w for w in warnings)

    exclusive, calls = journey.access(profiles=["System Administrator"], exclusive=True, **NEW_SET)
    assert exclusive.status == "done", exclusive.error
    assert _writes(calls) == ["mdapi.updateMetadata"]  # the grant lists without Standard User
    assert journey.login(DEV).startswith("invalid_app_access")
    assert journey.login(CI) == "ok"
    assert journey.login(ADMIN_USERNAME) == "ok"
    record = _record(journey.workdir, "access")
    assert (record["profiles"], record["permission_sets"]) == (["System Administrator"], ["Runbook_JWT_Users"])


@pytest.mark.parametrize(("params", "message"), [
    ({"profiles": ["System Admin"]}, "profiles='System Admin' is not valid: no such profile. "
                                     "Fix: did you mean 'System Administrator'"),
    ({"permission_sets": ["Runbook_JWT_User"]}, "no such permission set. Fix: did you mean"),
    ({"permission_sets": ["Runbook_JWT_Users"], "assign_users": ["nobody@local.devhub"]},
     "assign_users='nobody@local.devhub' is not valid: no such user"),
    ({"profiles": [], "permission_sets": []}, "nobody can log in"),
    ({"refresh_token_policy": "specific_lifetime:3:WEEKS"}, "refresh_token_policy='specific_lifetime:3:WEEKS'"),
    ({"ip_relaxation": "RELAX"}, "ip_relaxation='RELAX' is not valid"),
    ({"permitted_users": "everyone"}, "permitted_users='everyone' is not valid"),
])
def test_bad_input_is_refused_with_a_clear_error_and_nothing_changes(journey, params, message):
    session = connect_local(journey.org.state_dir)  # the set the near-miss names: whichever tests ran before
    if not query(session, "SELECT Id FROM PermissionSet WHERE Name = 'Runbook_JWT_Users'"):
        rest.create(session, "PermissionSet", {"Name": "Runbook_JWT_Users", "Label": "Runbook JWT Users"})
    before = len(journey.org.call_log())
    try:  # the run's checks refuse both what needs no org and what only the org knows, before phase 1
        run, _calls = journey.access(**params)
    except RunbookError as caught:  # ParameterProblems is one
        error = str(caught)
    else:
        assert run.status == "failed"
        error = run.error
    assert message in error
    assert _writes(journey.org.call_log()[before:]) == []


# ---------------------------------------------------------------- reads that name permission sets by label

def _connected_app(journey, name: str, **oauth) -> str:
    """A JWT connected app made through the Metadata API, pre-authorized for System Administrator."""
    session = connect_local(journey.org.state_dir)
    certificate = Path(_record(journey.workdir, "certificate")["cert_path"]).read_text()
    metadata.create(session, "ConnectedApp", {
        "fullName": name, "label": name.replace("_", " "), "contactEmail": "admin@example.com",
        "profileName": ["System Administrator"],
        "oauthConfig": {"callbackUrl": "http://localhost:1717/OauthRedirect", "certificate": certificate,
                        "scopes": ["Api", "RefreshToken"], "isAdminApproved": True, **oauth}})
    return name


def _phase3(journey, tmp_path, **params):
    """Phase 3 through the package (plan, then apply); returns (the plan, the org's writes it caused)."""
    session = connect_local(journey.org.state_dir)
    before = len(journey.org.call_log())
    plan, _ = ensure_access(session, build_access_spec(app_kind="connected_app", **params), workdir=tmp_path)
    return plan, _writes(journey.org.call_log()[before:])


@pytest.mark.parametrize("read_as", ["name", "label"])
@pytest.mark.parametrize("asked_by", ["Name", "Label"])
def test_permission_set_read_back_by_label_or_by_name_converges_and_is_never_removed_and_re_added(
        journey, tmp_path, read_as, asked_by):
    tag = f"{read_as}_{asked_by}"
    app = _connected_app(journey, f"Read_As_{tag}")
    api_name, label = f"Read_As_Users_{tag}", f"Read as users {tag}"  # a label unlike the API name
    create_many(connect_local(journey.org.state_dir), [("s", "PermissionSet", {"Name": api_name, "Label": label})])
    asked = {"app_name": app, "permission_sets": [api_name if asked_by == "Name" else label]}
    journey.org.set_setting("permission_set_read_as", read_as)
    try:
        first, writes = _phase3(journey, tmp_path, **asked)
        assert [g.name for g in first.add] == [api_name] and writes == ["mdapi.updateMetadata"]
        read = metadata.read(connect_local(journey.org.state_dir), "ConnectedApp", app)["permissionSetName"]
        assert read == [api_name if read_as == "name" else label]

        second, writes = _phase3(journey, tmp_path, **asked)
        assert second.is_empty and writes == [], second
        exclusive, writes = _phase3(journey, tmp_path, exclusive=True, **asked)
        assert (exclusive.add, exclusive.remove, writes) == ([], [], [])
    finally:
        journey.org.set_setting("permission_set_read_as", "name")


def test_all_users_sends_no_grants_and_the_plan_names_what_it_leaves_out(journey, tmp_path):
    app = _connected_app(journey, "All_Users_App")
    asked = {"app_name": app, "permitted_users": "all_users", "profiles": ["System Administrator", "Standard User"]}
    plan, writes = _phase3(journey, tmp_path, **asked)
    assert plan.policy_changes == [("permitted_users", "admin_approved", "all_users")] and plan.add == []
    assert [g.name for g in plan.not_sent] == ["System Administrator", "Standard User"]
    assert ("not sent: pre-authorization of profile System Administrator, profile Standard User. With "
            "permitted_users='all_users' every user may self-authorize") in str(plan)
    assert writes == ["mdapi.updateMetadata"]  # the policy alone: the org refuses grants on a self-authorize app
    assert any("from before, unused while all users may self-authorize" in w for w in plan.warnings)
    session = connect_local(journey.org.state_dir)
    read = metadata.read(session, "ConnectedApp", app)
    assert read["oauthConfig"]["isAdminApproved"] is False and read["profileName"] == ["System Administrator"]
    assert any("not sent: pre-authorization" in w for w in _record(tmp_path, "access")["warnings"])

    again, writes = _phase3(journey, tmp_path, **asked)
    assert again.is_empty and writes == []
    cleared, writes = _phase3(journey, tmp_path, exclusive=True, **asked)
    assert [g.name for g in cleared.remove] == ["System Administrator"] and writes == ["mdapi.updateMetadata"]
    assert not metadata.read(session, "ConnectedApp", app).get("profileName")


# ---------------------------------------------------------------- external client app

def _create_external_client_app(session, name: str, certificate: str) -> str:
    """What phase 2 deploys for an ECA, minus the OAuth policies (phase 3's); returns the consumer key."""
    metadata.create(session, "ExternalClientApplication", {"fullName": name, "label": name,
                                                           "contactEmail": "admin@example.com",
                                                           "distributionState": "Local"})
    metadata.create(session, "ExtlClntAppOauthSettings", {"fullName": f"{name}_oauth", "label": name,
                                                          "externalClientApplication": name,
                                                          "commaSeparatedOauthScopes": "Api, Web, RefreshToken"})
    metadata.create(session, "ExtlClntAppGlobalOauthSettings", {
        "fullName": f"{name}_glbloauth", "label": name, "externalClientApplication": name,
        "callbackUrl": "http://localhost:1717/OauthRedirect", "certificate": certificate,
        "isConsumerSecretOptional": True})
    metadata.create(session, "ExtlClntAppConfigurablePolicies", {"fullName": f"{name}_plcy", "label": name,
                                                                 "externalClientApplication": name,
                                                                 "isEnabled": True, "isOauthPluginEnabled": True})
    return metadata.read(session, "ExtlClntAppGlobalOauthSettings", f"{name}_glbloauth")["consumerKey"]


def _eca_oauth_policies(session, app_name: str) -> dict:
    """The app's one OAuth policies component, whatever its name (the org may have generated it)."""
    mine = [c for c in (metadata.read(session, "ExtlClntAppOauthConfigurablePolicies", name) for name in
                        metadata.list_names(session, ["ExtlClntAppOauthConfigurablePolicies"])
                        ["ExtlClntAppOauthConfigurablePolicies"])
            if c and c.get("externalClientApplication") == app_name]
    assert len(mine) == 1, mine
    return mine[0]


def test_external_client_app_policies_and_preauthorization_converge(journey, tmp_path):
    session = connect_local(journey.org.state_dir)
    certificate = Path(_record(journey.workdir, "certificate")["cert_path"]).read_text()
    key = _create_external_client_app(session, "Runbook_ECA", certificate)
    eca = Journey.__new__(Journey)
    eca.org, eca.consumer_key, eca.key_path = journey.org, key, journey.key_path
    assert eca.login(ADMIN_USERNAME) == "invalid_grant: user hasn't approved this consumer"

    workdir = tmp_path / "eca"
    (workdir / "phases").mkdir(parents=True)
    (workdir / "phases" / "connected_app.json").write_text(json.dumps(
        {"app_kind": "external_client_app", "full_name": "Runbook_ECA"}))
    spec = build_access_spec(app_name="Runbook_ECA", refresh_token_policy="specific_lifetime:4:HOURS",
                             workdir=workdir)
    assert spec.app_kind == "external_client_app"
    plan, result = ensure_access(session, spec, workdir=workdir)
    assert result.profiles == ["System Administrator"] and plan.app_kind == "external_client_app"
    policies = _eca_oauth_policies(session, "Runbook_ECA")
    assert policies["permittedUsersPolicyType"] == "AdminApprovedPreAuthorized"
    assert (policies["refreshTokenPolicyType"], policies["refreshTokenValidityPeriod"],
            policies["refreshTokenValidityUnit"]) == ("SpecificLifetime", 4, "Hours")
    assert eca.login(ADMIN_USERNAME) == "ok"
    assert eca.login(DEV) == "invalid_app_access: user is not admin approved to access this app"

    both = build_access_spec(app_name="Runbook_ECA", profiles=["System Administrator", "Standard User"],
                             refresh_token_policy="specific_lifetime:4:HOURS", workdir=workdir,
                             permission_sets=["Runbook_JWT_Users"], create_permission_sets=True,
                             assign_users=[READONLY])
    ensure_access(session, both, workdir=workdir)
    assert eca.login(DEV) == "ok" and eca.login(READONLY) == "ok"
    policies = _eca_oauth_policies(session, "Runbook_ECA")
    assert policies["commaSeparatedPermissionSet"] == "Runbook_JWT_Users"  # API names [V Electivus], not Ids

    before = len(journey.org.call_log())
    plan, _ = ensure_access(session, both, workdir=workdir)
    assert plan.is_empty and _writes(journey.org.call_log()[before:]) == []

    only_admin = build_access_spec(app_name="Runbook_ECA", refresh_token_policy="specific_lifetime:4:HOURS",
                                   workdir=workdir, exclusive=True)
    plan, _ = ensure_access(session, only_admin, workdir=workdir)
    assert sorted(g.name for g in plan.remove) == ["Runbook_JWT_Users", "Standard User"]
    assert eca.login(ADMIN_USERNAME) == "ok"
    assert eca.login(DEV).startswith("invalid_app_access") and eca.login(READONLY).startswith("invalid_app_access")


def test_external_client_app_from_phase_2_preauthorizes_through_papermill(tmp_path):
    workdir = tmp_path / "work"
    params = {"app_kind": "external_client_app", "profiles": ["System Administrator", "Standard User"],
              "ip_relaxation": "BYPASS", "refresh_token_policy": "specific_inactivity:7:DAYS"}
    run = run_runbook(workdir=workdir, runs_dir=tmp_path / "runs", params=params, progress=lambda _m: None,
                      phases=["certificate", "connected_app", "access"])
    assert run.ok, run.lines()
    assert _record(workdir, "access")["app_kind"] == "external_client_app"
    eca = Journey.__new__(Journey)
    eca.org = start_local_org(workdir / "localorg")
    eca.consumer_key = _record(workdir, "connected_app")["consumer_key"]
    eca.key_path = Path(_record(workdir, "certificate")["key_path"])
    assert eca.login(DEV) == "ok"
    assert eca.login(READONLY) == "invalid_app_access: user is not admin approved to access this app"
    session = connect_local(eca.org.state_dir)
    policies = _eca_oauth_policies(session, "Runbook_CI")
    assert (policies["ipRelaxationPolicyType"], policies["refreshTokenPolicyType"]) == ("Bypass", "SpecificInactivity")

    before = len(eca.org.call_log())
    again = run_runbook(workdir=workdir, runs_dir=tmp_path / "runs", params=params, progress=lambda _m: None,
                        phases=["access"])
    assert again.ok, again.lines()
    assert _writes(eca.org.call_log()[before:]) == []


def test_invalid_policy_strings_are_refused_before_the_org_is_asked():
    for params, field in [({"refresh_token_policy": "specific_lifetime:0:DAYS"}, "refresh_token_policy"),
                          ({"refresh_token_policy": "forever"}, "refresh_token_policy"),
                          ({"ip_relaxation": "bypass"}, "ip_relaxation"),
                          ({"create_permission_sets": True, "permission_sets": ["Bad__Name"]}, "permission_sets"),
                          ({"assign_users": [CI]}, "assign_users")]:
        with pytest.raises(InputError) as err:
            build_access_spec(app_name="Runbook_CI", **params)
        assert err.value.field == field
