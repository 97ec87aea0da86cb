"""Fixtures: one local org per test session (per xdist worker), its admin logged in through
simple-salesforce's SOAP login, and a key pair whose certificate goes on the test apps."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from simple_salesforce import Salesforce

from runbook.localorg import LocalOrg

from .support import KeyPair


def soap_login(org: LocalOrg, version: str = "59.0") -> Salesforce:
    """simple-salesforce logged in as the admin, pointed at the org by the '#' domain trick."""
    creds = json.loads((org.state_dir / "admin-credentials.json").read_text())
    host = org.url.removeprefix("https://")
    return Salesforce(username=creds["username"], password=creds["password"], security_token="",
                      domain=f"{host}/services/Soap/u/{version}#", version=version)


@pytest.fixture(scope="session")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOrg]:
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("org")) as running:
        # zeep builds its own requests.Session, which only trusts what REQUESTS_CA_BUNDLE names
        os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca_bundle)
        yield running
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="session")
def sf(org: LocalOrg) -> Salesforce:
    return soap_login(org)


@pytest.fixture(scope="session")
def keys() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="session")
def admin_token(sf: Salesforce) -> str:
    return sf.session_id


@pytest.fixture
def fresh_org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalOrg]:
    """A separate org with a clean state, trusted by zeep and simple-salesforce for this test."""
    with LocalOrg(tmp_path / "org") as running:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(running.ca_bundle))
        yield running
