"""Injected latency and faults, so retries, re-authentication and fleets can be exercised here.

A ``FaultPlan`` is a list of ``Fault`` rules; each request is checked against them in order and the
first rule that matches (and still has hits left) decides what happens to it:

- ``server_error``: 503 Service Unavailable (an outage page, not a SOAP fault);
- ``rate_limit``: 403 ``REQUEST_LIMIT_EXCEEDED``, Salesforce's API request limit;
- ``expired_session``: ``INVALID_SESSION_ID`` (401 JSON for REST, a SOAP fault for SOAP);
- ``timeout``: the answer is held ``seconds`` before the request is served (clients give up first).

``after=True`` serves the request first and then loses the answer (the org changed, the client
cannot tell): the case where a write must never be sent twice blindly.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

KINDS = ("server_error", "rate_limit", "expired_session", "timeout")


@dataclass
class Fault:
    """One rule: ``kind`` for the next ``times`` requests (0 = all) whose "METHOD path body" matches ``match``."""

    kind: str
    match: str = ""  # a regex searched in "METHOD /path\n<first 4 KB of the body>"; empty matches every call
    times: int = 1
    after: bool = False
    seconds: float = 35.0  # for "timeout": longer than the runbook's 30 s client timeout
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; the kinds are: {', '.join(KINDS)}")
        re.compile(self.match)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``KIND[:TIMES[:MATCH]]``, the `runbook org serve --fault` syntax (TIMES 0 = every matching call)."""
        kind, _, rest = text.partition(":")
        times, _, match = rest.partition(":")
        return cls(kind, match=match, times=int(times) if times else 1)


@dataclass
class FaultPlan:
    """The rules a local org applies, in order; thread-safe, shared by the server's threads."""

    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take(self, method: str, path: str, body: bytes) -> Fault | None:
        """The fault this request gets (counting the hit), or None."""
        if not self.faults:
            return None
        subject = f"{method} {path}\n{body[:4096].decode('utf-8', 'replace')}"
        with self._lock:
            for fault in self.faults:
                if fault.times and fault.hits >= fault.times:
                    continue
                if not fault.match or re.search(fault.match, subject):
                    fault.hits += 1
                    return fault
        return None


@dataclass
class Injection:
    """What the server applies to every call: a fixed latency and a fault plan, both changeable while running."""

    latency_ms: float = 0.0
    plan: FaultPlan = field(default_factory=FaultPlan)

    def delay(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)
