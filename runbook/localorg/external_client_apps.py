"""The five External Client App metadata types: the app, and its settings and policies components.

``ExternalClientApplication`` is the app (with an ``ExternalClientApplication`` sObject row); the
four others each name their app in ``externalClientApplication``, one of each type per app:
``ExtlClntAppOauthSettings`` (scopes), ``ExtlClntAppGlobalOauthSettings`` (callback, certificate,
consumer key and secret), ``ExtlClntAppOauthConfigurablePolicies`` (permitted users, pre-authorized
profiles and permission sets) and ``ExtlClntAppConfigurablePolicies`` (enabled, plugins).

[U] choices, all in the spirit of the ConnectedApp rules: a settings component naming an unknown
app, a second component of a type for one app, a changed consumer key or secret on update are
refused; deleting the app deletes its settings and policies components too. A read answers the
scopes normalised (``Api, Web, OfflineAccess`` reads back as ``Api, Web, RefreshToken``) [D], joined
with ", " [U].
"""

from __future__ import annotations

from collections.abc import Callable

from runbook.localorg import credentials, ids
from runbook.localorg.components import (
    MetadataType,
    OAuthApp,
    SaveError,
    as_bool,
    check_certificate,
    check_consumer_key,
    check_consumer_secret,
    check_scopes,
    missing,
    not_found,
    read_scopes,
    text,
    wire_scopes,
)
from runbook.localorg.store import Component, Node, Store

APP = "ExternalClientApplication"
OAUTH_SETTINGS = "ExtlClntAppOauthSettings"
GLOBAL_OAUTH = "ExtlClntAppGlobalOauthSettings"
OAUTH_POLICIES = "ExtlClntAppOauthConfigurablePolicies"
POLICIES = "ExtlClntAppConfigurablePolicies"
SATELLITES = (OAUTH_SETTINGS, GLOBAL_OAUTH, OAUTH_POLICIES, POLICIES)
ADMIN_APPROVED = "AdminApprovedPreAuthorized"
_PERMITTED = ("AllSelfAuthorized", ADMIN_APPROVED)


def comma_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# --- the app --------------------------------------------------------------------------------------

def _app_fields(full_name: str, definition: Node) -> dict[str, object]:
    return {"MasterLabel": text(definition, "label") or full_name, "DeveloperName": full_name,
            "Description": text(definition, "description")}


def _stored(definition: Node) -> Node:
    return {name: values for name, values in definition.items() if name != "fullName"}


def create_app(store: Store, full_name: str, definition: Node) -> None:
    entity_id = store.insert(APP, _app_fields(full_name, definition))
    store.save_component(Component(APP, full_name, _stored(definition), sobject_id=entity_id))


def update_app(store: Store, current: Component, definition: Node) -> None:
    store.update(APP, current.sobject_id or "", _app_fields(current.full_name, definition))
    current.definition = _stored(definition)
    store.save_component(current)


def delete_app(store: Store, current: Component) -> None:
    """Remove the app, its settings and policies components, grants, approvals and sessions."""
    for type_name in SATELLITES:
        for satellite in store.components(type_name, parent=current.full_name):
            store.delete_component(type_name, satellite.full_name)
    entity_id = current.sobject_id or ""
    store.delete("SetupEntityAccess", SetupEntityId=entity_id)
    store.delete(APP, Id=entity_id)
    store.forget_approvals(entity_id)
    store.revoke_tokens(entity_id)
    store.delete_component(APP, current.full_name)


def read_component(store: Store, current: Component) -> Node:
    """The component as readMetadata and retrieve return it: the consumer key shown, the secret never.

    [O] a real retrieve may include the secret (real-orgs-2026 §3); the local org never returns it,
    like a ConnectedApp's ([D] wire facts §1.4). OAuth scopes read back normalised [D].
    """
    definition: Node = {"fullName": [current.full_name], **current.definition}
    if current.consumer_key:
        definition["consumerKey"] = [current.consumer_key]
    scopes = text(definition, "commaSeparatedOauthScopes")
    if current.type == OAUTH_SETTINGS and scopes is not None:
        definition["commaSeparatedOauthScopes"] = [", ".join(read_scopes(comma_list(scopes)))]
    return definition


# --- settings and policies ------------------------------------------------------------------------

def _owner(store: Store, type_name: str, full_name: str, definition: Node) -> str:
    """The app this component belongs to; refuses unknown apps and a second component of a type."""
    problems = missing(definition, ("externalClientApplication",))
    if problems:
        raise SaveError.of(problems)
    app_name = (text(definition, "externalClientApplication") or "").strip()
    app = store.component(APP, app_name)
    if app is None:
        raise not_found(APP, app_name, "externalClientApplication")
    others = [c for c in store.components(type_name, parent=app.full_name)
              if c.full_name.lower() != full_name.lower()]
    if others:
        raise SaveError("DUPLICATE_VALUE", f"The External Client App {app.full_name} already has a "
                        f"{type_name}: {others[0].full_name}", ["externalClientApplication"])
    return app.full_name


def _check_oauth_settings(store: Store, definition: Node) -> None:
    check_scopes(comma_list(text(definition, "commaSeparatedOauthScopes")), "commaSeparatedOauthScopes")


def _check_oauth_policies(store: Store, definition: Node) -> None:
    permitted = text(definition, "permittedUsersPolicyType")
    if permitted is not None and permitted not in _PERMITTED:
        raise SaveError("INVALID_VALUE", f"permittedUsersPolicyType must be one of {', '.join(_PERMITTED)}",
                        ["permittedUsersPolicyType"])
    for name in comma_list(text(definition, "commaSeparatedProfile")):
        if not store.find("Profile", Name=name):
            raise not_found("Profile", name, "commaSeparatedProfile")
    for value in comma_list(text(definition, "commaSeparatedPermissionSet")):
        if _permission_set(store, value) is None:
            raise not_found("PermissionSet", value, "commaSeparatedPermissionSet")


def _permission_set(store: Store, id_or_name: str) -> dict | None:
    """A permission set by Id (what the docs say the field holds) or by API name (what people write)."""
    record_id = ids.normalize(id_or_name)
    found = store.get("PermissionSet", record_id) if record_id else None
    return found or next(iter(store.find("PermissionSet", Name=id_or_name)), None)


def _check_policies(store: Store, definition: Node) -> None:
    problems = missing(definition, ("isEnabled",))
    if problems:
        raise SaveError.of(problems)


def _global_keys(store: Store, definition: Node, current: Component | None) -> tuple[str, str]:
    """The consumer key and secret after this save: kept, supplied at creation, generated, or rotated."""
    key, secret = text(definition, "consumerKey"), text(definition, "consumerSecret")
    if current is None:
        if key is not None:
            check_consumer_key(store, key, "consumerKey")
        if secret is not None:
            check_consumer_secret(store, secret, "consumerSecret")
        return key or credentials.new_consumer_key(), secret or credentials.new_consumer_secret()
    if key is not None and key != current.consumer_key:
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "You cannot provide a Consumer Key", ["consumerKey"])
    if secret is not None and secret != current.consumer_secret:
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "You cannot provide a Consumer Secret",
                        ["consumerSecret"])
    key, secret = current.consumer_key or credentials.new_consumer_key(), current.consumer_secret
    if as_bool(text(definition, "shouldRotateConsumerKey")):
        key = credentials.new_consumer_key()
    if as_bool(text(definition, "shouldRotateConsumerSecret")) or not secret:
        secret = credentials.new_consumer_secret()
    return key, secret


def _satellite(type_name: str, check: Callable[[Store, Node], None]) -> MetadataType:
    def save(store: Store, full_name: str, definition: Node, current: Component | None) -> None:
        parent = _owner(store, type_name, full_name, definition)
        check(store, definition)
        key = secret = None
        if type_name == GLOBAL_OAUTH:
            check_certificate(text(definition, "certificate"), "certificate")
            key, secret = _global_keys(store, definition, current)
        kept = {name: values for name, values in _stored(definition).items()
                if name not in ("consumerKey", "consumerSecret")}
        for flag in ("shouldRotateConsumerKey", "shouldRotateConsumerSecret"):
            if flag in kept:  # a rotation happens once, not on every later save of what was read back
                kept[flag] = ["false"]
        name, created = (current.full_name, current.created_date) if current else (full_name, "")
        store.save_component(Component(type_name, name, kept, key, secret, None, parent, created))

    return MetadataType(
        type_name, _FILES[type_name][0], _FILES[type_name][1],
        create=lambda store, full_name, definition: save(store, full_name, definition, None),
        update=lambda store, current, definition: save(store, current.full_name, definition, current),
        delete=lambda store, current: store.delete_component(type_name, current.full_name),
        read=read_component, rank=1)


def _no_check(store: Store, definition: Node) -> None:
    """ExtlClntAppGlobalOauthSettings has no checks beyond the certificate and keys done in save."""


_FILES = {
    APP: ("externalClientApps", "eca"),
    OAUTH_SETTINGS: ("extlClntAppOauthSettings", "ecaOauth"),
    GLOBAL_OAUTH: ("extlClntAppGlobalOauthSets", "ecaGlblOauth"),
    OAUTH_POLICIES: ("extlClntAppOauthPolicies", "ecaOauthPlcy"),
    POLICIES: ("extlClntAppPolicies", "ecaPlcy"),
}

TYPES = (
    MetadataType(APP, *_FILES[APP], create_app, update_app, delete_app, read_component),
    _satellite(OAUTH_SETTINGS, _check_oauth_settings),
    _satellite(GLOBAL_OAUTH, _no_check),
    _satellite(OAUTH_POLICIES, _check_oauth_policies),
    _satellite(POLICIES, _check_policies),
)


def oauth_app(store: Store, component: Component) -> OAuthApp | None:
    """The app behind a global OAuth settings component (found by consumer key), with its policies."""
    app = store.component(APP, component.parent or "")
    if app is None:
        return None
    settings = next(iter(store.components(OAUTH_SETTINGS, parent=app.full_name)), None)
    policies = next(iter(store.components(OAUTH_POLICIES, parent=app.full_name)), None)
    policy = policies.definition if policies else {}
    scopes = text(settings.definition if settings else {}, "commaSeparatedOauthScopes")
    return OAuthApp(
        kind=APP, full_name=app.full_name, entity_id=app.sobject_id or "",
        certificate=text(component.definition, "certificate"),
        scopes=wire_scopes(comma_list(scopes)),
        admin_approved=text(policy, "permittedUsersPolicyType") == ADMIN_APPROVED,
        profiles=tuple(comma_list(text(policy, "commaSeparatedProfile"))),
        permission_sets=tuple(comma_list(text(policy, "commaSeparatedPermissionSet"))))


def permission_set_ids(store: Store, values: tuple[str, ...]) -> set[str]:
    """Ids of the permission sets an ECA policy names (by Id or API name)."""
    return {found["Id"] for value in values if (found := _permission_set(store, value)) is not None}
