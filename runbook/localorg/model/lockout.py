"""Password logins that fail: the count per user, and the lockout it leads to.

A user is locked out after ``MAX_FAILED_LOGINS`` (10) wrong passwords in a row, for ``LOCKOUT_SECONDS``
(15 minutes): Salesforce's default password policy ("Maximum invalid login attempts" 10, "Lockout effective
period" 15 minutes) [D]; a successful login resets the count [D]. The count is org state (the store), so a
restart does not unlock. SOAP ``login`` counts its attempts here.
"""

from __future__ import annotations

import time

from runbook.localorg.model.context import OrgContext

MAX_FAILED_LOGINS = 10  # [D] Password Policies: "Maximum invalid login attempts", 10 by default
LOCKOUT_SECONDS = 15 * 60  # [D] Password Policies: "Lockout effective period", 15 minutes by default


def _failures_key(user_id: str) -> str:
    return f"login_failures.{user_id}"


def locked_out(ctx: OrgContext, user_id: str) -> bool:
    """Whether ``user_id`` is locked out by failed logins now (the lockout ends by itself)."""
    state = ctx.store.get_setting(_failures_key(user_id)) or {}
    return float(state.get("locked_until", 0)) > time.time()


def count_login(ctx: OrgContext, user_id: str, *, succeeded: bool) -> None:
    """Count a login of ``user_id``: a success clears the count, the MAX_FAILED_LOGINS-th failure in a row locks
    the user out for LOCKOUT_SECONDS (and starts a new count)."""
    key = _failures_key(user_id)
    with ctx.store.transaction():  # read and write together: concurrent failures all count
        state = ctx.store.get_setting(key) or {}
        if succeeded:
            if state:
                ctx.store.set_setting(key, {})
            return
        failures = int(state.get("failures", 0)) + 1
        if failures >= MAX_FAILED_LOGINS:
            ctx.store.set_setting(key, {"failures": 0, "locked_until": time.time() + LOCKOUT_SECONDS})
        else:
            ctx.store.set_setting(key, {**state, "failures": failures})
