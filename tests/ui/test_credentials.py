"""The password prompt keeps what it is given in the process's connector, never in the environment."""

from __future__ import annotations

import json
import os

import pytest

from runbook.salesforce import ENV_PASSWORD, ENV_SECURITY_TOKEN, ENV_USERNAME, process_connector, start_local_org
from runbook.salesforce.connector import Connector
from runbook.ui import ask_credentials


@pytest.fixture
def connector(monkeypatch):
    """A connector of this test's own, as the process's."""
    fresh = Connector()
    monkeypatch.setattr("runbook.salesforce.connector._PROCESS", fresh)
    for name in (ENV_USERNAME, ENV_PASSWORD, ENV_SECURITY_TOKEN):
        monkeypatch.delenv(name, raising=False)
    yield fresh
    fresh.stop()


def test_prompted_credentials_log_in_and_never_reach_the_environment(connector, tmp_path, monkeypatch, capsys):
    org = start_local_org(tmp_path / "localorg")
    admin = json.loads((org.state_dir / "admin-credentials.json").read_text())
    answers = iter([admin["password"], ""])
    monkeypatch.setattr("builtins.input", lambda _prompt: admin["username"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(answers))

    ask_credentials("password")

    assert not {ENV_USERNAME, ENV_PASSWORD, ENV_SECURITY_TOKEN} & set(os.environ)
    out = capsys.readouterr().out
    assert admin["password"] not in out and "kept in this kernel's memory only" in out
    session = process_connector().connect("password", login_url=org.url)
    assert session.username == admin["username"] and session.access_token
