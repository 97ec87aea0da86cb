"""A short bounded load on loopback (issue 17): 500 mixed JWT token and SOQL query requests from 10 threads
against a fresh local org, with 0 errors and the org's threads bounded by its worker pool."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from cryptography.hazmat.primitives import serialization

from runbook.localorg import ADMIN_USERNAME
from runbook.localorg.server import WORKERS

from .conftest import soap_login
from .support import JWT_BEARER, assertion, bearer, consumer_key, create_connected_app

REQUESTS, CLIENTS, TIME_LIMIT = 500, 10, 15.0


def _server_threads(org) -> int:
    prefix = f"localorg:{org.port}:"
    return sum(t.name.startswith(prefix) for t in threading.enumerate())


def test_500_mixed_token_and_query_requests_from_10_threads(fresh_org, keys):
    sf = soap_login(fresh_org)
    issuer = consumer_key(sf, create_connected_app(sf, keys))
    key = serialization.load_pem_private_key(keys.private_pem.encode(), None)  # parsed once: ~60 ms each time
    query = f"{fresh_org.url}/services/data/v62.0/query"
    token_url = f"{fresh_org.url}/services/oauth2/token"
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _server_threads(fresh_org))
            time.sleep(0.02)

    def client(n: int) -> Counter:
        outcomes: Counter = Counter()
        with requests.Session() as http:
            http.verify = str(fresh_org.ca_bundle)
            for i in range(REQUESTS // CLIENTS):
                if (n + i) % 2:
                    signed = assertion(keys, iss=issuer, sub=ADMIN_USERNAME, aud=fresh_org.url, key=key)
                    response = http.post(token_url, data={"grant_type": JWT_BEARER, "assertion": signed}, timeout=10)
                    ok = response.status_code == 200 and "access_token" in response.json()
                else:
                    response = http.get(query, params={"q": "SELECT Id, Username FROM User WHERE IsActive = true"},
                                        headers=bearer(sf.session_id), timeout=10)
                    ok = response.status_code == 200 and response.json()["totalSize"] >= 1
                outcomes["ok" if ok else f"{response.status_code}"] += 1
        return outcomes

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = sum(pool.map(client, range(CLIENTS)), Counter())
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()

    assert results == Counter(ok=REQUESTS), results
    assert elapsed < TIME_LIMIT, f"{REQUESTS} requests took {elapsed:.1f} s"
    assert 1 <= peak[0] <= WORKERS + 1, f"the org ran {peak[0]} threads (workers and the parking thread)"
    log = fresh_org.call_log()
    assert sum(c.operation == "oauth.token" and c.status == 200 for c in log) == REQUESTS // 2
    print(f"\nload: {REQUESTS} requests from {CLIENTS} threads in {elapsed:.1f} s "
          f"({REQUESTS / elapsed:.0f} req/s), 0 errors, at most {peak[0]} server threads")
