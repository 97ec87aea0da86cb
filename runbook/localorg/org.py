"""``LocalOrg``: one emulated Dev Hub, its state folder, and the server thread that serves it.

The state folder holds ``org.sqlite3`` (everything the org knows, kept across restarts), the CA and
server key/certificate (keys 0600), ``ca-bundle.pem``, ``admin-credentials.json`` (0600, written once
when the org is seeded) and, while the org runs, ``org.json`` saying where it listens, so another
process (a notebook kernel, `runbook run`) can find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runbook.localorg.faults import Fault, FaultPlan, Injection
from runbook.localorg.model import connected_apps, credentials, limits, org_settings, permissions, seed, signup
from runbook.localorg.model.context import CLOCK_OFFSET_SETTING, OrgContext
from runbook.localorg.model.external_client_apps import KEY_IN_RETRIEVE_SETTING, OPT_IN_SETTING
from runbook.localorg.model.scratch import ScratchOrgs
from runbook.localorg.model.store import ApiCall, Store
from runbook.localorg.server import TlsServer
from runbook.localorg.tls import ensure_tls, server_context
from runbook.localorg.urls import make_app
from runbook.work.files import PRIVATE, PUBLIC, make_private_dir, write_atomic

# Settings callers may change while the org runs, with their types.
SETTINGS: dict[str, type] = {
    "allow_connected_apps": bool, "permission_set_read_as": str,
    OPT_IN_SETTING: bool, KEY_IN_RETRIEVE_SETTING: bool,
    org_settings.SECRET_IN_REST_API: bool, CLOCK_OFFSET_SETTING: float,
    limits.DAILY_SETTING: int, limits.ACTIVE_SETTING: int}
# Settings that take one of a few values.
SETTING_CHOICES: dict[str, tuple[str, ...]] = {"permission_set_read_as": connected_apps.PERMISSION_SET_READ_AS}


class LocalOrg:
    """An emulated Salesforce Dev Hub on https://127.0.0.1:<port>, with state in ``state_dir``.

    ``allow_connected_apps=False`` makes the org refuse new ConnectedApps the way orgs without an
    exception do since Spring '26 (External Client Apps still work); it is applied at every start, and
    ``set_setting`` changes it until the next. Sessions (access tokens) last ``session_seconds``. Use as
    a context manager, or call ``start()`` and ``stop()``.

    ``permission_set_read_as`` ("name" or "label") says how a ConnectedApp read names its
    pre-authorized permission sets: which one Salesforce answers is not known, so a caller can be
    tested under both. Applied at every start, like ``allow_connected_apps``.

    ``external_client_apps=False`` makes the org refuse External Client App writes (deploy and CRUD),
    as an org without the "Opt in to External Client Apps" does; ``eca_consumer_key_in_retrieve=False``
    makes readMetadata and retrieve leave out an External Client App's consumer key, as in an org that
    does not show it there (Connect REST is then the way to read it). Both are applied at every start.
    ``eca_client_secret_in_rest_api`` (ExternalClientAppSettings.enableClientSecretInRestApiAccess, off on
    a fresh org) lets Connect REST hand out consumer keys and secrets; it is org state, changed by a
    Settings deploy or ``set_setting``, not at start.

    ``propagation_s`` emulates a real org's delay before a new or changed app works: until that many
    seconds after the app's last save, its OAuth flows answer ``invalid_client_id`` (0, the default:
    at once). The save times are in the state, so any process serving it sees the same delay.

    As a test bench: every call waits ``latency_ms`` first, and ``faults`` (a ``FaultPlan``, see
    ``runbook.localorg.faults``) makes chosen calls fail; ``set_latency`` and ``set_faults`` change both
    while the org runs. Several orgs may run at once, one per state folder and port.

    The org has a clock of its own, this machine's moved by the setting ``clock_offset_s`` (kept in the
    state, so every process serving it agrees): ``advance_clock(3 * 3600)`` makes three hours pass for
    its sessions, codes and refresh tokens at once, so a test of a token's lifetime moves the clock
    instead of sleeping.

    The org is a Dev Hub (``runbook.localorg.api.dev_hub``): a ScratchOrgInfo insert signs up a scratch org,
    which is a ``LocalOrg`` of its own in ``<state_dir>/scratch/<org id>/``, served with this org's CA
    and certificate (``tls_dir``) and seeded by its signup (``seed_with``); ``scratch_orgs`` runs them,
    starts the active ones again at every start and stops them with this org. ``daily_scratch_orgs`` and
    ``active_scratch_orgs`` (a Developer Edition Dev Hub's 6 and 3 by default) are applied at every
    start; ``scratch_signup_seconds`` keeps each signup ``Creating`` that long before it completes.
    """

    def __init__(self, state_dir: Path, port: int = 0, *, allow_connected_apps: bool = True,
                 session_seconds: int = 7200, latency_ms: float = 0,
                 faults: FaultPlan | list[Fault] | None = None, propagation_s: float = 0,
                 permission_set_read_as: str = "name", external_client_apps: bool = True,
                 eca_consumer_key_in_retrieve: bool = True,
                 daily_scratch_orgs: int = limits.DEVELOPER_EDITION_DAILY,
                 active_scratch_orgs: int = limits.DEVELOPER_EDITION_ACTIVE, scratch_signup_seconds: float = 0,
                 tls_dir: Path | None = None, seed_with: Callable[[Store], str] | None = None) -> None:
        self._check_value("permission_set_read_as", permission_set_read_as)
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.port = port  # the bound port once started (port 0 asks for any free one)
        self._requested_port = port
        self.allow_connected_apps = allow_connected_apps
        self.permission_set_read_as = permission_set_read_as
        self.external_client_apps = external_client_apps
        self.eca_consumer_key_in_retrieve = eca_consumer_key_in_retrieve
        self.session_seconds = session_seconds
        self.propagation_s = propagation_s
        self.daily_scratch_orgs, self.active_scratch_orgs = daily_scratch_orgs, active_scratch_orgs
        self.admin_username = seed.ADMIN_USERNAME
        self._tls_dir = Path(tls_dir).resolve() if tls_dir is not None else self.state_dir
        self._seed_with = seed_with
        self.ca_bundle = self._tls_dir / "ca-bundle.pem"
        self.scratch_orgs = ScratchOrgs(self, self._start_scratch_org, signup_seconds=scratch_signup_seconds)
        self._context: OrgContext | None = None
        self.url = ""
        self.org_id = ""
        self._store: Store | None = None
        self._server: TlsServer | None = None
        self._thread: threading.Thread | None = None
        self.injection = Injection(latency_ms)
        self.set_faults(faults)

    def set_latency(self, latency_ms: float) -> None:
        """Make every following call wait ``latency_ms`` milliseconds before it is served."""
        self.injection.latency_ms = float(latency_ms)

    def set_faults(self, faults: FaultPlan | list[Fault] | None) -> FaultPlan:
        """Replace the fault plan (None: no faults); returns the plan in force, whose rules count their hits."""
        plan = faults if isinstance(faults, FaultPlan) else FaultPlan(list(faults or []))
        self.injection.plan = plan
        return plan

    def __repr__(self) -> str:
        return f"LocalOrg({str(self.state_dir)!r}, url={self.url or 'stopped'!r})"

    def __enter__(self) -> LocalOrg:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def store(self) -> Store:
        """The running org's state, for flows that record what the API cannot (e.g. ``record_approval``)."""
        if self._store is None:
            raise RuntimeError("the local org is not started: call start() first")
        return self._store

    @property
    def context(self) -> OrgContext:
        """What the running org's request handlers get (its store, URL, ids, clock)."""
        if self._context is None:
            raise RuntimeError("the local org is not started: call start() first")
        return self._context

    @contextlib.contextmanager
    def _state(self) -> Iterator[Store]:
        """The running org's store, or the state folder's opened just for this (a stopped org)."""
        if self._store is not None:
            yield self._store
            return
        if not (self.state_dir / "org.sqlite3").is_file():
            raise RuntimeError(f"{self.state_dir} holds no local org yet: call start() first")
        with contextlib.closing(Store(self.state_dir / "org.sqlite3")) as store:
            yield store

    def start(self) -> LocalOrg:
        """Serve the org, seeding its state on first use; returns self. A running org stays as it is."""
        if self.running:
            return self
        make_private_dir(self.state_dir, tighten=True)  # 0700 even if it existed: it holds keys and secrets
        self._refuse_if_served_elsewhere()
        store = Store(self.state_dir / "org.sqlite3")
        try:
            self.org_id = self._seeded(store)
            permissions.upgrade(store)
            store.set_setting("allow_connected_apps", self.allow_connected_apps)
            store.set_setting("permission_set_read_as", self.permission_set_read_as)
            store.set_setting(OPT_IN_SETTING, self.external_client_apps)
            store.set_setting(KEY_IN_RETRIEVE_SETTING, self.eca_consumer_key_in_retrieve)
            store.set_setting(limits.DAILY_SETTING, self.daily_scratch_orgs)
            store.set_setting(limits.ACTIVE_SETTING, self.active_scratch_orgs)
            self.admin_username = store.get_setting(seed.ADMIN_SETTING, seed.ADMIN_USERNAME)
            dev_hub = store.get_setting(signup.SCRATCH_SETTING) is None
            if store.get_setting(org_settings.SECRET_IN_REST_API) is None:  # a fresh org: off [D]
                store.set_setting(org_settings.SECRET_IN_REST_API, False)
            tls = ensure_tls(self._tls_dir)
            server = TlsServer(self._requested_port, server_context(tls))
        except BaseException:
            store.close()
            raise
        self.port = server.port
        self.url = f"https://127.0.0.1:{server.port}"
        self._context = OrgContext(store, self.url, self.org_id, self.session_seconds,
                                   propagation_s=self.propagation_s,
                                   scratch_orgs=self.scratch_orgs if dev_hub else None)
        server.app = make_app(self._context, self.injection)
        self._store, self._server = store, server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"localorg:{server.port}", daemon=True)
        self._thread.start()
        write_atomic(self.state_dir / "org.json", json.dumps(
            {"url": self.url, "ca_bundle": str(self.ca_bundle), "admin_username": self.admin_username,
             "org_id": self.org_id, "pid": os.getpid()}, indent=2), PUBLIC)
        if dev_hub:
            self.scratch_orgs.resume()
        return self

    def stop(self) -> None:
        """Stop serving and close the state; the state folder stays for the next start."""
        if self._server is None:
            return
        self.scratch_orgs.stop()
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server.close_connections()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "org.json").unlink()
        if self._store is not None:
            self._store.close()
        self._server = self._thread = self._store = self._context = None

    def _start_scratch_org(self, state_dir: Path, port: int, seed: Callable[[Store], str] | None) -> LocalOrg:
        """One of this Dev Hub's scratch orgs, started: served with the hub's CA and certificate, and sessions as
        long as the hub's."""
        return LocalOrg(state_dir, port, tls_dir=self.state_dir, seed_with=seed,
                        session_seconds=self.session_seconds).start()

    def _refuse_if_served_elsewhere(self) -> None:
        info = served_org(self.state_dir)
        if info is not None and int(info["pid"]) != os.getpid():
            raise RuntimeError(f"{self.state_dir} is already served by process {info['pid']} at {info.get('url')}: "
                               "use that org, or stop it first")

    def _seeded(self, store: Store) -> str:
        """The org id, seeding a fresh state first (the admin's password is written before the commit)."""
        with store.transaction():
            if store.is_seeded():
                return store.get_setting("org_id")
            if self._seed_with is not None:  # a scratch org: its signup seeds it, with no password anywhere
                return self._seed_with(store)
            password = credentials.new_password()
            org_id = store.seed(credentials.hash_password(password), credentials.new_org_secret())
            creds = {"username": seed.ADMIN_USERNAME, "password": password}
            write_atomic(self.state_dir / "admin-credentials.json", json.dumps(creds, indent=2), PRIVATE)
            return org_id

    def call_log(self) -> list[ApiCall]:
        """Every API request served since the state was created, oldest first."""
        with self._state() as store:
            return store.call_log()

    def advance_clock(self, seconds: float) -> float:
        """Move the org's clock forward by ``seconds`` (as if that much time passed); returns the new offset."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"advance_clock takes the seconds to move forward (0 or more), not {seconds!r}")
        with self._state() as store, store.transaction():
            offset = float(store.get_setting(CLOCK_OFFSET_SETTING, 0) or 0) + float(seconds)
            store.set_setting(CLOCK_OFFSET_SETTING, offset)
        return offset

    def clock(self) -> float:
        """The org's time now, POSIX seconds (this machine's plus ``clock_offset_s``)."""
        with self._state() as store:
            return store.clock(CLOCK_OFFSET_SETTING)

    def set_setting(self, name: str, value: Any) -> None:
        """Change a setting of the running org, e.g. ``set_setting("allow_connected_apps", False)``."""
        self._check_value(name, value)
        with self._state() as store:
            store.set_setting(name, value)

    def get_setting(self, name: str) -> Any:
        self._check_setting(name)
        with self._state() as store:
            return store.get_setting(name)

    @staticmethod
    def _check_setting(name: str) -> None:
        if name not in SETTINGS:
            raise ValueError(f"unknown local org setting {name!r}; the settings are: {', '.join(SETTINGS)}")

    @classmethod
    def _check_value(cls, name: str, value: Any) -> None:
        cls._check_setting(name)
        if not isinstance(value, SETTINGS[name]):
            raise ValueError(f"setting {name!r} takes a {SETTINGS[name].__name__}, not {value!r}")
        if value not in SETTING_CHOICES.get(name, (value,)):
            raise ValueError(f"setting {name!r} takes one of {', '.join(SETTING_CHOICES[name])}, not {value!r}")


def served_org(state_dir: Path) -> dict | None:
    """The ``org.json`` of the org a live process serves from ``state_dir`` (this one included), else None.

    A process check and a TCP connect, not an API call: the org's call log counts only what clients asked.
    """
    try:
        info = json.loads((Path(state_dir) / "org.json").read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if _process_alive(pid) and _listening(str(info.get("url", ""))) else None


def _listening(url: str) -> bool:
    """Whether something accepts connections at ``url``'s port (a stale org.json's pid may be reused)."""
    port = url.rsplit(":", 1)[-1]
    if not port.isdigit():
        return False
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve_forever(state_dir: Path, port: int, *, allow_connected_apps: bool = True, latency_ms: float = 0,
                  faults: list[Fault] | None = None, propagation_s: float = 0,
                  external_client_apps: bool = True) -> None:
    """Serve the org in the foreground until Ctrl-C (or SIGTERM), printing how to reach it."""
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None
    org = LocalOrg(state_dir, port, allow_connected_apps=allow_connected_apps, latency_ms=latency_ms,
                   faults=faults, propagation_s=propagation_s, external_client_apps=external_client_apps).start()
    try:
        print(f"Local org:  {org.url}", flush=True)
        print(f"CA bundle:  {org.ca_bundle}   (export REQUESTS_CA_BUNDLE={org.ca_bundle})", flush=True)
        print(f"Admin user: {org.admin_username}   (password in {org.state_dir / 'admin-credentials.json'})",
              flush=True)
        if latency_ms or faults:
            print(f"Injected:   {latency_ms:g} ms per call; faults: "
                  f"{', '.join(f.kind for f in faults or []) or 'none'}", flush=True)
        if not external_client_apps:
            print("External Client Apps: not opted in (deploys and creates of them are refused)", flush=True)
        if propagation_s:
            print(f"Propagation: a new or changed app answers invalid_client_id for {propagation_s:g} s",
                  flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.5):
                pass
    finally:
        org.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
