"""The runbook's exception tree: every failure a user can see is one of these.

    RunbookError                 base: ``str(err)`` is a complete, secret-free message
    ├── InputError               a parameter is wrong: names the field, the value and the fix
    ├── ParameterProblems        several are: each one's InputError, all listed, before anything is written
    ├── OrgConnectionError       no session could be had with the org (which method, why)
    ├── SalesforceError          the org refused a call: Salesforce's code stays visible
    │   └── PreflightError       the org cannot do what was asked (e.g. no new connected apps)
    └── LoginError               a JWT bearer / web server token exchange was refused, with the fix

A phase notebook that fails in a batch is not raised: ``runbook run`` returns a summary naming the phase, its
error and what to do next (``runbook.run.summary``), so a fleet and a single run report failures the same way.

Messages never carry a secret: callers pass values that are safe to show, and ``InputError``
takes ``secret=True`` to withhold the value of a field that holds one.
"""

from __future__ import annotations

NO_ANSWER = "NO_ANSWER"  # SalesforceError.code when the org's answer was lost: the write may or may not have happened


class RunbookError(Exception):
    """Base class: catch this to handle any runbook failure."""


class InputError(RunbookError, ValueError):
    """A parameter has a bad value; raised before anything is written to disk or to the org."""

    def __init__(self, field: str, value: object, fix: str, *, problem: str = "", secret: bool = False):
        self.field = field
        self.value = "<hidden>" if secret else value
        self.fix = fix
        self.problem = problem
        shown = "<hidden>" if secret else repr(value)
        what = f": {problem}" if problem else ""
        super().__init__(f"{field}={shown} is not valid{what}. Fix: {fix}")


class OrgConnectionError(RunbookError):
    """Connecting to the org failed; the message says which method was tried and why."""

    def __init__(self, method: str, reason: str, fix: str = ""):
        self.method = method
        self.reason = reason
        tail = f" Fix: {fix}" if fix else ""
        super().__init__(f"Could not connect to the org with {method}: {reason}.{tail}")


class SalesforceError(RunbookError):
    """The org refused a call; ``code`` is Salesforce's own error code (e.g. DUPLICATE_VALUE)."""

    def __init__(self, operation: str, code: str, message: str, fix: str = ""):
        self.operation = operation
        self.code = code
        self.sf_message = message
        self.fix = fix
        tail = f" Fix: {fix}" if fix else ""
        super().__init__(f"{operation} failed: {code}: {message}.{tail}")


class PreflightError(SalesforceError):
    """The org cannot do what the parameters ask; the message lists the ways out."""


class LoginError(RunbookError):
    """A token exchange was refused; ``error``/``description`` are the OAuth error as Salesforce sent it."""

    def __init__(self, error: str, description: str, explanation: str, fix: str):
        self.error = error
        self.description = description
        self.fix = fix
        super().__init__(f"{error}: {description}. {explanation} Fix: {fix}")


class ParameterProblems(RunbookError, ValueError):
    """Some parameters are wrong; ``problems`` holds each one's InputError. Raised before any write."""

    def __init__(self, problems: list[InputError]):
        self.problems = problems
        super().__init__(f"{len(problems)} parameter problem(s), nothing was written:\n" +
                         "\n".join(f"  - {p}" for p in problems))
