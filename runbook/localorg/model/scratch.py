"""A Dev Hub's scratch orgs: each one a ``LocalOrg`` of its own, run by the Dev Hub's ``ScratchOrgs``.

A ScratchOrgInfo insert (``request``) is answered at once with Status ``New``; a worker thread then
runs the signup (``signup``): ``Creating``, the optional ``signup_seconds`` wait, and either ``Error``
with its ErrorCode or a new org, started, with ``Active``, the new org's fields on the record
(``ScratchOrg``, ``SignupUsername``, ``LoginUrl``, ``SignupInstance``, ``AuthCode``, ``ExpirationDate``) and
an ActiveScratchOrg row. The CLI polls every second (wire reference §1.5), so it sees ``Active`` at its
first or second poll.

Each scratch org keeps its state in ``<hub state>/scratch/<18-character org id>/`` (0700, like every
state folder) and listens on 127.0.0.1 at a port of its own, with the Dev Hub's CA and server
certificate (it names 127.0.0.1, whatever the port): a client that trusts the hub (NODE_EXTRA_CA_CERTS,
REQUESTS_CA_BUNDLE) trusts its scratch orgs. It starts when its signup completes, and again, at the
port of its ``LoginUrl`` (which the CLI stored), whenever its Dev Hub starts; a signup cut short by a
stop is run again then. It stops, and its state folder goes, when its ActiveScratchOrg or ScratchOrgInfo
is deleted ([D] "Deleting the request (ScratchOrgInfo) also deletes the active scratch org") or it
expires: [D] "Salesforce deletes scratch orgs and their associated ActiveScratchOrg records from your
Dev Hub org when a scratch org expires"; [U] the ScratchOrgInfo then says ``Deleted``, and an org
expires once its ExpirationDate has passed, checked whenever the hub starts or takes a scratch org call.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from runbook.localorg.model import ids, signup, web_logins
from runbook.localorg.model.context import Session
from runbook.localorg.model.store import Store

if TYPE_CHECKING:
    from runbook.localorg.org import LocalOrg

log = logging.getLogger(__name__)

# Starts a scratch org of the hub: its state folder, its port (0: any free one), and for a new org the seed its
# signup made (None: the folder holds the org already). The hub's ``LocalOrg`` passes its own, so this module
# never builds a server.
StartOrg = Callable[[Path, int, Callable[[Store], str] | None], "LocalOrg"]

INFO, ACTIVE = "ScratchOrgInfo", "ActiveScratchOrg"
SIGNUP_ERROR = "C-9999"  # [V] "A fatal signup error occurred": what a signup the local org could not run ends with


class ScratchOrgs:
    """The scratch orgs of one Dev Hub ``hub``: their signups, the ``LocalOrg`` of each, their deletion."""

    def __init__(self, hub: LocalOrg, start_org: StartOrg, *, signup_seconds: float = 0) -> None:
        self._hub = hub
        self._start = start_org
        self.signup_seconds = signup_seconds  # how long a signup stays Creating before it completes
        self._orgs: dict[str, LocalOrg] = {}  # running scratch orgs by their 18-character org id
        self._workers: set[threading.Thread] = set()
        self._lock = threading.RLock()
        self._stopping = threading.Event()

    @property
    def folder(self) -> Path:
        return self._hub.state_dir / "scratch"

    @property
    def _store(self) -> Store:
        return self._hub.store

    def running(self) -> dict[str, LocalOrg]:
        """The scratch orgs serving now, by their 18-character org id."""
        with self._lock:
            return dict(self._orgs)

    def wait_for_signups(self, timeout: float = 30) -> None:
        """Return once every signup under way has completed (or ``timeout`` seconds have passed)."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout)

    # --- requests from the hub's API ------------------------------------------------------------------

    def request(self, session: Session, data: dict[str, Any]) -> str:
        """Insert a ScratchOrgInfo from REST JSON and start its signup; its Id. Raises RecordError."""
        self.expire_due()
        store = self._store
        with store.transaction():  # the allocation check and the insert together: concurrent inserts queue
            values = signup.checked_request(store, session, data)
            values["Name"] = signup.next_name(store, INFO)
            info_id = store.insert(INFO, values)
        self._start_signup(info_id)
        return info_id

    def delete(self, info_id: str, *, by: dict[str, Any] | None, remove_info: bool) -> None:
        """Delete a scratch org: its ActiveScratchOrg, and its ScratchOrgInfo too or marked ``Deleted``."""
        store = self._store
        with store.transaction():
            record = store.get(INFO, info_id)
            store.delete(ACTIVE, ScratchOrgInfoId=info_id)
            if remove_info:
                store.delete(INFO, Id=info_id)
            elif record is not None and record["Status"] == "Active":
                store.update(INFO, info_id, {"Status": "Deleted", "DeletedDate": _today(store),
                                             "DeletedBy": by["Id"][:15] if by else None,
                                             "LastModifiedById": by["Id"] if by else record["LastModifiedById"]})
        if record is not None and record["ScratchOrg"]:
            self._discard(ids.to_18(record["ScratchOrg"]))

    def expire_due(self) -> None:
        """Delete every scratch org whose ExpirationDate has passed."""
        today = _today(self._store)
        for row in self._store.records(ACTIVE):
            if row["ExpirationDate"] and row["ExpirationDate"] < today:
                self.delete(row["ScratchOrgInfoId"], by=None, remove_info=False)

    # --- lifecycle, with the hub's --------------------------------------------------------------------

    def resume(self) -> None:
        """At the hub's start: expire what is due, start the active scratch orgs again, rerun cut-short signups."""
        self._stopping.clear()
        self.expire_due()
        records = self._store.records(INFO)
        active = {ids.to_18(r["ScratchOrg"]) for r in records if r["Status"] == "Active" and r["ScratchOrg"]}
        self._remove_orphans(active)
        for record in records:
            if record["Status"] in ("New", "Creating"):
                self._start_signup(record["Id"])
            elif record["Status"] == "Active" and record["ScratchOrg"]:
                self._restart(record)

    def stop(self) -> None:
        """At the hub's stop: let signups under way finish or pause, stop every scratch org (their state stays)."""
        self._stopping.set()
        self.wait_for_signups(timeout=10)
        with self._lock:
            orgs, self._orgs = list(self._orgs.values()), {}
        for org in orgs:
            org.stop()

    # --- the signup worker ----------------------------------------------------------------------------

    def _start_signup(self, info_id: str) -> None:
        worker = threading.Thread(target=self._sign_up, args=(info_id,), name=f"signup:{info_id}", daemon=True)
        with self._lock:
            self._workers.add(worker)
        worker.start()

    def _sign_up(self, info_id: str) -> None:
        try:
            self._run_signup(info_id)
        except Exception:
            if self._stopping.is_set():  # the hub stopped under it: the signup runs again at the next start
                return
            log.exception("local org: the signup of %s failed", info_id)
            with contextlib.suppress(Exception):
                self._store.update(INFO, info_id, {"Status": "Error", "ErrorCode": SIGNUP_ERROR})
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _run_signup(self, info_id: str) -> None:
        store = self._store
        if store.get(INFO, info_id) is None:
            return
        store.update(INFO, info_id, {"Status": "Creating"})
        if self._stopping.wait(self.signup_seconds):
            return
        record = store.get(INFO, info_id)
        if record is None:  # deleted while it was being created
            return
        code = signup.failure(store, record)
        if code is not None:
            store.update(INFO, info_id, {"Status": "Error", "ErrorCode": code})
            return
        new = signup.plan(store, record, self._hub.org_id)
        org = self._start_org(new.org_id, 0, seed=partial(signup.seed_scratch_org, new))
        if self._stopping.is_set():  # the hub stopped meanwhile: this signup runs again at its next start
            self._discard(new.org_id)
            return
        auth_code = self._auth_code(org, new) if new.needs_auth_code else None
        with store.transaction():
            if store.get(INFO, info_id) is None:
                deleted = True
            else:
                deleted = False
                store.update(INFO, info_id, {
                    "Status": "Active", "ScratchOrg": new.org_id[:15], "SignupUsername": new.username,
                    "LoginUrl": org.url, "SignupInstance": signup.SIGNUP_INSTANCE, "AuthCode": auth_code,
                    "ExpirationDate": new.expiration_date})
                store.insert(ACTIVE, signup.active_record(store, store.get(INFO, info_id), new))
        if deleted:
            self._discard(new.org_id)

    @staticmethod
    def _auth_code(org: LocalOrg, new: signup.NewScratchOrg) -> str:
        """A one-time code for the admin and the signup's app: the record's AuthCode."""
        admin = org.store.find("User", Username=new.username)[0]
        return web_logins.issue_code(org.context, client_id=new.consumer_key, redirect_uri=new.callback_url,
                                     user_id=admin["Id"])

    # --- the scratch orgs' LocalOrgs ------------------------------------------------------------------

    def _start_org(self, org_id: str, port: int, *, seed: Callable[[Store], str] | None = None) -> LocalOrg:
        org = self._start(self.folder / org_id, port, seed)
        with self._lock:
            self._orgs[org_id] = org
        return org

    def _restart(self, record: dict[str, Any]) -> None:
        org_id = ids.to_18(record["ScratchOrg"])
        if org_id in self.running():
            return
        if not (self.folder / org_id / "org.sqlite3").is_file():
            log.warning("local org: scratch org %s has no state in %s; it stays stopped", org_id, self.folder)
            return
        try:
            self._start_org(org_id, urlsplit(record["LoginUrl"] or "").port or 0)
        except (OSError, RuntimeError) as exc:  # its port is taken, or another process serves it
            log.warning("local org: scratch org %s could not start again at %s: %s", org_id, record["LoginUrl"], exc)

    def _discard(self, org_id: str) -> None:
        """Stop a scratch org and remove its state: nothing of a deleted org stays."""
        with self._lock:
            org = self._orgs.pop(org_id, None)
        if org is not None:
            org.stop()
        shutil.rmtree(self.folder / org_id, ignore_errors=True)

    def _remove_orphans(self, active: set[str]) -> None:
        """Remove state folders no active scratch org names (left by a signup cut short mid-start)."""
        if not self.folder.is_dir():
            return
        for folder in self.folder.iterdir():
            if folder.is_dir() and folder.name not in active:
                shutil.rmtree(folder, ignore_errors=True)


def _today(store: Store) -> str:
    return signup.org_now(store).date().isoformat()
