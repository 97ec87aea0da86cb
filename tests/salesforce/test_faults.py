"""Injected latency and faults in the local org, met by the runbook's REST and Metadata clients."""

from __future__ import annotations

import time

import pytest

import runbook.salesforce.retry
import runbook.salesforce.session
from runbook.errors import SalesforceError
from runbook.localorg import Fault, FaultPlan
from runbook.salesforce import connect_local, metadata, rest, start_local_org
from runbook.salesforce.retry import RetryingSession, RetryPolicy


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    return start_local_org(tmp_path_factory.mktemp("faults") / "localorg")


@pytest.fixture
def session(org, monkeypatch):
    """A fresh admin session whose retries wait milliseconds, not seconds."""
    monkeypatch.setattr(runbook.salesforce.session, "RetryingSession",
                        lambda: RetryingSession(RetryPolicy(attempts=4, base=0.01)))
    org.set_faults(None)
    org.set_latency(0)
    yield connect_local(org.state_dir)
    org.set_faults(None)
    org.set_latency(0)


def _since(org, before: int) -> list[str]:
    return [f"{c.operation}:{c.status}" for c in org.call_log()[before:]]


def test_reads_are_retried_after_server_errors_and_rate_limits(org, session):
    plan = org.set_faults([Fault("server_error", match="/query", times=2), Fault("rate_limit", match="/query")])
    before = len(org.call_log())

    assert rest.query(session, "SELECT Id FROM Profile")

    assert _since(org, before) == ["fault.server_error:503", "fault.server_error:503", "fault.rate_limit:403",
                                   "rest.query:200"]
    assert [f.hits for f in plan.faults] == [2, 1]


def test_an_expired_session_is_renewed_once_for_rest(org, session):
    org.set_faults([Fault("expired_session", match="/query")])
    before = len(org.call_log())
    old_token = session.access_token

    assert rest.query(session, "SELECT Id FROM Profile")

    calls = _since(org, before)
    assert calls[0] == "fault.expired_session:401" and calls[-1] == "rest.query:200"
    assert sum(c.startswith("soap.login") for c in calls) == 1
    assert session.access_token != old_token


def test_a_session_that_stays_expired_fails_after_one_renewal(org, session):
    org.set_faults([Fault("expired_session", match="/query", times=0)])
    before = len(org.call_log())

    with pytest.raises(SalesforceError, match="INVALID_SESSION_ID"):
        rest.query(session, "SELECT Id FROM Profile")

    calls = _since(org, before)
    assert calls.count("fault.expired_session:401") == 2
    assert sum(c.startswith("soap.login") for c in calls) == 1


def test_an_expired_session_is_renewed_once_for_the_metadata_api(org, session):
    org.set_faults([Fault("expired_session", match="readMetadata")])
    before = len(org.call_log())

    assert metadata.read(session, "ConnectedApp", "No_Such_App") is None

    calls = _since(org, before)
    assert calls[0] == "fault.expired_session:500"
    assert sum(c.startswith("soap.login") for c in calls) == 1
    assert calls[-1].endswith(":200")


def test_a_write_whose_answer_was_lost_is_not_sent_again(org, session):
    org.set_faults([Fault("server_error", match=r"POST .*/sobjects/PermissionSet", after=True, times=0)])
    before = len(org.call_log())

    with pytest.raises(SalesforceError):
        rest.create(session, "PermissionSet", {"Name": "Lost_Answer", "Label": "Lost Answer"})

    writes = [c for c in org.call_log()[before:] if c.is_write]
    assert len(writes) == 1 and writes[0].status == 503
    org.set_faults(None)
    assert len(rest.query(session, "SELECT Id FROM PermissionSet WHERE Name = 'Lost_Answer'")) == 1


def test_a_write_refused_by_an_outage_is_not_retried(org, session):
    org.set_faults([Fault("server_error", match=r"POST .*/sobjects/PermissionSet", times=0)])
    before = len(org.call_log())

    with pytest.raises(SalesforceError):
        rest.create(session, "PermissionSet", {"Name": "Never_Made", "Label": "Never Made"})

    assert _since(org, before) == ["fault.server_error:503"]


def test_a_read_that_times_out_is_retried(org, session, monkeypatch):
    monkeypatch.setattr(runbook.salesforce.retry, "HTTP_TIMEOUT", 0.5)
    org.set_faults([Fault("timeout", match="/query", seconds=1.0)])

    assert rest.query(session, "SELECT Id FROM Profile")

    assert org.set_faults(None).faults == []


def test_latency_is_added_to_every_call(org, session):
    org.set_latency(150)
    started = time.perf_counter()
    rest.query(session, "SELECT Id FROM Profile")
    assert time.perf_counter() - started >= 0.15


def test_fault_rules_parse_the_command_line_syntax():
    fault = Fault.parse("rate_limit:3:/query")
    assert (fault.kind, fault.times, fault.match) == ("rate_limit", 3, "/query")
    assert Fault.parse("server_error").times == 1
    with pytest.raises(ValueError, match="the kinds are"):
        Fault.parse("meltdown")
    assert FaultPlan().take("GET", "/x", b"") is None
