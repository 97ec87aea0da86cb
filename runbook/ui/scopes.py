"""The OAuth scopes as Setup's "Selected OAuth Scopes" list names them, for phase 2's form.

[U] Setup's labels: the reference notes (salesforce-wire-facts.md, real-orgs-2026.md) list the scopes' API
and metadata names only. The first three are the labels phase 2's notebook quotes; full, openid and the
identity URL service are Setup's labels as remembered, unverified. Scopes without a label here show their
API name alone.
"""

from __future__ import annotations

from runbook.apps.model import SCOPE_READ_AS, SCOPES

SETUP_LABELS = {
    "api": "Manage user data via APIs",
    "web": "Manage user data via Web browsers",
    "refresh_token offline_access": "Perform requests at any time",
    "full": "Full access",
    "openid": "Access unique user identifiers",
    "id": "Access the identity URL service",
}
# the API names Setup puts in brackets where one entry of its list stands for several
SETUP_API_NAMES = {"refresh_token offline_access": "refresh_token, offline_access",
                   "id": "id, profile, email, address, phone"}


def scope_options() -> list[tuple[str, str]]:
    """(label, parameter value) once per scope the org tells apart: Setup's label with the API names, else the name.

    Aliases of one scope (``refresh_token``, ``offline_access``) and the scopes the org reads back as another
    (``profile``, ``email``, ... as ``id``) are left out of the list; a parameter naming one still shows.
    """
    seen: set[str] = set()
    options = []
    for key, scope in SCOPES.items():
        if scope in seen or scope in SCOPE_READ_AS:
            continue
        seen.add(scope)
        names = SETUP_API_NAMES.get(key, key)
        options.append((f"{SETUP_LABELS[key]} ({names})" if key in SETUP_LABELS else names, key))
    return options
