"""Connecting to the Dev Hub org, the ways Salesforce people already connect.

``org`` names the target, and the method follows from it, in this order of preference:

- ``"local"`` (the default): the emulated Dev Hub in ``runbook.localorg``, started on demand;
- a Salesforce CLI alias or username: the CLI's stored auth (``sf org display --json``, and
  ``sf org auth show-access-token`` where the CLI redacts the token);
- ``"env"``: an access token and instance URL from environment variables ($SF_ACCESS_TOKEN and
  $SF_INSTANCE_URL; ``"env:TOKEN_VAR,URL_VAR"`` names others);
- ``"password"``: username + password (+ security token) from environment variables, SOAP login
  ($SF_USERNAME, $SF_PASSWORD, $SF_SECURITY_TOKEN; ``"password:USER_VAR,PASS_VAR[,TOKEN_VAR]"`` names
  others). Salesforce retires SOAP ``login()`` from API 65.0 and in Summer '27: the login itself is
  made at API 64.0 at most, and a warning says so.

No secret is ever a parameter: tokens and passwords come from the environment, the CLI's store
or the local org's state folder, and never appear in a message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from runbook.errors import InputError, OrgConnectionError
from runbook.files import PUBLIC, write_atomic
from runbook.retry import RetryingSession, no_answer, timeout_fix
from runbook.urls import without_userinfo
from runbook.workdir import DEFAULT_WORKDIR, resolve_workdir

if TYPE_CHECKING:
    from simple_salesforce import Salesforce

    from runbook.localorg import LocalOrg

DEFAULT_API_VERSION = "62.0"
LOCAL_STATE_ENV = "RUNBOOK_LOCAL_ORG_STATE"
ENV_TOKEN = "SF_ACCESS_TOKEN"
ENV_INSTANCE_URL = "SF_INSTANCE_URL"
ENV_USERNAME = "SF_USERNAME"
ENV_PASSWORD = "SF_PASSWORD"
ENV_SECURITY_TOKEN = "SF_SECURITY_TOKEN"
ENV_LOGIN_URL = "SF_LOGIN_URL"
ENV_SF_CLI = "RUNBOOK_SF_CLI"  # the Salesforce CLI to run; empty: `sf` on PATH
LAST_SOAP_LOGIN_VERSION = "64.0"  # Salesforce retires SOAP login() from API 65.0 (and entirely in Summer '27)

_running_local_orgs: dict[Path, LocalOrg] = {}
_local_lock = threading.Lock()
_sessions: dict[tuple[str, str, str], OrgSession] = {}  # one login per kernel, reused by every phase


@dataclass
class OrgSession:
    """An authenticated session with the org; ``sf`` is a simple-salesforce client on it."""

    instance_url: str
    access_token: str = field(repr=False)
    api_version: str
    method: str
    login_url: str
    username: str = ""
    is_local: bool = False
    local_state: Path | None = None
    relogin: Callable[[], OrgSession] | None = field(default=None, repr=False)
    prefetched: dict[str, list[dict]] = field(default_factory=dict, repr=False)  # rest.prefetch's, by SOQL
    _sf: Salesforce | None = field(default=None, repr=False)

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            from simple_salesforce import Salesforce

            self._sf = Salesforce(instance_url=self.instance_url, session_id=self.access_token,
                                  version=self.api_version, session=_http_session())
        return self._sf

    def reauthenticate(self) -> None:
        """Replace an expired access token by logging in again (once per expiry, by the callers)."""
        if self.relogin is None:
            raise OrgConnectionError(self.method, "the access token expired or was revoked",
                                     "get a fresh token into the environment and rerun")
        fresh = self.relogin()
        self.access_token, self.instance_url, self._sf = fresh.access_token, fresh.instance_url, None

    @property
    def local_org(self) -> LocalOrg | None:
        """The running local org behind this session, when this process started it."""
        return _running_local_orgs.get(self.local_state) if self.local_state else None


def _http_session() -> requests.Session:
    return RetryingSession()


def connect(org: str = "local", *, workdir: str | Path = DEFAULT_WORKDIR, api_version: str = DEFAULT_API_VERSION,
            login_url: str = "") -> OrgSession:
    """A session with ``org``, logging in once per process; raises OrgConnectionError naming the method."""
    check_api_version(api_version)
    if not org or not isinstance(org, str):
        raise InputError("org", org, 'use "local", a Salesforce CLI alias or username, "env" or "password"')
    key = (org, str(local_state_dir(workdir)) if org == "local" else "", api_version)
    session = _sessions.get(key)
    if session is None or session.login_url != (login_url or session.login_url):
        session = _sessions[key] = login(org, workdir=workdir, api_version=api_version, login_url=login_url)
    return session


def login(org: str, *, workdir: str | Path, api_version: str, login_url: str = "") -> OrgSession:
    """A fresh login to ``org`` by the method its name selects (see the module docstring)."""
    session = _login(org, workdir=workdir, api_version=api_version, login_url=login_url)
    if _parse_org(org)[0] != "env":
        session.relogin = lambda: _login(org, workdir=workdir, api_version=api_version, login_url=login_url)
    return session


def _login(org: str, *, workdir: str | Path, api_version: str, login_url: str) -> OrgSession:
    method, names = _parse_org(org)
    if method == "local":
        return connect_local(local_state_dir(workdir), api_version=api_version)
    if method == "env":
        return _connect_env(api_version, login_url, *names)
    if method == "password":
        return _connect_password(api_version, login_url, *names)
    return _connect_sf_cli(org, api_version, login_url)


def _parse_org(org: str) -> tuple[str, list[str]]:
    """The method ``org`` selects and the environment variable names it gives ("env:A,B" → ("env", [A, B]))."""
    method, sep, rest = org.partition(":")
    if method not in ("env", "password") or not sep:
        return (org if org in ("local", "env", "password") else "sf", [])
    names = [n.strip() for n in rest.split(",")]
    wanted = 2 if method == "env" else 3
    if not 2 <= len(names) <= wanted or not all(n.isidentifier() for n in names):
        raise InputError("org", org, f'use "{method}:{"TOKEN_VAR,URL_VAR" if method == "env" else "USER_VAR,PASS_VAR"}'
                         f'{"" if method == "env" else "[,SECURITY_TOKEN_VAR]"}" with variable names')
    return method, names


def check_api_version(api_version: str) -> None:
    """Refuse anything but a version like "62.0" (from 50.0), naming the parameter."""
    try:
        ok = float(api_version) >= 50 and api_version.count(".") == 1
    except (TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise InputError("api_version", api_version, 'use a Salesforce API version like "62.0" (no "v")')


def local_state_dir(workdir: str | Path) -> Path:
    """Where the local org keeps its state: $RUNBOOK_LOCAL_ORG_STATE, else <workdir>/localorg."""
    env = os.environ.get(LOCAL_STATE_ENV)
    return Path(env).resolve() if env else resolve_workdir(workdir) / "localorg"


def start_local_org(state_dir: Path, **options) -> LocalOrg:
    """Start (or reuse) the local org for ``state_dir`` in this process and trust its CA."""
    from runbook.localorg import LocalOrg

    state_dir = Path(state_dir).resolve()
    with _local_lock:
        running = _running_local_orgs.get(state_dir)
        if running is None:
            running = LocalOrg(state_dir, **options).start()
            _running_local_orgs[state_dir] = running
            _trust_local_cas()  # under the lock: concurrent starts (fleets) must not drop each other's CA
    return running


def _trust_local_cas() -> None:
    """Point REQUESTS_CA_BUNDLE (the only setting zeep honours) at a bundle trusting every local org here.

    Each local org has its own CA; several may run in one process (tests, fleets), so the process
    trusts the union: certifi's CAs plus each running org's CA, in one file per process.
    """
    import certifi

    pems = [Path(certifi.where()).read_text()]
    pems += [org.ca_bundle.read_text() for org in _running_local_orgs.values()]
    bundle = Path(tempfile.gettempdir()) / f"runbook-ca-bundle-{os.getpid()}.pem"
    write_atomic(bundle, "\n".join(pems), PUBLIC)
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)


def stop_local_orgs() -> None:
    """Stop every local org this process started."""
    with _local_lock:
        for org in _running_local_orgs.values():
            org.stop()
        _running_local_orgs.clear()
        _sessions.clear()


def _find_served_local_org(state_dir: Path) -> dict | None:
    """The org.json of a local org served by another process (runbook run, make lab), if it answers."""
    marker = state_dir / "org.json"
    if not marker.is_file():
        return None
    from runbook.localorg.org import _listening, _process_alive

    try:
        info = json.loads(marker.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # a process check and a TCP connect, not an API call: the org's call log counts only the runbook's work
    return info if _process_alive(pid) and _listening(str(info.get("url", ""))) else None


def connect_local(state_dir: Path, *, api_version: str = DEFAULT_API_VERSION) -> OrgSession:
    """Log in to the local org as its Dev Hub admin, starting it here if nobody serves it."""
    info = _find_served_local_org(state_dir) if state_dir not in _running_local_orgs else None
    if info is None:
        org = start_local_org(state_dir)
        info = {"url": org.url, "ca_bundle": os.environ["REQUESTS_CA_BUNDLE"], "admin_username": org.admin_username}
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = info["ca_bundle"]
    creds = json.loads((state_dir / "admin-credentials.json").read_text())
    session = _soap_login(info["url"], creds["username"], creds["password"], "", api_version,
                          method=f"the local org at {info['url']}")
    session.is_local = True
    session.local_state = state_dir
    session.relogin = lambda: connect_local(state_dir, api_version=api_version)
    return session


def _soap_login(login_url: str, username: str, password: str, token: str, api_version: str,
                method: str) -> OrgSession:
    """A SOAP partner login; the session it returns works at ``api_version`` whatever version logged in."""
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed
    from simple_salesforce.login import SalesforceLogin

    host = login_url.removeprefix("https://").rstrip("/")
    # login() itself is made at 64.0 at most, on every host (the local org retires it from 65.0 as Salesforce
    # does); the session it returns serves every later version
    login_version = min(api_version, LAST_SOAP_LOGIN_VERSION, key=float)
    # simple-salesforce always builds https://{domain}.salesforce.com/...: the fragment cuts the suffix off
    domain = f"{host}/services/Soap/u/{login_version}#" if not host.endswith(".salesforce.com") else \
        host.removesuffix(".salesforce.com")
    http = _http_session()
    statuses: list[int] = []  # every answer's status, retries included (a requests response hook)
    http.hooks["response"].append(lambda response, *args, **kwargs: statuses.append(response.status_code))
    try:
        session_id, instance = SalesforceLogin(username=username, password=password, security_token=token,
                                               domain=domain, sf_version=login_version, session=http)
    except SalesforceAuthenticationFailed as exc:
        raise _login_refusal(exc, method, username, login_url, statuses) from None
    except requests.RequestException as exc:
        slow = f"; {timeout_fix()}" if isinstance(exc, requests.Timeout) else ""
        raise OrgConnectionError(method, f"{without_userinfo(login_url)} did not answer ({no_answer(exc)})",
                                 f"check the URL and the network{slow}") from None
    return OrgSession(instance_url=f"https://{instance}", access_token=session_id, api_version=api_version,
                      method=method, login_url=login_url.rstrip("/"), username=username)


def _login_refusal(exc, method: str, username: str, login_url: str, statuses: list[int]) -> OrgConnectionError:
    """simple-salesforce's refusal of a SOAP login, named as what it is; ``statuses``: each HTTP answer's status.

    A SOAP fault carries Salesforce's code (INVALID_LOGIN: a wrong password, a missing security token, or a
    user locked out after too many failed logins [D: 10 by default, for 15 minutes]). An answer that is no
    SOAP fault (an outage page, a proxy; simple-salesforce then has no code) never checked the credentials;
    a 5xx or 429 was asked for again (``RetryingSession``) before it got here.
    """
    code, said = exc.code, exc.auth_message
    if code == "INVALID_LOGIN":
        return OrgConnectionError(method, f"SOAP login as {username} was refused ({code}: {said})",
                                  "check the username, password and security token; after 10 failed logins "
                                  "Salesforce locks the user out for 15 minutes by default (Setup > Users > "
                                  "Unlock, or wait)")
    if isinstance(code, str) and code:
        return OrgConnectionError(method, f"SOAP login as {username} was refused: {code}: {said}",
                                  "see Troubleshooting in the README for this code")
    status = statuses[-1] if statuses else code
    times = f" {len(statuses)} times" if len(statuses) > 1 and len(set(statuses)) == 1 else ""
    return OrgConnectionError(method, f"the org answered {status or 'no SOAP answer'}{times} to the SOAP login at "
                              f"{without_userinfo(login_url)}, never with a SOAP fault (an outage page or a proxy): "
                              "the username and password were not checked",
                              "check the org is up (status.salesforce.com) and the login URL, then rerun")


def _connect_env(api_version: str, login_url: str, token_var: str = ENV_TOKEN,
                 url_var: str = ENV_INSTANCE_URL) -> OrgSession:
    token, url = os.environ.get(token_var), without_userinfo(os.environ.get(url_var) or "")
    method = f"an access token from ${token_var} and ${url_var}"
    if not token or not url:
        missing = " and ".join(f"${v}" for v, value in ((token_var, token), (url_var, url)) if not value)
        raise OrgConnectionError(method, f"{missing} not set", f"export {token_var} and {url_var}")
    if not url.startswith("https://"):
        raise OrgConnectionError(method, f"${url_var} is not an https:// URL",
                                 "set it to the instance URL, e.g. https://mydomain.my.salesforce.com")
    return OrgSession(instance_url=url.rstrip("/"), access_token=token, api_version=api_version,
                      method=method, login_url=(login_url or url).rstrip("/"))


def _connect_password(api_version: str, login_url: str, user_var: str = ENV_USERNAME, password_var: str = ENV_PASSWORD,
                      token_var: str = ENV_SECURITY_TOKEN) -> OrgSession:
    method = f"username/password from ${user_var} and ${password_var} (SOAP login)"
    username, password = os.environ.get(user_var), os.environ.get(password_var)
    if not username or not password:
        missing = " and ".join(f"${v}" for v, value in ((user_var, username), (password_var, password)) if not value)
        raise OrgConnectionError(method, f"{missing} not set",
                                 f"export {user_var} and {password_var} (and {token_var})")
    url = login_url or os.environ.get(ENV_LOGIN_URL, "https://login.salesforce.com")
    if not url.startswith("https://127.0.0.1"):
        warnings.warn("Salesforce retires SOAP login() from API 65.0 and in Summer '27: prefer a Salesforce CLI "
                      "alias (sf org login web) or an access token", FutureWarning, stacklevel=2)
    return _soap_login(url, username, password, os.environ.get(token_var, ""), api_version, method)


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


def _connect_sf_cli(alias: str, api_version: str, login_url: str) -> OrgSession:
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
                      username=result.get("username", ""))


def _cli_refusal(method: str, payload: dict, alias: str, missing: str) -> OrgConnectionError:
    reason = payload.get("message") or payload.get("name") or missing
    return OrgConnectionError(method, str(reason), f"run `sf org login web --alias {alias}` first (or "
                              "`sf org login jwt`), then check `sf org list`")
