"""Issue 17 rows 3 and 4: one timeout policy for SOAP and REST, and each fault named as what it is.

Against a local org over HTTPS with faults injected: a 75 s hold is given up at $RUNBOOK_HTTP_TIMEOUT (reads
asked again, writes sent once), the rate limit on createMetadata is REQUEST_LIMIT_EXCEEDED, a persistent 503
on SOAP login says the org answered 503 (never "check the username"), and the JWT exchange is retried on
5xx and the rate limit like a read, then named as what it is.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from conftest import free_callback_port

import runbook.salesforce.session
from runbook.errors import InputError, LoginError, OrgConnectionError, SalesforceError
from runbook.localorg import ADMIN_USERNAME, Fault
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.certificate import ensure_certificate
from runbook.phases.connected_app import build_spec, ensure_connected_app
from runbook.phases.jwt_bearer import jwt_login
from runbook.salesforce import connect_local, metadata, metadata_files, rest, start_local_org
from runbook.salesforce.retry import RetryingSession, RetryPolicy, Timeout, http_timeout, no_answer

HELD = 75.0  # seconds the org holds an answer: longer than any timeout here
LOGIN = r"<(\w+:)?login\b"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    return start_local_org(tmp_path_factory.mktemp("timeouts") / "localorg")


@pytest.fixture
def session(org, monkeypatch):
    """A fresh admin session whose retries wait milliseconds, with a 1 s timeout for every call."""
    monkeypatch.setattr(runbook.salesforce.session, "RetryingSession",
                        lambda: RetryingSession(RetryPolicy(attempts=4, base=0.01)))
    monkeypatch.setenv("RUNBOOK_HTTP_TIMEOUT", "1")
    org.set_faults(None)
    yield connect_local(org.state_dir)
    org.set_faults(None)


@pytest.fixture(scope="module")
def app(org, tmp_path_factory):
    """A JWT-ready connected app (phases 1–3 called directly): its consumer key and the key's path."""
    workdir = tmp_path_factory.mktemp("jwt")
    session = connect_local(org.state_dir)
    cert = ensure_certificate(workdir=workdir)
    spec = build_spec(app_name="Timeout_Jwt", contact_email="admin@example.com", callback_port=free_callback_port(),
                      workdir=workdir)
    _plan, state = ensure_connected_app(session, spec, workdir=workdir)
    ensure_access(session, build_access_spec(app_name="Timeout_Jwt", workdir=workdir), workdir=workdir)
    return state.consumer_key, Path(cert.key_path)


def _timed(fn):
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return time.monotonic() - started, exc
    raise AssertionError("the call succeeded")


# --- row 3: the timeout policy -------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("", Timeout(10, 30)), ("60", Timeout(10, 60)), ("5,60", Timeout(5, 60)), ("2", Timeout(2, 2)),
    (" 0.5 ", Timeout(0.5, 0.5))])
def test_the_timeout_comes_from_runbook_http_timeout(monkeypatch, value, expected):
    monkeypatch.setenv("RUNBOOK_HTTP_TIMEOUT", value)
    assert http_timeout() == expected


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1,2,3", "7200"])
def test_a_timeout_that_is_no_positive_number_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("RUNBOOK_HTTP_TIMEOUT", value)
    with pytest.raises(InputError, match=r"RUNBOOK_HTTP_TIMEOUT=.* is not valid.*at most 3600"):
        http_timeout()


def test_a_metadata_read_held_75_s_is_asked_again_and_given_up_at_the_timeout(org, session):
    """Before: zeep's own 30 s, four times, whatever the setting: 120.7 s. After: 4 × 1 s."""
    plan = org.set_faults([Fault("timeout", match="readMetadata", seconds=HELD, times=0)])

    elapsed, error = _timed(lambda: metadata.read(session, "ConnectedApp", "Held_App"))

    assert 4 <= elapsed < 8, elapsed
    assert isinstance(error, SalesforceError) and error.code == "NO_ANSWER"
    assert "no answer within 1 s, asked 4 times" in str(error)
    assert "raise $RUNBOOK_HTTP_TIMEOUT (seconds to wait for an answer; now 1)" in str(error)
    assert plan.faults[0].hits == 4


def test_a_metadata_read_held_once_succeeds_on_the_second_try(org, session):
    org.set_faults([Fault("timeout", match="readMetadata", seconds=HELD)])
    started = time.monotonic()
    assert metadata.read(session, "ConnectedApp", "Held_Once") is None
    assert time.monotonic() - started < 3


def test_a_create_held_75_s_is_sent_once_and_given_up_at_the_timeout(org, session):
    """Before: 30.1 s whatever the setting. After: 1 s, and the write is never sent again."""
    plan = org.set_faults([Fault("timeout", match="createMetadata", seconds=HELD, times=0)])

    elapsed, error = _timed(lambda: metadata.create(session, "PermissionSet",
                                                    {"fullName": "Held_Create", "label": "Held Create"}))

    assert 1 <= elapsed < 3, elapsed
    assert isinstance(error, SalesforceError) and error.code == "NO_ANSWER"
    assert "no answer within 1 s" in str(error) and "asked" not in str(error)
    assert plan.faults[0].hits == 1


def test_a_soap_login_held_75_s_is_given_up_at_the_timeout(org, session):
    org.set_faults([Fault("timeout", match=LOGIN, seconds=HELD, times=0)])

    elapsed, error = _timed(lambda: connect_local(org.state_dir))

    assert 4 <= elapsed < 8, elapsed
    assert isinstance(error, OrgConnectionError)
    assert "did not answer (no answer within 1 s, asked 4 times)" in str(error)
    assert "$RUNBOOK_HTTP_TIMEOUT" in str(error)


def test_a_retrieve_held_75_s_is_asked_again(org, session):
    """Starting a retrieve is a read (simple-salesforce's file-based call); checkRetrieveStatus is not asked
    again, since the org hands a finished retrieve's zip out once."""
    plan = org.set_faults([Fault("timeout", match=r"<(\w+:)?retrieve\b", seconds=HELD)])
    started = time.monotonic()

    found = metadata_files.retrieve(session, {"ConnectedApp": ["*"]}, {"ConnectedApp": ("connectedApps",
                                                                                        "connectedApp")})

    assert isinstance(found, dict) and plan.faults[0].hits == 1
    assert time.monotonic() - started < 4


def test_a_retrieve_status_held_75_s_is_given_up_once_at_the_timeout(org, session):
    plan = org.set_faults([Fault("timeout", match="checkRetrieveStatus", seconds=HELD, times=0)])
    elapsed, error = _timed(lambda: metadata_files.retrieve(session, {"ConnectedApp": ["*"]}, {
        "ConnectedApp": ("connectedApps", "connectedApp")}))
    assert 1 <= elapsed < 3 and plan.faults[0].hits == 1, elapsed
    assert isinstance(error, SalesforceError) and error.code == "NO_ANSWER" and "no answer within 1 s" in str(error)


def test_a_deploy_held_75_s_is_sent_once_and_its_status_read_has_the_timeout(org, session):
    plan = org.set_faults([Fault("timeout", match=r"<(\w+:)?deploy\b", seconds=HELD, times=0)])
    elapsed, error = _timed(lambda: metadata_files.destroy(session, [("ConnectedApp", "Held_Deploy")]))
    assert 1 <= elapsed < 3 and plan.faults[0].hits == 1, elapsed
    assert isinstance(error, SalesforceError) and error.code == "NO_ANSWER" and "no answer within 1 s" in str(error)

    plan = org.set_faults([Fault("timeout", match="checkDeployStatus", seconds=HELD, times=0)])
    elapsed, error = _timed(lambda: metadata_files.check_deploy_status(session, "0AfLC0000000001"))
    assert 4 <= elapsed < 8 and plan.faults[0].hits == 4, elapsed
    assert "checkDeployStatus 0AfLC0000000001 failed: NO_ANSWER" in str(error)
    assert "no answer within 1 s, asked 4 times" in str(error)


def test_rest_reads_share_the_policy(org, session):
    org.set_faults([Fault("timeout", match="/query", seconds=HELD, times=0)])
    elapsed, error = _timed(lambda: rest.query(session, "SELECT Id FROM Profile"))
    assert 4 <= elapsed < 8, elapsed
    assert isinstance(error, requests.Timeout) and no_answer(error) == "no answer within 1 s, asked 4 times"


# --- row 4: faults named as what they are ----------------------------------------------------------------


def test_the_rate_limit_on_create_metadata_says_request_limit_exceeded(org, session):
    """Before: NO_ANSWER: the org did not answer (AttributeError), zeep's 'NoneType' has no 'getroottree'."""
    plan = org.set_faults([Fault("rate_limit", match="createMetadata", times=0)])

    with pytest.raises(SalesforceError) as caught:
        metadata.create(session, "PermissionSet", {"fullName": "Rate_Limited", "label": "Rate Limited"})

    assert caught.value.code == "REQUEST_LIMIT_EXCEEDED"
    assert str(caught.value).startswith("createMetadata PermissionSet Rate_Limited failed: REQUEST_LIMIT_EXCEEDED: "
                                        "TotalRequests Limit exceeded. Fix: the org's API request limit was reached")
    assert plan.faults[0].hits == 1  # a write: never sent again


def test_the_rate_limit_on_a_metadata_read_is_asked_again(org, session):
    plan = org.set_faults([Fault("rate_limit", match="readMetadata", times=2)])
    assert metadata.read(session, "ConnectedApp", "Rate_Read") is None
    assert plan.faults[0].hits == 2


def test_an_outage_page_on_create_metadata_names_its_status(org, session):
    org.set_faults([Fault("server_error", match="createMetadata", times=0)])
    with pytest.raises(SalesforceError) as caught:
        metadata.create(session, "PermissionSet", {"fullName": "Outage_Ps", "label": "Outage"})
    assert caught.value.code == "NO_ANSWER"
    assert "the org answered HTTP 503 (text/html), not a SOAP message: an outage page or a proxy" in str(caught.value)


def test_a_persistent_503_on_soap_login_says_the_org_answered_503(org, session):
    """Before: 'SOAP login ... was refused: None: <html>...' (earlier: 'check the username, password')."""
    org.set_faults([Fault("server_error", match=LOGIN, times=0)])

    with pytest.raises(OrgConnectionError) as caught:
        connect_local(org.state_dir)

    message = str(caught.value)
    assert f"the org answered 503 4 times to the SOAP login at {org.url}" in message
    assert "the username and password were not checked" in message and "status.salesforce.com" in message
    assert "check the username" not in message


def test_a_jwt_exchange_is_retried_through_503s_and_the_rate_limit(org, app):
    consumer_key, key_path = app
    plan = org.set_faults([Fault("server_error", match="/services/oauth2/token", times=2),
                           Fault("rate_limit", match="/services/oauth2/token", times=1)])
    slept: list[float] = []

    result, token = jwt_login(consumer_key=consumer_key, username=ADMIN_USERNAME, key_path=key_path,
                              login_url=org.url, sleep=slept.append)

    assert result.username == ADMIN_USERNAME and token
    assert [f.hits for f in plan.faults] == [2, 1] and len(slept) == 3
    org.set_faults(None)


def test_a_jwt_exchange_that_stays_503_says_so_not_check_the_app(org, app):
    """Before: 'HTTP 503: ... the org refused the JWT login. Fix: check the app, user and key', at once."""
    consumer_key, key_path = app
    plan = org.set_faults([Fault("server_error", match="/services/oauth2/token", times=0)])
    try:
        with pytest.raises(LoginError) as caught:
            jwt_login(consumer_key=consumer_key, username=ADMIN_USERNAME, key_path=key_path, login_url=org.url,
                      sleep=lambda _s: None)
    finally:
        org.set_faults(None)
    message = str(caught.value)
    assert message.startswith("HTTP 503: the org answered 503 4 times (Service Unavailable).")
    assert "the app, user and key were not checked" in message and "check the app" not in message
    assert plan.faults[0].hits == 4


def test_a_rate_limited_jwt_exchange_says_request_limit_exceeded(org, app):
    consumer_key, key_path = app
    org.set_faults([Fault("rate_limit", match="/services/oauth2/token", times=0)])
    try:
        with pytest.raises(LoginError) as caught:
            jwt_login(consumer_key=consumer_key, username=ADMIN_USERNAME, key_path=key_path, login_url=org.url,
                      sleep=lambda _s: None)
    finally:
        org.set_faults(None)
    assert caught.value.error == "REQUEST_LIMIT_EXCEEDED"
    assert "request limit was reached" in str(caught.value) and "rerun phase 4" in str(caught.value)


def test_a_jwt_exchange_held_75_s_is_given_up_at_the_timeout(org, app, monkeypatch):
    consumer_key, key_path = app
    monkeypatch.setenv("RUNBOOK_HTTP_TIMEOUT", "1")
    org.set_faults([Fault("timeout", match="/services/oauth2/token", seconds=HELD, times=0)])
    try:
        elapsed, error = _timed(lambda: jwt_login(consumer_key=consumer_key, username=ADMIN_USERNAME,
                                                  key_path=key_path, login_url=org.url, sleep=lambda _s: None))
    finally:
        org.set_faults(None)
    assert 4 <= elapsed < 8, elapsed
    assert isinstance(error, LoginError) and error.error == "no answer"
    assert "no answer within 1 s" in str(error) and "asked 4 times" in str(error)
