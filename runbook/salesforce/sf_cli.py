"""Logging in through the Salesforce CLI's stored auth (an alias or username), with today's CLI and older ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from runbook.errors import OrgConnectionError
from runbook.salesforce.session import OrgSession

ENV_SF_CLI = "RUNBOOK_SF_CLI"  # the Salesforce CLI to run; empty: `sf` on PATH


def sf_executable() -> str | None:
    """The Salesforce CLI to run: ``$RUNBOOK_SF_CLI`` when set, else ``sf`` on PATH.

    ``runbook run`` resolves it once in the parent and hands the absolute path to its kernels
    (``$RUNBOOK_SF_CLI``), so a kernel started with another PATH (Jupyter, a venv) finds the same CLI.
    """
    named = os.environ.get(ENV_SF_CLI, "")
    return named if named and os.access(named, os.X_OK) else shutil.which("sf")


def sf_cli_env() -> dict[str, str]:
    """The kernel environment that makes a batch kernel run the CLI this process would run."""
    sf = sf_executable()
    return {ENV_SF_CLI: os.path.abspath(sf)} if sf else {}


def _sf_json(sf: str, args: list[str], method: str) -> dict:
    """Run ``sf ARGS --json`` and return its parsed answer; the CLI's own refusal stays in ``payload``."""
    shown = "`sf " + " ".join(args[:3]) + "`"
    try:
        # FORCE_COLOR=0: ipykernel sets FORCE_COLOR=1 / CLICOLOR_FORCE=1 in every kernel, and the CLI then colours
        # even its --json output [O sf 2.150.6 in a batch kernel]
        proc = subprocess.run([sf, *args, "--json"], capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "SF_DISABLE_TELEMETRY": "true", "FORCE_COLOR": "0"})
    except subprocess.TimeoutExpired:
        raise OrgConnectionError(method, f"{shown} did not answer in 120 s") from None
    except OSError as exc:
        raise OrgConnectionError(method, f"{shown} could not be started ({exc.strerror})",
                                 f"check {sf} is the Salesforce CLI, or set ${ENV_SF_CLI}") from None
    try:
        payload = json.loads(proc.stdout)
    except json.JSONDecodeError:
        said = next((line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()), "")
        raise OrgConnectionError(method, f"{shown} printed no JSON (exit {proc.returncode}: {said[:200]})",
                                 f"run `{sf} org display --json` yourself; check node and the CLI work, or set "
                                 f"${ENV_SF_CLI}") from None
    return payload if isinstance(payload, dict) else {}


def _usable_token(value: object) -> str:
    """The token itself, or "" where the CLI printed a placeholder (CLI 2.146+ prints "[REDACTED] Use …")."""
    token = value if isinstance(value, str) else ""
    return "" if not token or "REDACTED" in token.upper() or any(c.isspace() for c in token) else token


def connect_sf_cli(alias: str, api_version: str, login_url: str, verify: str | bool = True) -> OrgSession:
    """The CLI's stored auth for ``alias``, with today's CLI and older ones.

    ``sf org display`` gives the instance URL and username; its access token is redacted since CLI
    2.146 [V real-orgs-2026.md §1], so the token then comes from ``sf org auth show-access-token``.
    An older CLI prints the token in ``org display`` and has no ``org auth``: that token is used as is.
    Both commands refresh an expired token from the CLI's stored refresh token; the runbook never prints it.
    """
    method = f"the Salesforce CLI's stored auth for {alias!r}"
    sf = sf_executable()
    if sf is None:
        raise OrgConnectionError(method, "the `sf` command is not on PATH",
                                 f'install the Salesforce CLI (or set ${ENV_SF_CLI} to its path), or use '
                                 'org="env" / org="password" / org="local"')
    display = _sf_json(sf, ["org", "display", "--target-org", alias], method)
    result = display.get("result") if isinstance(display.get("result"), dict) else {}
    if display.get("status") != 0 or not result.get("instanceUrl"):
        raise _cli_refusal(method, display, alias, "no instance URL in its answer")
    token = _usable_token(result.get("accessToken"))
    if not token:
        shown = _sf_json(sf, ["org", "auth", "show-access-token", "--target-org", alias], method)
        token = _usable_token((shown.get("result") or {}).get("accessToken")
                              if isinstance(shown.get("result"), dict) else "")
        if shown.get("status") != 0 or not token:
            raise _cli_refusal(method, shown, alias, "no access token in the answer of "
                                                     "`sf org auth show-access-token`")
    return OrgSession(instance_url=result["instanceUrl"].rstrip("/"), access_token=token,
                      api_version=api_version, method=method,
                      login_url=(login_url or result.get("loginUrl") or result["instanceUrl"]).rstrip("/"),
                      username=result.get("username", ""), verify=verify)


def _cli_refusal(method: str, payload: dict, alias: str, missing: str) -> OrgConnectionError:
    reason = payload.get("message") or payload.get("name") or missing
    return OrgConnectionError(method, str(reason), f"run `sf org login web --alias {alias}` first (or "
                              "`sf org login jwt`), then check `sf org list`")
