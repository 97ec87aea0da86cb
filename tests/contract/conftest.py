"""The org a contract test states Salesforce's behaviour against: a fresh local org, or a real one.

Like moto's ``@aws_verified``: the tests in this folder are marked ``live_org`` and run against the
emulated Dev Hub by default; with ``RUNBOOK_LIVE_ORG=<sf alias>`` (``make live``) the same tests run
against that org, logged in through the Salesforce CLI's stored auth (``runbook.salesforce.connect``).

They use the runbook's public functions and the wire only, never the local org's internals, so what
passes here passes for the same reasons against Salesforce. On a live org:

- everything a test creates has a throwaway name (``Rbk_Ct_<8 hex>``) and is deleted when the test (or
  the session, for the shared JWT app) ends, pass or fail; only such names are ever deleted;
- nothing costs an allocation (no scratch orgs, no users, no licences);
- no token, key or password is printed: keys stay in pytest's temporary folders.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import free_callback_port

from runbook.apps import KINDS
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.certificate import ensure_certificate
from runbook.phases.connected_app import build_spec, ensure_connected_app
from runbook.phases.jwt_bearer import jwt_login
from runbook.phases.teardown import teardown_app
from runbook.salesforce import OrgSession, connect, connect_local, metadata, rest

LIVE_ORG_ENV = "RUNBOOK_LIVE_ORG"
NAME_PREFIX = "Rbk_Ct_"
CONTACT_EMAIL = "runbook-contract-tests@example.com"
DESCRIPTION = "Throwaway app of the runbook's contract tests, deleted when they end"
PROPAGATION_TIMEOUT = 900  # a new app answers invalid_client_id for 2-10 minutes on a real org


def throwaway_name() -> str:
    """A unique API name that marks a component as the contract tests' own: ``Rbk_Ct_<8 hex>``."""
    return f"{NAME_PREFIX}{secrets.token_hex(4)}"


@dataclass
class Target:
    """The org under test and what a test needs from it; ``cleanup`` runs when the owning fixture ends."""

    session: OrgSession
    login_url: str  # where JWT bearer logins go (the aud follows from it)
    username: str  # the session's user: the org's admin
    live: bool
    description: str
    _cleanups: list[tuple[str, Callable[[], object]]] = field(default_factory=list, repr=False)
    _made: dict[str, list[str]] = field(default_factory=lambda: {"app": [], "permission set": []}, repr=False)

    def throwaway_name(self) -> str:
        return throwaway_name()

    def delete_app_afterwards(self, app_name: str, workdir: Path) -> None:
        """Delete the app (either kind, with its pre-authorizations) when the test ends, pass or fail."""
        _check_throwaway(app_name)
        self._made["app"].append(app_name)
        self._cleanups.append((f"app {app_name}", lambda: teardown_app(self.session, app_name, workdir=workdir,
                                                                       apply=True)))

    def delete_permission_set_afterwards(self, name: str) -> None:
        """Delete the permission set (its assignments first) when the test ends, pass or fail."""
        _check_throwaway(name)
        self._made["permission set"].append(name)
        self._cleanups.append((f"permission set {name}", lambda: _delete_permission_set(self.session, name)))

    def for_one_test(self) -> Target:
        """A view for one test (or fixture): its own deletions, the session's record of what was made."""
        return Target(self.session, self.login_url, self.username, self.live, self.description,
                      _made=self._made)

    def leftovers(self) -> list[str]:
        """What the session made and the org still has (read from the org: one listMetadata, one query)."""
        apps = set(self._made["app"])
        listed = metadata.list_names(self.session, [k.list_type for k in KINDS.values()]) if apps else {}
        left = sorted(f"app {n}" for names in listed.values() for n in names if n in apps)
        sets = self._made["permission set"]
        if sets:
            found = rest.query(self.session, "SELECT Name FROM PermissionSet WHERE Name IN "
                                             f"({', '.join(rest.quote(n) for n in sets)})")
            left += sorted(f"permission set {r['Name']}" for r in found)
        return left

    def cleanup(self) -> None:
        """Run every registered deletion, newest first; a failure does not stop the others."""
        failed = []
        while self._cleanups:
            what, delete = self._cleanups.pop()
            try:
                delete()
            except Exception as exc:  # report them all at the end: a leftover on a live org must be named
                failed.append(f"{what}: {type(exc).__name__}: {exc}")
        if failed:
            raise AssertionError("teardown left throwaway components in the org: " + "; ".join(failed))


def _check_throwaway(name: str) -> None:
    if not name.startswith(NAME_PREFIX):
        raise ValueError(f"contract tests only delete their own throwaway components ({NAME_PREFIX}*), not {name}")


def _delete_permission_set(session: OrgSession, name: str) -> None:
    found = rest.query(session, f"SELECT Id FROM PermissionSet WHERE Name = {rest.quote(name)}")
    for permission_set in found:
        for row in rest.query(session, "SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = "
                                       f"{rest.quote(permission_set['Id'])}"):
            rest.delete(session, "PermissionSetAssignment", row["Id"])
        rest.delete(session, "PermissionSet", permission_set["Id"])


def pytest_report_header(config) -> str:
    alias = os.environ.get(LIVE_ORG_ENV)
    return f"contract tests against: {'the live org ' + repr(alias) if alias else 'a fresh local org'}"


def _session_target(target: Target) -> Iterator[Target]:
    """Yield ``target``; when the session ends, fail if the org still has anything the tests made."""
    yield target
    left = target.leftovers()
    assert not left, f"the contract tests left these in {target.description}: {', '.join(left)}"


@pytest.fixture(scope="session")
def contract_org(tmp_path_factory) -> Iterator[Target]:
    """The session's org: ``$RUNBOOK_LIVE_ORG`` through the CLI's alias, else a fresh local org."""
    alias = os.environ.get(LIVE_ORG_ENV, "").strip()
    if alias:
        session = connect(alias, workdir=tmp_path_factory.mktemp("live"))
        yield from _session_target(Target(session, session.login_url, session.username, True,
                                          f"the live org {alias!r}"))
        return
    from runbook.localorg import LocalOrg  # the local org is only started, never looked into

    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("contract-org")) as org:
        os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
        session = connect_local(org.state_dir)
        yield from _session_target(Target(session, session.login_url, session.username, False,
                                          "a fresh local org"))
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture
def target(contract_org: Target) -> Iterator[Target]:
    """The org under test, for one test: what the test registers for deletion is deleted when it ends."""
    mine = contract_org.for_one_test()
    try:
        yield mine
    finally:
        mine.cleanup()


@dataclass(frozen=True)
class JwtApp:
    """A throwaway app with a certificate, the admin's profile pre-authorized, usable for JWT logins."""

    name: str
    app_kind: str
    consumer_key: str
    key_path: Path
    cert_path: Path
    callback_url: str


def admin_profile(target: Target) -> str:
    """The profile of the session's user (the one the JWT app pre-authorizes)."""
    users = rest.query(target.session, f"SELECT Profile.Name FROM User WHERE Username = {rest.quote(target.username)}")
    return users[0]["Profile"]["Name"]


def new_app(target: Target, workdir: Path, **params):
    """Phase 2 for a throwaway app (deleted when ``target`` ends), with phase 1's certificate in ``workdir``."""
    name = params.pop("app_name", None) or target.throwaway_name()
    target.delete_app_afterwards(name, workdir)  # registered first: a half-made app is deleted too
    ensure_certificate(workdir=workdir, app_name=name)
    params.setdefault("callback_port", free_callback_port())
    spec = build_spec(app_name=name, contact_email=CONTACT_EMAIL, description=DESCRIPTION, workdir=workdir,
                      **params)
    return ensure_connected_app(target.session, spec, workdir=workdir)


@pytest.fixture(scope="session")
def jwt_app(contract_org: Target, tmp_path_factory) -> Iterator[JwtApp]:
    """Phases 1-3 for one throwaway app, waited for until it logs in (a real org takes minutes); deleted at the end."""
    owner = contract_org.for_one_test()
    workdir = tmp_path_factory.mktemp("jwt-app")
    try:
        _plan, app = new_app(owner, workdir)
        access = build_access_spec(app_name=app.full_name, profiles=[admin_profile(owner)], workdir=workdir)
        ensure_access(owner.session, access, workdir=workdir)
        cert = ensure_certificate(workdir=workdir, app_name=app.full_name)
        jwt_login(consumer_key=app.consumer_key, username=owner.username, key_path=Path(cert.key_path),
                  login_url=owner.login_url, propagation_timeout=PROPAGATION_TIMEOUT)
        yield JwtApp(app.full_name, app.app_kind, app.consumer_key, Path(cert.key_path), Path(cert.cert_path),
                     app.callback_url)
    finally:
        owner.cleanup()
