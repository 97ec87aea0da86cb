"""HTTP with a timeout on every call, and bounded retries only where repeating is safe.

A call is retried (exponential backoff with full jitter) on a connection error, a timeout, a
5xx answer or REQUEST_LIMIT_EXCEEDED — but only when it is safe to repeat: reads (GET, SOQL,
readMetadata/listMetadata) and logins. A write that may or may not have happened is never sent
twice from here; the phases read the org again and re-plan instead.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests

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


class RetryingSession(requests.Session):
    """A requests session with a default timeout and safe retries; used by REST and Metadata calls."""

    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY, sleep=time.sleep):
        super().__init__()
        self.policy = policy
        self._sleep = sleep

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
    """The URL without its query: a SOQL string may name users, never print more than needed."""
    return str(url).split("?", 1)[0]
