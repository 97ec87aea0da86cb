"""HTTP with a timeout on every call, and bounded retries only where repeating is safe.

A call is retried (exponential backoff with full jitter) on a connection error, a timeout, a
5xx answer or REQUEST_LIMIT_EXCEEDED — but only when it is safe to repeat: reads (GET, SOQL,
readMetadata/listMetadata) and logins. A write that may or may not have happened is never sent
twice from here; the phases read the org again and re-plan instead.

A session verifies TLS against a CA bundle loaded once per process (``_BundleContextAdapter``), not
once per new connection as urllib3 does for a bundle named by path.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import DEFAULT_CA_BUNDLE_PATH, HTTPAdapter

from runbook.urls import without_userinfo

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 30  # seconds, connect and read
_SAFE_SOAP = re.compile(rb"<(?:[\w-]+:)?(readMetadata|listMetadata|describeMetadata|login)\b")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all, delays doubling from ``base`` up to ``cap`` seconds."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0

    def delays(self) -> Iterator[float]:
        for attempt in range(self.attempts - 1):
            yield random.uniform(0, min(self.cap, self.base * 2**attempt))


DEFAULT_POLICY = RetryPolicy()


def is_safe_to_repeat(method: str, body: bytes | str | None) -> bool:
    """Reads and logins may be repeated; anything that may have changed the org may not."""
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return True
    if method.upper() == "POST" and body:
        data = body.encode() if isinstance(body, str) else body
        return bool(_SAFE_SOAP.search(data[:2000]))
    return False


def is_transient(response: requests.Response) -> bool:
    """A 5xx that is not a SOAP fault, or Salesforce's API rate limit."""
    if response.status_code == 403 and b"REQUEST_LIMIT_EXCEEDED" in response.content[:500]:
        return True
    if response.status_code >= 500:
        return b"Fault>" not in response.content[:4000]  # a SOAP fault is an answer, not an outage
    return False


class _BundleContextAdapter(HTTPAdapter):
    """requests' HTTPAdapter, verifying with an SSL context per CA bundle file instead of per connection.

    For a bundle named by path (``REQUESTS_CA_BUNDLE``, or certifi's by default), urllib3 loads the file
    into a new context for every new connection: ~25 ms of CPU for certifi's ~140 CAs (the local org's
    bundle holds them too), three times per kernel in a run. This puts one context per bundle (by
    path, size and modification time) on the pool, through requests' documented hook for a custom
    context; the checks stay urllib3's (certificate required, host name matched). Client certificates
    (``cert``) keep the default path.
    """

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        bundle = _bundle_of(verify)
        if host_params["scheme"] == "https" and bundle and cert is None:
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs["ssl_context"] = _verifying_context(bundle, *_file_version(bundle))
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        context = getattr(conn, "ssl_context", None)
        if context is not None and getattr(context, "runbook_bundle", None) == _bundle_of(verify):
            conn.ca_certs = None  # in the pool's context already; urllib3 would load it again per connection


def _bundle_of(verify: Any) -> str | None:
    if verify is True:
        return DEFAULT_CA_BUNDLE_PATH
    return verify if isinstance(verify, str) and os.path.isfile(verify) else None


def _file_version(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _verifying_context(bundle: str, _size: int, _mtime_ns: int) -> ssl.SSLContext:
    """urllib3's default client context trusting ``bundle`` (one per version of the file; shared by threads)."""
    from urllib3.util.ssl_ import create_urllib3_context

    context = create_urllib3_context()
    context.load_verify_locations(cafile=bundle)
    context.runbook_bundle = bundle  # type: ignore[attr-defined]
    return context


class RetryingSession(requests.Session):
    """A requests session with a default timeout and safe retries; used by REST and Metadata calls."""

    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY, sleep=time.sleep):
        super().__init__()
        self.policy = policy
        self._sleep = sleep
        self.mount("https://", _BundleContextAdapter())

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        safe = is_safe_to_repeat(method, kwargs.get("data"))
        delays = self.policy.delays() if safe else iter(())
        while True:
            try:
                response = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("%s %s failed (%s); retrying in %.1f s", method, _path(url), type(exc).__name__, delay)
            else:
                delay = next(delays, None) if is_transient(response) else None
                if delay is None:
                    return response
                log.warning("%s %s answered %s; retrying in %.1f s", method, _path(url), response.status_code,
                            delay)
            self._sleep(delay)


def _path(url: str) -> str:
    """The URL without its query and userinfo: a SOQL string may name users, never print more than needed."""
    return without_userinfo(str(url).split("?", 1)[0])
