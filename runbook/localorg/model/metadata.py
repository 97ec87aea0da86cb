"""Metadata API semantics independent of XML: save (create/update/upsert), delete, read, list, and the
FileProperties that listMetadata and retrieve answer.

Each component is saved in its own savepoint, so one refused component leaves no trace while the
others in the same call go through (createMetadata's default), and a deploy can wrap everything in
one transaction for rollbackOnError. What the org adds by itself after a call or deploy (an External
Client App's generated OAuth policies) is made by ``after_saves``, once per call or deploy, so a
component sent in the same call is never duplicated by a generated one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.localorg.model import connected_apps, external_client_apps, org_settings, settings
from runbook.localorg.model.components import (
    MetadataType,
    OAuthApp,
    Problem,
    SaveError,
    check_full_name,
    not_found,
    text,
)
from runbook.localorg.model.store import Component, Node, Store

TYPES: dict[str, MetadataType] = {t.name: t for t in (
    connected_apps.CONNECTED_APP, *external_client_apps.TYPES, org_settings.EXTERNAL_CLIENT_APP_SETTINGS)}
TYPE_BY_FOLDER = {t.folder: t for t in TYPES.values()}
SETTINGS = "Settings"  # package.xml's type for every settings component: members name them ("ExternalClientApp")
SETTINGS_FOLDER = "settings"


def type_named(type_name: str) -> MetadataType | None:
    """The emulated metadata type called ``type_name``: the ones above, or a settings type (``settings``)."""
    return TYPES.get(type_name) or settings.metadata_type(type_name)


def manifest_type(type_name: str, member: str = "") -> MetadataType | None:
    """The type a package.xml ``<types>`` entry means: settings by member ("Settings" + "ExternalClientApp")."""
    if type_name == SETTINGS:
        return type_named(member + SETTINGS) if member and member != "*" else None
    found = TYPES.get(type_name)
    return found if found is not None and not found.manifest_name else None


def manifest_types(type_name: str) -> list[MetadataType]:
    """Every emulated type a package.xml ``<types>`` name covers (all the settings types for "Settings")."""
    if type_name == SETTINGS:
        generic = [settings.metadata_type(name) for name in settings.names()]
        return [t for t in TYPES.values() if t.manifest_name == SETTINGS] + [t for t in generic if t]
    found = manifest_type(type_name)
    return [found] if found else []


@dataclass
class SaveOutcome:
    """One SaveResult / UpsertResult / DeleteResult."""

    full_name: str
    success: bool
    problems: list[Problem] = field(default_factory=list)
    created: bool = False


def _unknown_type(type_name: str) -> SaveError:
    return SaveError("INVALID_TYPE", f"Unknown or unsupported metadata type: {type_name}")


def save(store: Store, type_name: str, definition: Node, mode: str) -> SaveOutcome:
    """Create, update or upsert one component (``mode``); refusals become a failed outcome."""
    full_name = (text(definition, "fullName") or "").strip()
    try:
        with store.transaction():
            created = _save(store, type_name, full_name, definition, mode)
    except SaveError as error:
        return SaveOutcome(full_name, False, error.problems)
    return SaveOutcome(full_name, True, created=created)


def _save(store: Store, type_name: str, full_name: str, definition: Node, mode: str) -> bool:
    metadata_type = type_named(type_name)
    if metadata_type is None:
        raise _unknown_type(type_name)
    if not full_name:
        raise SaveError("REQUIRED_FIELD_MISSING", "Required field is missing: fullName", ["fullName"])
    current = metadata_type.current(store, full_name)
    if metadata_type.lookup is not None:  # settings: the component exists, under its one name
        if current is None:
            raise not_found(type_name, full_name)
        metadata_type.update(store, current, definition)
        return False
    if current is None and mode == "update":
        raise not_found(type_name, full_name)
    if current is not None and mode == "create":
        # [U] wording; the status code is the one Salesforce uses for taken developer names.
        raise SaveError("DUPLICATE_DEVELOPER_NAME", f"A {type_name} named {full_name} already exists. "
                        "Use updateMetadata or upsertMetadata to change it.", ["fullName"])
    if current is None:
        check_full_name(full_name)
        metadata_type.create(store, full_name, definition)
        return True
    metadata_type.update(store, current, definition)
    return False


def delete(store: Store, type_name: str, full_name: str) -> SaveOutcome:
    try:
        with store.transaction():
            metadata_type = type_named(type_name)
            if metadata_type is None:
                raise _unknown_type(type_name)
            current = metadata_type.current(store, full_name)
            if current is None:
                raise not_found(type_name, full_name)
            metadata_type.delete(store, current)
    except SaveError as error:
        return SaveOutcome(full_name, False, error.problems)
    return SaveOutcome(full_name, True)


def read(store: Store, type_name: str, full_name: str) -> Node | None:
    """The component as readMetadata returns it, or None.

    For a name that does not exist Salesforce's exact answer is [U]. The local org answers a record
    with no fields (``<records xsi:type="ConnectedApp"/>``), which is what jsforce users report seeing
    [O]; an empty ``<result/>`` would make simple-salesforce's ``read`` fail with a TypeError [V].
    """
    metadata_type = type_named(type_name)
    current = metadata_type.current(store, full_name) if metadata_type else None
    return metadata_type.read(store, current) if metadata_type and current else None


def after_saves(store: Store, saved: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What the org makes by itself once a call or deploy saved ``saved`` ((type, fullName) pairs).

    An External Client App whose OAuth settings were saved and that has no OAuth policies gets them
    generated [O] (see ``external_client_apps``). Returns the (type, fullName) of what was made.
    """
    made = []
    for type_name, full_name in saved:
        component = store.component(type_name, full_name) if type_name == external_client_apps.OAUTH_SETTINGS \
            else None
        generated = external_client_apps.ensure_oauth_policies(store, component.parent or "") if component else None
        if generated:
            made.append((external_client_apps.OAUTH_POLICIES, generated))
    return made


def file_properties(component: Component, admin: dict[str, Any], folder: str = "") -> dict[str, str]:
    """The FileProperties of ``component`` (listMetadata, retrieve); ``folder`` prefixes its fileName."""
    file_name = folder + type_named(component.type).file_name(component.full_name)
    return {"createdById": admin["Id"], "createdByName": admin["Name"], "createdDate": component.created_date,
            "fileName": file_name, "fullName": component.full_name, "id": component.sobject_id or "",
            "lastModifiedById": admin["Id"], "lastModifiedByName": admin["Name"],
            "lastModifiedDate": component.last_modified_date, "manageableState": "unmanaged",
            "type": component.type}


def list_components(store: Store, type_name: str, admin: dict[str, Any]) -> list[dict[str, str]]:
    """FileProperties for every component of ``type_name`` (listMetadata)."""
    metadata_type = type_named(type_name)
    return [file_properties(c, admin) for c in metadata_type.all(store)] if metadata_type else []


def oauth_app_for_key(store: Store, consumer_key: str) -> OAuthApp | None:
    """The Connected App or External Client App whose consumer key is ``consumer_key``."""
    component = store.component_by_consumer_key(consumer_key)
    if component is None:
        return None
    if component.type == connected_apps.TYPE:
        return connected_apps.oauth_app(store, component)
    return external_client_apps.oauth_app(store, component)
