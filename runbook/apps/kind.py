"""The interface every app kind implements: what phases 2 and 3, verification, the overview and teardown
ask of an app, so that none of them asks which kind it is.

Adding a kind: implement ``AppKind`` in a module of ``runbook.apps`` and add it to ``KINDS`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from runbook.apps.model import AccessState, AppSpec, AppState, Grant

if TYPE_CHECKING:
    from runbook.salesforce import OrgSession


@dataclass(frozen=True)
class DeleteStep:
    """One step of a teardown: what it deletes (shown in the plan) and how."""

    line: str
    run: Callable[[], None]


class AppKind(Protocol):
    """One kind of app: how it is read, planned, saved, pre-authorized and deleted."""

    name: str  # the app_kind parameter's value
    title: str  # in plans and cards: "connected app"
    list_type: str  # the metadata type whose listMetadata names this kind's apps
    setup_path: str  # where an admin finds it in Setup

    def read(self, session: OrgSession, app_name: str) -> AppState | None:
        """The app as the org holds it (with its consumer key), or None."""

    def desired(self, spec: AppSpec) -> dict[str, str]:
        """Phase 2's fields of ``spec`` as display strings, keyed as ``read`` keys ``AppState.fields``."""

    def check_spec(self, spec: AppSpec) -> None:
        """Refuse, with an InputError naming the field, what this kind cannot do; nothing is written."""

    def preflight(self, session: OrgSession, spec: AppSpec) -> str:
        """Ask the org, saving nothing, whether it takes a new app like ``spec``; raises PreflightError."""

    def save(self, session: OrgSession, spec: AppSpec, current: AppState | None, secret: str | None) -> AppState:
        """Create (``current`` None) or update the app; returns it as read back, checked against ``spec``."""

    def read_access(self, session: OrgSession, app_name: str, *, hint: str = "") -> AccessState:
        """The app's policies and pre-authorizations; raises InputError when the org has no such app.

        ``hint`` is ``AppState.access_hint`` as phase 2 recorded it: where to read them at once."""

    def save_access(self, session: OrgSession, app_name: str, current: AccessState, policies: dict[str, str],
                    grants: list[Grant] | None) -> None:
        """Make the app's policies ``policies`` and its pre-authorizations exactly ``grants`` (API names;
        None leaves them as they are)."""

    def teardown_steps(self, session: OrgSession, app_name: str) -> list[DeleteStep]:
        """What deleting the app takes, in order; empty when the org has no such app."""

    def handoff_notes(self) -> list[str]:
        """What the hand-off must tell about logging in through this kind of app."""
