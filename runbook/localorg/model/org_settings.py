"""Settings metadata: ``ExternalClientAppSettings``, the org's External Client App switches.

[D] Metadata API ExternalClientAppSettings: one component, fullName ``ExternalClientApp``, file
``settings/ExternalClientApp.settings``, listed in package.xml under the type ``Settings``. Its fields
are org settings of the local org (store keys), so `LocalOrg.set_setting` and a deploy change the same
values:

- ``enableExternalClientApps`` -> ``external_client_apps``: the "Opt in to External Client Apps"
  [D 246.0; gone from the 260.0 docs]. `LocalOrg(external_client_apps=...)` sets it at every start.
- ``enableClientSecretInRestApiAccess`` -> ``eca_client_secret_in_rest_api`` (API 62.0+ [D]): Connect REST
  may hand out consumer keys and secrets. Off on a fresh org: Salesforce's guidance is to leave secret
  access off unless needed [D], so a tool turns it on, reads, and turns it off again.
- ``enableConsumerSecretApiAccess`` (deprecated [D]) and ``enablePackageEcaOauthFromDevOrg`` are kept and
  read back; nothing in the local org depends on them.

[U] A save changes only the fields it names (settings deploys are partial updates, unlike components);
create, update and upsert all apply to the one existing component, and a delete is refused.
"""

from __future__ import annotations

from runbook.localorg.model.components import MetadataType, SaveError, as_bool, text
from runbook.localorg.model.store import Component, Node, Store, now_text

TYPE = "ExternalClientAppSettings"
FULL_NAME = "ExternalClientApp"
SECRET_IN_REST_API = "eca_client_secret_in_rest_api"
# field -> (store key, value on an org that never set it)
FIELDS: dict[str, tuple[str, bool]] = {
    "enableClientSecretInRestApiAccess": (SECRET_IN_REST_API, False),
    "enableConsumerSecretApiAccess": ("eca_consumer_secret_api_access", False),
    "enableExternalClientApps": ("external_client_apps", True),
    "enablePackageEcaOauthFromDevOrg": ("eca_package_oauth_from_dev_org", False),
}


def _current(store: Store, full_name: str) -> Component | None:
    """The one settings component, made from the org's settings; None for any other name."""
    if full_name.lower() != FULL_NAME.lower():
        return None
    definition: Node = {field: ["true" if store.get_setting(key, default) else "false"]
                        for field, (key, default) in FIELDS.items()}
    stamp = store.get_setting("org_settings_saved") or now_text()
    return Component(TYPE, FULL_NAME, definition, created_date=stamp, last_modified_date=stamp)


def _components(store: Store) -> list[Component]:
    return [component] if (component := _current(store, FULL_NAME)) else []


def _save(store: Store, definition: Node) -> None:
    for field, (key, _default) in FIELDS.items():
        value = text(definition, field)
        if value is not None and value.strip():
            store.set_setting(key, as_bool(value))
    store.set_setting("org_settings_saved", now_text())


def _create(store: Store, full_name: str, definition: Node) -> None:
    _save(store, definition)


def _update(store: Store, current: Component, definition: Node) -> None:
    _save(store, definition)


def _delete(store: Store, current: Component) -> None:
    raise SaveError("INVALID_OPERATION", f"{TYPE} {FULL_NAME} cannot be deleted")  # [U]


def _read(store: Store, current: Component) -> Node:
    return {"fullName": [current.full_name], **current.definition}


EXTERNAL_CLIENT_APP_SETTINGS = MetadataType(
    TYPE, "settings", "settings", _create, _update, _delete, _read, rank=0, manifest_name="Settings",
    lookup=_current, listing=_components)
