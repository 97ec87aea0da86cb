"""The app-kind seam: a connected app or an External Client App, behind one interface (``AppKind``).

Phases 2 and 3, verification, the overview, teardown and ``--resume`` ask ``kind_named`` or
``find_app_kind`` for the kind and call its operations; none of them branches on the kind, and the kind
is asked of the org once and recorded in phase 2's record (``app_kind``).

Adding a third kind: write a module here whose class implements ``AppKind`` (read, desired, preflight,
save, read_access, save_access, teardown_steps, handoff_notes), add an instance to ``KINDS``, and give
the local org its metadata types; ``app_kind`` then accepts its name everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.apps.connected_app import ConnectedAppKind
from runbook.apps.external_client_app import ExternalClientAppKind
from runbook.apps.kind import AppKind, DeleteStep
from runbook.apps.model import SCOPES, AccessState, Action, AppSpec, AppState, Change, Grant, normalised_scopes
from runbook.errors import InputError

if TYPE_CHECKING:
    from runbook.salesforce import OrgSession

# In the order "auto" prefers them for a new app: a connected app where the org still allows one.
KINDS: dict[str, AppKind] = {kind.name: kind for kind in (ConnectedAppKind(), ExternalClientAppKind())}
KIND_NAMES = tuple(KINDS)

__all__ = ["KINDS", "KIND_NAMES", "SCOPES", "AccessState", "Action", "AppKind", "AppSpec", "AppState", "Change",
           "DeleteStep", "Grant", "find_app_kind", "kind_named", "normalised_scopes"]


def kind_named(name: str, field: str = "app_kind") -> AppKind:
    """The kind called ``name``; an InputError naming ``field`` otherwise."""
    if name not in KINDS:
        raise InputError(field, name, f"use one of {', '.join(KIND_NAMES)}")
    return KINDS[name]


def find_app_kind(session: OrgSession, app_name: str) -> AppKind | None:
    """The kind of the app called ``app_name`` in the org (one listMetadata call for every kind), or None."""
    from runbook.salesforce import metadata

    listed = metadata.list_names(session, [kind.list_type for kind in KINDS.values()])
    low = app_name.lower()
    return next((kind for kind in KINDS.values() if low in {n.lower() for n in listed.get(kind.list_type, [])}),
                None)
