"""What every endpoint handler shares: its signature, the call-log entry it fills in, and the session token a
request carries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from werkzeug import Response

# An endpoint's handler: (the org's context, the werkzeug request, the Call it fills in, the values its URL rule
# matched, e.g. ``version``) -> its answer.
Handler = Callable[..., Response]


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` (or Salesforce's older ``OAuth <token>``) header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() in ("bearer", "oauth") else None


@dataclass
class Call:
    """The call-log entry a handler fills in: its operation name and whether it changes the org."""

    operation: str = "unknown"
    is_write: bool = False
