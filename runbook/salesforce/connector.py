"""Connecting to the Dev Hub org, the ways Salesforce people already connect; the ``Connector`` that owns it.

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

A ``Connector`` holds what a process shares between phases: one login per org, the local orgs it serves, and
the CA bundle that trusts them (certifi's CAs plus each local org's own CA), which every session it hands out
carries (``OrgSession.verify``, and so each HTTP call). Nothing goes through the process's environment, so
several orgs can run in threads at once (fleets, tests). The CLI, the batch and a kernel use the process's one
connector through the functions below; a test may build its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.errors import InputError
from runbook.salesforce.retry import TrustingSession
from runbook.salesforce.session import (
    DEFAULT_API_VERSION,
    OrgSession,
    check_api_version,
    connect_env,
    connect_password,
    soap_login,
)
from runbook.salesforce.sf_cli import connect_sf_cli
from runbook.work.files import PUBLIC, make_private_dir, write_atomic
from runbook.work.workdir import DEFAULT_WORKDIR, resolve_workdir

if TYPE_CHECKING:
    import requests

    from runbook.localorg import LocalOrg

LOCAL_STATE_ENV = "RUNBOOK_LOCAL_ORG_STATE"  # read, never written: the lab and the batch set it for their kernels


class Connector:
    """Logins (one per org, local state and API version), local orgs served here, and the CA bundle for both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str, str], OrgSession] = {}
        self._local_orgs: dict[Path, LocalOrg] = {}
        self._served_cas: dict[Path, str] = {}  # CA bundles of local orgs other processes serve, by state folder
        self._bundle: Path | None = None
        self._env_bundle = ""  # the $REQUESTS_CA_BUNDLE the bundle took in
        self.prompted: dict[str, str] = {}  # credentials a prompt gave (org "password"), by variable name

    @property
    def verify(self) -> str | bool:
        """What HTTPS calls verify with: the bundle trusting every local org known here, or the default CAs.

        The bundle also takes in the file ``$REQUESTS_CA_BUNDLE`` names (a company proxy's CA, or the org a
        parent process serves), read again when the variable changes: the user's own trust is kept, not replaced.
        """
        if self._bundle is not None and os.environ.get("REQUESTS_CA_BUNDLE", "") != self._env_bundle:
            with self._lock:
                self._write_bundle()
        return str(self._bundle) if self._bundle else True

    def http(self) -> requests.Session:
        """An HTTP session trusting what this connector trusts, for calls no ``OrgSession`` makes (a JWT login)."""
        http = TrustingSession()
        http.verify = self.verify
        return http

    def connect(self, org: str = "local", *, workdir: str | Path = DEFAULT_WORKDIR,
                api_version: str = DEFAULT_API_VERSION, login_url: str = "") -> OrgSession:
        """A session with ``org``, logging in once; raises OrgConnectionError naming the method."""
        check_api_version(api_version)
        if not org or not isinstance(org, str):
            raise InputError("org", org, 'use "local", a Salesforce CLI alias or username, "env" or "password"')
        key = (org, str(local_state_dir(workdir)) if org == "local" else "", api_version)
        session = self._sessions.get(key)
        if session is None or session.login_url != (login_url or session.login_url):
            session = self._sessions[key] = self.login(org, workdir=workdir, api_version=api_version,
                                                       login_url=login_url)
        return session

    def login(self, org: str, *, workdir: str | Path, api_version: str, login_url: str = "") -> OrgSession:
        """A fresh login to ``org`` by the method its name selects (see the module docstring)."""
        session = self._login(org, workdir=workdir, api_version=api_version, login_url=login_url)
        if parse_org(org)[0] != "env":
            session.relogin = lambda: self._login(org, workdir=workdir, api_version=api_version, login_url=login_url)
        return session

    def _login(self, org: str, *, workdir: str | Path, api_version: str, login_url: str) -> OrgSession:
        method, names = parse_org(org)
        if method == "local":
            return self.connect_local(local_state_dir(workdir), api_version=api_version)
        if method == "env":
            session = connect_env(api_version, login_url, *names)
        elif method == "password":
            session = connect_password(api_version, login_url, *names, verify=self.verify, prompted=self.prompted)
        else:
            session = connect_sf_cli(org, api_version, login_url, verify=self.verify)
        session.verify = self.verify
        return session

    def start_local_org(self, state_dir: Path, **options) -> LocalOrg:
        """Start (or reuse) the local org for ``state_dir`` in this process, and trust its CA."""
        from runbook.localorg import LocalOrg

        state_dir = Path(state_dir).resolve()
        with self._lock:
            running = self._local_orgs.get(state_dir)
            if running is None:
                running = self._local_orgs[state_dir] = LocalOrg(state_dir, **options).start()
                self._write_bundle()  # under the lock: concurrent starts (fleets) must not drop each other's CA
        return running

    def connect_local(self, state_dir: Path, *, api_version: str = DEFAULT_API_VERSION) -> OrgSession:
        """Log in to the local org as its Dev Hub admin, starting it here if no other process serves it."""
        state_dir = Path(state_dir).resolve()
        info = find_served_local_org(state_dir) if state_dir not in self._local_orgs else None
        if info is None:
            org = self.start_local_org(state_dir)
            url = org.url
        else:
            url = info["url"]
            with self._lock:
                if self._served_cas.get(state_dir) != info["ca_bundle"]:
                    self._served_cas[state_dir] = info["ca_bundle"]
                    self._write_bundle()
        creds = json.loads((state_dir / "admin-credentials.json").read_text())
        session = soap_login(url, creds["username"], creds["password"], "", api_version,
                             method=f"the local org at {url}", verify=self.verify)
        session.is_local = True
        session.local_state = state_dir
        session.local_org = self._local_orgs.get(state_dir)
        session.relogin = lambda: self.connect_local(state_dir, api_version=api_version)
        return session

    def stop(self) -> None:
        """Stop every local org this connector started, and forget its logins."""
        with self._lock:
            for org in self._local_orgs.values():
                org.stop()
            self._local_orgs.clear()
            self._served_cas.clear()
            self._sessions.clear()

    def _write_bundle(self) -> None:
        """One file trusting certifi's CAs and every local org known here (each has its own CA)."""
        import certifi

        self._env_bundle = os.environ.get("REQUESTS_CA_BUNDLE", "")
        # the base is what requests would use: the environment's bundle in place of certifi's, when it names one
        named = self._env_bundle and Path(self._env_bundle).is_file() and self._env_bundle != str(self._bundle)
        pems = [Path(self._env_bundle if named else certifi.where()).read_text()]
        pems += [org.ca_bundle.read_text() for org in self._local_orgs.values()]
        pems += [Path(bundle).read_text() for bundle in self._served_cas.values()
                 if not (named and Path(bundle).resolve() == Path(self._env_bundle).resolve())]
        text = "\n".join(pems)
        # named by its content: a session keeps verifying with the bundle it was given whatever starts or stops
        # later, and the kernels of one run share one file (and one TLS context each)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        # in a folder only this user can write (0700, checked), so no one else can plant a bundle under its name
        folder = make_private_dir(Path(tempfile.gettempdir()) / f"runbook-{os.getuid()}", tighten=True)
        bundle = folder / f"ca-bundle-{digest}.pem"
        if not (bundle.is_file() and bundle.read_text() == text):
            write_atomic(bundle, text, PUBLIC)
        self._bundle = bundle


def parse_org(org: str) -> tuple[str, list[str]]:
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


def local_state_dir(workdir: str | Path) -> Path:
    """Where the local org keeps its state: $RUNBOOK_LOCAL_ORG_STATE, else <workdir>/localorg."""
    env = os.environ.get(LOCAL_STATE_ENV)
    return Path(env).resolve() if env else resolve_workdir(workdir) / "localorg"


def find_served_local_org(state_dir: Path) -> dict | None:
    """The org.json of a local org served by another process (runbook run, make lab), if it answers."""
    from runbook.localorg import served_org

    return served_org(state_dir)


_PROCESS = Connector()  # the process's connector: the phases of one kernel, the CLI, the batch's parent


def process_connector() -> Connector:
    """This process's connector (a kernel's phases share its logins; a fleet's runs share its local orgs)."""
    return _PROCESS


def connect(org: str = "local", *, workdir: str | Path = DEFAULT_WORKDIR, api_version: str = DEFAULT_API_VERSION,
            login_url: str = "") -> OrgSession:
    """``Connector.connect`` on this process's connector: what the notebooks call."""
    return _PROCESS.connect(org, workdir=workdir, api_version=api_version, login_url=login_url)


def login(org: str, *, workdir: str | Path, api_version: str, login_url: str = "") -> OrgSession:
    return _PROCESS.login(org, workdir=workdir, api_version=api_version, login_url=login_url)


def connect_local(state_dir: Path, *, api_version: str = DEFAULT_API_VERSION) -> OrgSession:
    return _PROCESS.connect_local(state_dir, api_version=api_version)


def start_local_org(state_dir: Path, **options) -> LocalOrg:
    return _PROCESS.start_local_org(state_dir, **options)


def stop_local_orgs() -> None:
    _PROCESS.stop()
