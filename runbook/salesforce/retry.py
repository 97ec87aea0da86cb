"""HTTP with a timeout on every call, and bounded retries only where repeating is safe.

One timeout policy for REST, SOAP (the Metadata API through zeep, simple-salesforce's file-based calls and
SOAP login) and the OAuth token endpoint: every call through a ``RetryingSession`` that names no timeout of
its own gets ``http_timeout()``: 10 s to connect and 30 s for an answer, or what ``$RUNBOOK_HTTP_TIMEOUT``
says ("60": 60 s for an answer; "5,60": 5 s to connect, 60 s for an answer). A caller passing
``timeout=None`` (zeep does) gets the policy too: no call waits forever.

A call is retried (exponential backoff with full jitter) on a connection error, a timeout, a 5xx answer,
a 429 or REQUEST_LIMIT_EXCEEDED — but only when it is safe to repeat: reads (GET, SOQL, readMetadata,
listMetadata, describeMetadata, retrieve, checkDeployStatus) and logins. A write that
may or may not have happened is never sent twice from here; the phases read the org again and re-plan
instead. The JWT bearer exchange retries itself the same way (``runbook.phases.jwt_bearer.jwt_login``).

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

from runbook.errors import InputError
from runbook.salesforce.urls import without_userinfo

log = logging.getLogger(__name__)

TIMEOUT_ENV = "RUNBOOK_HTTP_TIMEOUT"
HTTP_TIMEOUT = 30  # seconds to wait for an answer (read) unless $RUNBOOK_HTTP_TIMEOUT says otherwise
CONNECT_TIMEOUT = 10  # seconds to connect (at most HTTP_TIMEOUT)
# SOAP operations that change nothing in the org: a lost answer may be asked for again. ``retrieve`` starts
# an asynchronous read; ``login`` only opens a session. Not checkRetrieveStatus: the org hands a finished
# retrieve's zip out once, then answers INVALID_ID_FIELD "Retrieve result has been deleted" [O].
_SAFE_SOAP = re.compile(rb"<(?:[\w-]+:)?(readMetadata|listMetadata|describeMetadata|retrieve|checkDeployStatus|"
                        rb"login)\b")
_RATE_LIMITED = b"REQUEST_LIMIT_EXCEEDED"


@dataclass(frozen=True)
class Timeout:
    """Seconds to connect and to wait for an answer, as requests takes them (``as_requests()``)."""

    connect: float
    read: float

    def as_requests(self) -> tuple[float, float]:
        return (self.connect, self.read)

    def __str__(self) -> str:
        return f"{self.read:g} s"


def timeout_fix() -> str:
    """The fix a message about a call that timed out ends with: the setting and its value now."""
    return (f"if the org is slow rather than down, raise ${TIMEOUT_ENV} (seconds to wait for an answer; now "
            f"{http_timeout().read:g})")


def http_timeout() -> Timeout:
    """The timeout every call to an org gets: $RUNBOOK_HTTP_TIMEOUT ("READ" or "CONNECT,READ" seconds), else
    10 s to connect and ``HTTP_TIMEOUT`` (30 s) for the answer. Read at each call, so a kernel follows its
    environment; a value that is no positive number is refused naming the variable."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return Timeout(min(CONNECT_TIMEOUT, HTTP_TIMEOUT), HTTP_TIMEOUT)
    parts = [p.strip() for p in raw.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(0 < n <= 3600 for n in numbers):  # NaN fails the comparison too
        raise InputError(TIMEOUT_ENV, raw, 'give seconds, e.g. "60" (to wait for an answer) or "5,60" (to '
                         "connect, to wait for an answer), each above 0 and at most 3600")
    if len(numbers) == 1:
        return Timeout(min(CONNECT_TIMEOUT, numbers[0]), numbers[0])
    return Timeout(numbers[0], numbers[1])


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


def is_safe_to_repeat(method: str, body: Any) -> bool:
    """Reads and logins may be repeated; anything that may have changed the org may not.

    A POST is judged by its SOAP operation; a form or a stream (a dict, a file) is never repeated from here.
    """
    if method.upper() in ("GET", "HEAD", "OPTIONS"):
        return True
    if method.upper() == "POST" and isinstance(body, bytes | str) and body:
        data = body.encode() if isinstance(body, str) else body
        return bool(_SAFE_SOAP.search(data[:2000]))
    return False


def is_transient(response: requests.Response) -> bool:
    """A 5xx that is not a SOAP fault, a 429, or Salesforce's API rate limit (REST's 403 or a SOAP fault)."""
    head = response.content[:4000]
    if response.status_code in (403, 429, 500) and _RATE_LIMITED in head:
        return True
    if response.status_code == 429:
        return True
    if response.status_code >= 500:
        return b"Fault>" not in head  # a SOAP fault is an answer, not an outage
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


class TrustingSession(requests.Session):
    """A requests session whose own ``verify`` (a CA bundle path) wins over ``$REQUESTS_CA_BUNDLE``.

    requests lets the environment's bundle replace a session's (psf/requests#3829): a session told to trust
    one local org would verify with whatever bundle the process's environment names. The runbook puts the
    bundle on the session (``Connector``), so that is the one used; a request's own ``verify=`` still wins.
    Its TLS contexts are one per bundle file (``_BundleContextAdapter``), not one per connection.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mount("https://", _BundleContextAdapter())

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[override]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings


class RetryingSession(TrustingSession):
    """A requests session with a default timeout and safe retries; used by REST and Metadata calls."""

    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY, sleep=time.sleep):
        super().__init__()
        self.policy = policy
        self._sleep = sleep

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:  # zeep passes None: the policy applies to every call
            kwargs["timeout"] = http_timeout().as_requests()
        safe = is_safe_to_repeat(method, kwargs.get("data"))
        delays = self.policy.delays() if safe else iter(())
        tries = 0
        while True:
            tries += 1
            try:
                response = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                delay = next(delays, None)
                if delay is None:
                    exc.tries, exc.timeout = tries, kwargs["timeout"]  # type: ignore[attr-defined]  # for no_answer()
                    raise
                log.warning("%s %s failed (%s); retrying in %.1f s", method, _path(url), type(exc).__name__, delay)
            else:
                delay = next(delays, None) if is_transient(response) else None
                if delay is None:
                    response.tries = tries  # type: ignore[attr-defined]
                    return response
                log.warning("%s %s answered %s; retrying in %.1f s", method, _path(url), response.status_code,
                            delay)
            self._sleep(delay)


def no_answer(exc: BaseException) -> str:
    """What a call that got no answer met, for a message: "no answer within 30 s, asked 4 times", "no
    connection (ConnectionError)". The tries and the timeout are the ones ``RetryingSession`` used."""
    tries = getattr(exc, "tries", 1)
    asked = f", asked {tries} times" if tries > 1 else ""
    timeout = getattr(exc, "timeout", None) or http_timeout().as_requests()
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {connect:g} s{asked}"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {read:g} s{asked}"
    return f"no connection ({type(exc).__name__}{asked})"


def _path(url: str) -> str:
    """The URL without its query and userinfo: a SOQL string may name users, never print more than needed."""
    return without_userinfo(str(url).split("?", 1)[0])
