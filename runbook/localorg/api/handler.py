"""What every endpoint handler shares: the call-log entry it fills in, and the session token a request carries."""

from __future__ import annotations

from dataclasses import dataclass


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` (or Salesforce's older ``OAuth <token>``) header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() in ("bearer", "oauth") else None


@dataclass
class Call:
    """The call-log entry a handler fills in: its operation name and whether it changes the org."""

    operation: str = "unknown"
    is_write: bool = False
