"""SOQL over HTTPS under attack: a pathological LIKE answers at once, and the query time limit answers
Salesforce's QUERY_TIMEOUT (issue 17, row 1)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from runbook.localorg.model import soql
from runbook.localorg.model.seed import PROFILES

from ..support import bearer

# twelve % before a letter no username ends with: the old backtracking regex took 19 s over the seeded users
PATHOLOGICAL = "SELECT Id FROM User WHERE Username LIKE '" + "%" * 12 + "x'"


def timed_query(org, token: str, query: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.get(f"{org.url}/services/data/v62.0/query", params={"q": query}, headers=bearer(token),
                            verify=org.ca_bundle, timeout=60)
    return response, time.monotonic() - started


def test_pathological_like_answers_at_once_and_holds_up_no_other_query(org, admin_token):
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(timed_query, org, admin_token, PATHOLOGICAL)
        time.sleep(0.05)
        other = pool.submit(timed_query, org, admin_token, "SELECT Id FROM Profile")
        (slow_response, slow_seconds), (other_response, other_seconds) = slow.result(), other.result()
    assert slow_response.status_code == 200 and slow_response.json()["totalSize"] == 0
    assert other_response.status_code == 200 and other_response.json()["totalSize"] == len(PROFILES)
    assert slow_seconds < 2 and other_seconds < 2


def test_query_over_the_time_limit_answers_query_timeout(org, admin_token, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(soql, "QUERY_TIME_LIMIT", 0.0)
    response, _ = timed_query(org, admin_token, "SELECT Id FROM User WHERE Username LIKE '%a%'")
    assert response.status_code == 400
    assert response.json() == [{"errorCode": "QUERY_TIMEOUT",
                                "message": "Your query request was running for too long."}]
