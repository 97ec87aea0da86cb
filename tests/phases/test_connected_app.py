"""Phase 2 against the local org over HTTPS: plan, create, update in place, dry run, ports, sfdx-project.json,
web flow secret, preflight, teardown and bad input. No mocks: what a user sees, and what the org holds."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import free_callback_port

from runbook.errors import InputError, PreflightError, SalesforceError
from runbook.localorg import Fault, LocalOrg
from runbook.phases.certificate import ensure_certificate
from runbook.phases.connected_app import build_spec, ensure_connected_app, plan_connected_app
from runbook.phases.teardown import teardown_app
from runbook.salesforce import connect_local, metadata
from runbook.salesforce.rest import query

EMAIL = "admin@example.com"


PORT = 0


@pytest.fixture(autouse=True)
def _callback_port():
    """A fresh free callback port per test (not 1717: parallel tests and other programs may hold it)."""
    global PORT
    PORT = free_callback_port()


@pytest.fixture
def held_port():
    """A port another process (here: this test) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _hold_1717(sock: socket.socket) -> None:
    """Listen on 1717 ourselves, so it is busy for sure (parallel tests may hold it for a moment)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections (TIME_WAIT) do not block us
    deadline = time.monotonic() + 30
    while True:
        try:
            sock.bind(("127.0.0.1", 1717))
            sock.listen()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.skip("port 1717 stayed taken by another program for 30 s")
            time.sleep(0.2)


def _spec(cert, name: str, **overrides):
    # not 1717: a parallel test or another program on this machine may hold it
    return build_spec(**{"app_name": name, "contact_email": EMAIL, "cert_path": cert.cert_path,
                         "callback_port": PORT, **overrides})


def _writes(org, since: int) -> list[str]:
    return [c.operation for c in org.call_log()[since:] if c.is_write]


def _app_rows(session, label: str) -> list:
    return query(session, f"SELECT Id FROM ConnectedApplication WHERE Name = '{label}'")


def test_create_plans_then_creates_and_records_the_consumer_key(org, session, cert, tmp_path):
    spec = _spec(cert, "Create_Me", app_kind="connected_app")
    mark = len(org.call_log())
    plan, app = ensure_connected_app(session, spec, workdir=tmp_path)
    assert str(plan).startswith("Create connected app Create_Me")
    assert "checked by the create itself" in plan.preflight
    # read (absent), create, read back the consumer key: no check-only deploy before a real create
    assert [c.operation for c in org.call_log()[mark:]] == \
        ["mdapi.readMetadata", "mdapi.createMetadata", "mdapi.readMetadata"]
    record = json.loads((tmp_path / "phases" / "connected_app.json").read_text())
    assert record["consumer_key"] == app.consumer_key and app.consumer_key.startswith("3MVG")
    assert {k: record[k] for k in ("full_name", "label", "app_kind")} == \
        {"full_name": "Create_Me", "label": "Create Me", "app_kind": "connected_app"}
    assert record["certificate_fingerprint"] == cert.sha256_fingerprint
    assert metadata.read(session, "ConnectedApp", "Create_Me")["oauthConfig"]["callbackUrl"] == \
        f"http://localhost:{spec.callback_port}/OauthRedirect"


def test_update_in_place_changes_only_the_changed_field_and_keeps_the_consumer_key(org, session, cert, tmp_path):
    _plan, first = ensure_connected_app(session, _spec(cert, "Update_Me"), workdir=tmp_path)
    other = ensure_certificate(workdir=tmp_path / "other")
    before = metadata.read(session, "ConnectedApp", "Update_Me")

    plan = plan_connected_app(session, _spec(other, "Update_Me"))
    assert plan.action == "update"
    assert [(c.field, c.old, c.new) for c in plan.changes] == \
        [("oauthConfig.certificate (SHA-256)", cert.sha256_fingerprint, other.sha256_fingerprint)]
    mark = len(org.call_log())
    _plan, second = ensure_connected_app(session, _spec(other, "Update_Me"), workdir=tmp_path)

    assert _writes(org, mark) == ["mdapi.updateMetadata"]
    after = metadata.read(session, "ConnectedApp", "Update_Me")
    assert second.consumer_key == first.consumer_key == after["oauthConfig"]["consumerKey"]
    changed = {k for k in after if after[k] != before[k]} | \
        {f"oauthConfig.{k}" for k in after["oauthConfig"] if after["oauthConfig"][k] != before["oauthConfig"].get(k)}
    assert changed == {"oauthConfig", "oauthConfig.certificate"}
    assert len(_app_rows(session, "Update Me")) == 1
    assert plan_connected_app(session, _spec(other, "Update_Me")).action == "none"


def test_dry_run_shows_the_plan_and_leaves_org_and_disk_unchanged(org, session, cert, tmp_path):
    mark = len(org.call_log())
    plan, app = ensure_connected_app(session, _spec(cert, "Dry_Run", description="x"), workdir=tmp_path,
                                     apply=False)
    assert plan.action == "create" and app.applied is False and app.consumer_key == ""
    assert _writes(org, mark) == []
    assert metadata.read(session, "ConnectedApp", "Dry_Run") is None
    assert not (tmp_path / "phases").exists()


def test_busy_callback_port_is_refused_before_anything_is_written(org, session, cert, tmp_path, held_port):
    mark = len(org.call_log())
    with pytest.raises(InputError) as err:
        _spec(cert, "Busy_Port", callback_port=held_port, sfdx_project=tmp_path / "sfdx-project.json",
              create_sfdx_project=True)
    assert f"another process listens on port {held_port}" in str(err.value)
    assert 'callback_port="auto"' in str(err.value)
    assert org.call_log()[mark:] == [] and list(tmp_path.iterdir()) == []


def test_auto_port_avoids_a_busy_1717_and_writes_oauth_local_port(session, cert, tmp_path):
    project = tmp_path / "proj" / "sfdx-project.json"
    with socket.socket() as sock:
        _hold_1717(sock)
        spec = _spec(cert, "Auto_Port", callback_port="auto", sfdx_project=project, create_sfdx_project=True)
    assert spec.callback_port != 1717
    plan, app = ensure_connected_app(session, spec, workdir=tmp_path)
    assert f"oauthLocalPort (unset) -> {spec.callback_port} (new file)" in str(plan)
    data = json.loads(project.read_text())
    assert data["oauthLocalPort"] == spec.callback_port and data["packageDirectories"]
    assert app.callback_url == f"http://localhost:{spec.callback_port}/OauthRedirect"
    assert metadata.read(session, "ConnectedApp", "Auto_Port")["oauthConfig"]["callbackUrl"] == app.callback_url


def test_sfdx_project_keeps_the_rest_of_the_file_and_its_formatting(session, cert, tmp_path):
    project = tmp_path / "sfdx-project.json"
    original = ('{\n    "packageDirectories": [\n        {\n            "path": "force-app",\n'
                '            "default": true\n        }\n    ],\n    "name": "mine",\n'
                '    "sourceApiVersion": "61.0",\n    "sfdcLoginUrl": "https://login.salesforce.com"\n}\n')
    project.write_text(original)
    port = PORT
    ensure_connected_app(session, _spec(cert, "Keep_Project", callback_port=port, sfdx_project=project),
                         workdir=tmp_path)
    expected = original.replace('"https://login.salesforce.com"\n}',
                                f'"https://login.salesforce.com",\n    "oauthLocalPort": {port}\n}}')
    assert project.read_text() == expected
    mtime = project.stat().st_mtime_ns
    plan, _app = ensure_connected_app(session, _spec(cert, "Keep_Project", callback_port=port,
                                                     sfdx_project=project), workdir=tmp_path)
    assert plan.action == "none" and project.stat().st_mtime_ns == mtime


def test_web_flow_secret_goes_to_a_0600_file_and_is_never_shown(session, cert, tmp_path):
    plan, app = ensure_connected_app(session, _spec(cert, "Web_Flow", flows=["jwt", "web"]), workdir=tmp_path)
    secret_file = Path(app.consumer_secret_file)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert 8 <= len(secret) <= 256 and secret.isalnum()
    shown = [str(plan), repr(plan), plan._repr_html_(), str(app), app._repr_html_(),
             (tmp_path / "phases" / "connected_app.json").read_text()]
    assert not any(secret in text for text in shown)
    oauth = metadata.read(session, "ConnectedApp", "Web_Flow")["oauthConfig"]
    assert oauth["isPkceRequired"] is True and oauth["isConsumerSecretOptional"] is True
    assert "consumerSecret" not in oauth
    # the org really holds this secret: it refuses it for another app
    with pytest.raises(SalesforceError) as err:
        metadata.create(session, "ConnectedApp", {"fullName": "Secret_Thief", "label": "T", "contactEmail": EMAIL,
                                                  "oauthConfig": {"callbackUrl": "http://localhost:1717/x",
                                                                  "consumerSecret": secret, "scopes": ["Api"]}})
    assert "consumer secret is already taken" in str(err.value)
    assert secret not in str(err.value)


def _org_holds_secret(session, secret: str) -> bool:
    """Whether the org already holds ``secret``: it refuses it for another app (the value is never shown)."""
    try:
        metadata.create(session, "ConnectedApp", {"fullName": "Secret_Probe", "label": "P", "contactEmail": EMAIL,
                                                  "oauthConfig": {"callbackUrl": "http://localhost:1717/x",
                                                                  "consumerSecret": secret, "scopes": ["Api"]}})
    except SalesforceError as err:
        return "consumer secret is already taken" in str(err)
    metadata.delete(session, "ConnectedApp", "Secret_Probe")
    return False


def test_a_lost_create_answer_keeps_the_secret_pending_and_the_rerun_adopts_it(org, session, cert, tmp_path):
    spec = _spec(cert, "Lost_Answer", flows=["jwt", "web"], app_kind="connected_app")
    org.set_faults([Fault("server_error", match="createMetadata", after=True)])
    try:
        with pytest.raises(SalesforceError) as caught:
            ensure_connected_app(session, spec, workdir=tmp_path)
    finally:
        org.set_faults(None)
    assert caught.value.code == "NO_ANSWER" and "rerun phase 2" in str(caught.value)
    secret_path = tmp_path / "secrets" / "Lost_Answer.consumer_secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert (tmp_path / "secrets" / "Lost_Answer.consumer_secret.pending").is_file()

    plan, app = ensure_connected_app(session, spec, workdir=tmp_path)

    assert plan.action == "none" and app.consumer_secret_file == str(secret_path) and app.warnings == []
    assert not (tmp_path / "secrets" / "Lost_Answer.consumer_secret.pending").exists()
    assert _org_holds_secret(session, secret_path.read_text().strip())


def test_a_refused_create_leaves_no_secret_behind(org, session, cert, tmp_path):
    spec = _spec(cert, "Refused_Secret", flows=["jwt", "web"], app_kind="connected_app", contact_email="x@y.z")
    org.set_faults(None)
    with LocalOrg(tmp_path / "closed", allow_connected_apps=False) as closed:
        os.environ["REQUESTS_CA_BUNDLE"] = str(closed.ca_bundle)
        try:
            with pytest.raises(PreflightError):
                ensure_connected_app(connect_local(closed.state_dir), spec, workdir=tmp_path)
        finally:
            os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
    assert list((tmp_path / "secrets").iterdir()) == []


def test_a_rerun_without_the_secret_file_says_the_secret_is_unknown_and_how_to_rotate_it(session, cert, tmp_path):
    spec = _spec(cert, "Secret_Gone", flows=["jwt", "web"])
    _plan, first = ensure_connected_app(session, spec, workdir=tmp_path)
    Path(first.consumer_secret_file).unlink()

    _plan, again = ensure_connected_app(session, spec, workdir=tmp_path)

    assert again.consumer_secret_file == ""
    assert len(again.warnings) == 1 and "Generate new consumer secret" in again.warnings[0]
    assert "Warning" in again._repr_html_()


def test_local_org_returns_salesforce_errors_for_keys_and_required_fields(session, cert, tmp_path):
    _plan, app = ensure_connected_app(session, _spec(cert, "Key_Owner"), workdir=tmp_path)
    current = metadata.read(session, "ConnectedApp", "Key_Owner")
    with pytest.raises(SalesforceError, match="FIELD_INTEGRITY_EXCEPTION: You cannot provide a Consumer Key"):
        metadata.update(session, "ConnectedApp", current)
    copy = {"fullName": "Key_Copy", "label": "Copy", "contactEmail": EMAIL,
            "oauthConfig": {"callbackUrl": "http://localhost:1717/OauthRedirect", "consumerKey": app.consumer_key,
                            "scopes": ["Api"]}}
    with pytest.raises(SalesforceError, match="consumer key is already taken"):
        metadata.create(session, "ConnectedApp", copy)
    # zeep refuses a missing required field before sending; a deployed file reaches the org, which refuses it
    ns = 'xmlns="http://soap.sforce.com/2006/04/metadata"'
    archive = tmp_path / "deploy.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("package.xml", f"<Package {ns}><types><members>No_Email</members><name>ConnectedApp</name>"
                                       "</types><version>62.0</version></Package>")
        zipped.writestr("connectedApps/No_Email.connectedApp", f"<ConnectedApp {ns}><label>No email</label>"
                                                               "</ConnectedApp>")
    status = session.sf.checkDeployStatus(session.sf.deploy(str(archive), sandbox=False)["asyncId"])
    assert status["state"] == "Failed"
    assert "contactEmail" in status["deployment_detail"]["errors"][0]["message"]


def test_dry_run_asks_the_org_by_a_check_only_deploy_and_saves_nothing(org, session, cert, tmp_path):
    mark = len(org.call_log())
    plan, app = ensure_connected_app(session, _spec(cert, "Dry_Run"), workdir=tmp_path, apply=False)
    assert "the org allows new connected apps" in plan.preflight and not app.applied
    assert "mdapi.deploy" in [c.operation for c in org.call_log()[mark:]]
    assert _writes(org, mark) == [] and metadata.read(session, "ConnectedApp", "Dry_Run") is None


@pytest.mark.parametrize("apply", [False, True], ids=["dry-run-preflight", "create-refused"])
def test_preflight_refuses_new_connected_apps_with_both_ways_out(tmp_path, cert, monkeypatch, apply):
    with LocalOrg(tmp_path / "org") as closed:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(closed.ca_bundle))
        closed.set_setting("allow_connected_apps", False)
        session = connect_local(closed.state_dir)
        with pytest.raises(PreflightError) as err:
            ensure_connected_app(session, _spec(cert, "Refused", app_kind="connected_app"), workdir=tmp_path / "work",
                                 apply=apply)
        message = str(err.value)
        assert "INSUFFICIENT_ACCESS" in message and "Connected apps creation is restricted" in message
        assert "Salesforce Support" in message and 'app_kind="external_client_app"' in message
        assert "SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI" in message
        # the dry run writes nothing; a real create is refused whole, so the org holds no app either way
        assert [c.operation for c in closed.call_log() if c.is_write] == (["mdapi.createMetadata"] if apply else [])
        assert metadata.read(session, "ConnectedApp", "Refused") is None
        assert _app_rows(session, "Refused") == []
        _plan, eca = ensure_connected_app(session, _spec(cert, "Allowed", app_kind="external_client_app"),
                                          workdir=tmp_path / "work")
        assert eca.consumer_key


def test_teardown_shows_the_plan_then_deletes_app_and_access(org, session, cert, tmp_path):
    ensure_connected_app(session, _spec(cert, "Tear_Down"), workdir=tmp_path)
    from runbook.phases.access import build_access_spec, ensure_access

    ensure_access(session, build_access_spec(app_name="Tear_Down"), workdir=tmp_path)
    assert len(_grants(session, "Tear Down")) == 1
    mark = len(org.call_log())
    plan = teardown_app(session, "Tear_Down", workdir=tmp_path)
    assert _writes(org, mark) == []
    assert plan.lines()[:2] == ["delete ConnectedApp Tear_Down",
                                "delete its 1 pre-authorization(s) (SetupEntityAccess)"]
    teardown_app(session, "Tear_Down", workdir=tmp_path, apply=True)
    assert metadata.read(session, "ConnectedApp", "Tear_Down") is None
    assert _app_rows(session, "Tear Down") == []
    assert not (tmp_path / "phases" / "connected_app.json").exists()
    assert str(teardown_app(session, "Tear_Down")) == "nothing to delete: the org has no app Tear_Down"


def _grants(session, label: str) -> list:
    rows = _app_rows(session, label)
    return query(session, f"SELECT Id FROM SetupEntityAccess WHERE SetupEntityId = '{rows[0]['Id']}'") if rows else []


def test_teardown_command_asks_before_deleting(org, session, cert, tmp_path):
    ensure_connected_app(session, _spec(cert, "Cli_Tear"), workdir=tmp_path)
    env = {**os.environ, "RUNBOOK_LOCAL_ORG_STATE": str(org.state_dir)}
    command = [sys.executable, "-m", "runbook", "teardown", "--app", "Cli_Tear", "--workdir", str(tmp_path)]
    no = subprocess.run(command, input="n\n", capture_output=True, text=True, env=env, timeout=120)
    assert "delete ConnectedApp Cli_Tear" in no.stdout and "Nothing deleted." in no.stdout, no.stderr
    assert metadata.read(session, "ConnectedApp", "Cli_Tear") is not None
    yes = subprocess.run([*command, "--yes"], capture_output=True, text=True, env=env, timeout=120)
    assert yes.returncode == 0 and "Deleted Cli_Tear." in yes.stdout, yes.stderr
    assert metadata.read(session, "ConnectedApp", "Cli_Tear") is None


BAD_INPUT = [
    ({"app_name": "1_starts_with_digit"}, "app_name"),
    ({"app_name": "double__underscore"}, "app_name"),
    ({"app_name": "trailing_"}, "app_name"),
    ({"app_name": "A" * 41}, "app_name"),
    ({"label": "   "}, "label"),
    ({"label": "L" * 41}, "label"),
    ({"contact_email": "not-an-email"}, "contact_email"),
    ({"callback_port": 0}, "callback_port"),
    ({"callback_port": 65536}, "callback_port"),
    ({"callback_port": "soon"}, "callback_port"),
    ({"flows": ["saml"]}, "flows"),
    ({"flows": []}, "flows"),
    ({"app_kind": "canvas_app"}, "app_kind"),
    ({"scopes": ["api", "everything"]}, "scopes"),
    ({"consumer_secret_by": "me"}, "consumer_secret_by"),
    ({"sfdx_project": "BROKEN"}, "sfdx_project"),
    ({"sfdx_project": "MISSING"}, "sfdx_project"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_INPUT, ids=[f"{f}-{i}" for i, (_b, f) in enumerate(BAD_INPUT)])
def test_bad_input_is_refused_with_the_field_and_nothing_is_written(org, cert, tmp_path, bad, field):
    if bad.get("sfdx_project") == "BROKEN":
        broken = tmp_path / "sfdx-project.json"
        broken.write_text('{"packageDirectories": [,]}')
        bad = {"sfdx_project": broken}
    elif bad.get("sfdx_project") == "MISSING":
        bad = {"sfdx_project": tmp_path / "nowhere" / "sfdx-project.json"}
    before = sorted(tmp_path.rglob("*"))
    mark = len(org.call_log())
    with pytest.raises(InputError) as err:
        _spec(cert, bad.pop("app_name", "Bad_Input"), **bad)
    assert err.value.field == field and "Fix:" in str(err.value)
    if field == "scopes":
        assert "refresh_token offline_access" in str(err.value)  # the valid names are listed
    assert sorted(tmp_path.rglob("*")) == before
    assert org.call_log()[mark:] == []


@pytest.mark.parametrize("app_kind", ["connected_app", "external_client_app"])
def test_rerun_with_scopes_the_org_reads_back_normalised_plans_nothing(org, session, cert, tmp_path, app_kind):
    """`profile` and `email` read back as Basic, `offline_access` as RefreshToken (Metadata API doc)."""
    scopes = ["api", "profile", "email", "offline_access"]
    spec = _spec(cert, f"Scopes_{app_kind.title().replace('_', '')}", app_kind=app_kind, scopes=scopes)
    ensure_connected_app(session, spec, workdir=tmp_path)
    mark = len(org.call_log())

    plan, _app = ensure_connected_app(session, spec, workdir=tmp_path)

    assert plan.action == "none", str(plan)
    assert _writes(org, mark) == []
    if app_kind == "connected_app":
        read = metadata.read(session, "ConnectedApp", spec.full_name)["oauthConfig"]["scopes"]
        assert sorted(read) == ["Api", "Basic", "RefreshToken"]


# ---------------------------------------------------------------- issue 16: renames and ownership

MARKER = "[managed by sf-connected-app-runbook]"


def test_changing_app_name_says_the_old_app_stays_and_how_to_delete_it(org, session, cert, tmp_path):
    ensure_connected_app(session, _spec(cert, "Old_Name", workdir=tmp_path), workdir=tmp_path)

    plan, app = ensure_connected_app(session, _spec(cert, "New_Name", workdir=tmp_path), workdir=tmp_path)

    text = str(plan)
    assert text.startswith("Create connected app New_Name")
    assert (f"renamed: app_name changed from Old_Name to New_Name: Old_Name, which phase 2 made before (recorded in "
            f"{tmp_path}), is not renamed and stays in the org") in text
    assert f"delete it with: runbook teardown --app Old_Name --workdir {tmp_path}" in text
    assert any("runbook teardown --app Old_Name" in w for w in app.warnings)  # the result and its record say it too
    assert metadata.read(session, "ConnectedApp", "Old_Name") is not None  # never renamed or deleted by phase 2


@pytest.mark.parametrize("app_kind", ["connected_app", "external_client_app"])
def test_the_apps_the_runbook_saves_carry_its_marker_and_rerun_unchanged(org, session, cert, tmp_path, app_kind):
    name = f"Marked_{app_kind.title().replace('_', '')}"
    ensure_connected_app(session, _spec(cert, name, app_kind=app_kind, description="CI login"), workdir=tmp_path)
    kind_type = {"connected_app": "ConnectedApp", "external_client_app": "ExternalClientApplication"}[app_kind]
    assert metadata.read(session, kind_type, name)["description"] == f"CI login {MARKER}"

    other_folder = tmp_path / "elsewhere"  # no record of the app there: the marker alone says it is the runbook's
    plan = plan_connected_app(session, _spec(cert, name, app_kind=app_kind, description="CI login",
                                             workdir=other_folder))
    assert plan.action == "none" and "not the runbook's" not in str(plan)


def _their_app(session, name: str, certificate: str) -> None:
    """A connected app someone made in Setup: no marker, their own certificate and callback."""
    metadata.create(session, "ConnectedApp", {
        "fullName": name, "label": name.replace("_", " "), "contactEmail": "them@example.com",
        "description": "Their integration",
        "oauthConfig": {"callbackUrl": "https://their.example.com/callback", "certificate": certificate,
                        "scopes": ["Api"]}})


def test_an_app_the_runbook_did_not_create_is_not_changed_without_adopt(org, session, cert, tmp_path):
    theirs = ensure_certificate(workdir=tmp_path / "theirs")
    _their_app(session, "Their_App", Path(theirs.cert_path).read_text())
    before = metadata.read(session, "ConnectedApp", "Their_App")
    spec = _spec(cert, "Their_App", workdir=tmp_path)

    plan = plan_connected_app(session, spec)

    text = str(plan)
    assert ("not the runbook's: Their_App is in the org, but the runbook did not create it: its description has no "
            f"{MARKER} and no phase 2 record in this work folder names it. Applying overwrites ") in text
    for overwritten in ("contactEmail", "description", "oauthConfig.callbackUrl", "oauthConfig.certificate (SHA-256)"):
        assert overwritten in text.split("Applying overwrites ")[1]
    assert "Set adopt=True to take it over, or choose another app_name." in text
    mark = len(org.call_log())
    with pytest.raises(InputError) as refused:
        ensure_connected_app(session, spec, workdir=tmp_path)
    assert str(refused.value).startswith("adopt=False is not valid: Their_App is in the org, but the runbook did "
                                         "not create it")
    assert str(refused.value).endswith("Fix: set adopt=True to take it over, or choose another app_name")
    assert _writes(org, mark) == [] and metadata.read(session, "ConnectedApp", "Their_App") == before
    assert not (tmp_path / "phases" / "connected_app.json").exists()


def test_adopting_an_app_overwrites_it_marks_it_and_a_rerun_needs_no_adopt(org, session, cert, tmp_path):
    theirs = ensure_certificate(workdir=tmp_path / "theirs")
    _their_app(session, "Adopted_App", Path(theirs.cert_path).read_text())

    plan, app = ensure_connected_app(session, _spec(cert, "Adopted_App", adopt=True), workdir=tmp_path)

    assert plan.action == "update" and "adopt=True: applying takes it over and marks it as the runbook's" in str(plan)
    after = metadata.read(session, "ConnectedApp", "Adopted_App")
    assert after["description"].endswith(MARKER) and app.certificate_fingerprint == cert.sha256_fingerprint
    rerun = plan_connected_app(session, _spec(cert, "Adopted_App", workdir=tmp_path / "fresh"))
    assert rerun.action == "none" and "not the runbook's" not in str(rerun)


def test_an_app_recorded_in_the_work_folder_without_the_marker_is_the_runbooks(org, session, cert, tmp_path):
    """An app phase 2 made before apps were marked: its record says whose it is; the rerun adds the marker."""
    _their_app(session, "Pre_Marker", Path(cert.cert_path).read_text())
    from runbook.work.workdir import open_workdir

    open_workdir(tmp_path).save("connected_app", {"full_name": "Pre_Marker", "app_kind": "connected_app"})

    plan, _app = ensure_connected_app(session, _spec(cert, "Pre_Marker", workdir=tmp_path), workdir=tmp_path)

    assert plan.action == "update" and "not the runbook's" not in str(plan) and "renamed" not in str(plan)
    assert metadata.read(session, "ConnectedApp", "Pre_Marker")["description"] == MARKER


def test_a_description_with_no_room_for_the_marker_is_refused(cert):
    with pytest.raises(InputError) as refused:
        _spec(cert, "Long_Text", description="x" * 240)
    assert refused.value.field == "description" and "use at most 217 characters" in str(refused.value)
