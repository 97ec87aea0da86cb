"""The five External Client App metadata types: the app, and its settings and policies components.

``ExternalClientApplication`` is the app (with an ``ExternalClientApplication`` sObject row); the
four others each name their app in ``externalClientApplication``, one of each type per app:
``ExtlClntAppOauthSettings`` (scopes), ``ExtlClntAppGlobalOauthSettings`` (callback, certificate,
consumer key and secret; its OAuth consumer has an ``888…`` id, which Connect REST names),
``ExtlClntAppOauthConfigurablePolicies`` (permitted users, pre-authorized profiles and permission
sets) and ``ExtlClntAppConfigurablePolicies`` (enabled, plugins).

What the org enforces, with its sources:

- Every write of these types needs the org's "Opt in to External Client Apps" [D Metadata API
  ExternalClientApplication, "Special Access Rules"]: the org setting ``external_client_apps``, also
  ``ExternalClientAppSettings.enableExternalClientApps`` [D API 58.0-; gone from the 260.0 docs]. Off,
  a write fails with ``FUNCTIONALITY_NOT_ENABLED`` and ``OPT_IN_MESSAGE`` ([U] the code and wording).
- A second component of a type for one app is refused: "duplicate value found:
  ExternalClientApplicationId duplicates value on <its fullName>" ([O] a live deploy of a second OAuth
  policies component, 2026-07-14; [U] for the other three types).
- Global OAuth settings need the app's OAuth settings first: "The external client app configured in
  your global OAuth Settings doesn't have a valid OAuth settings configuration." [O].
- Saving an app's OAuth settings when it has no OAuth policies makes the org generate one
  (``ensure_oauth_policies``, called once per call or deploy by ``metadata``): "The OAuth Policies file
  is generated when you deploy" [O real-orgs §3]. Its name ``<App>_oauthPlcy`` is [O] (the live
  duplicate error above; Electivus deploys that name); another script saw ``<App>_defaultPolicy`` [O],
  so a tool should find it by listMetadata, not guess. Its fields are the defaults an org showed on
  retrieve [O]: AllSelfAuthorized, Enforce, SpecificLifetime 365 Days, STANDARD session level.
- A read answers the scopes normalised (``Api, Web, OfflineAccess`` reads back as ``Api, Web,
  RefreshToken``) [D], joined with ", " [U]; the consumer key, unless the org setting
  ``eca_consumer_key_in_retrieve`` is off (then neither readMetadata nor retrieve shows it, as in an
  org that does not expose it); the consumer secret never ([O] a real retrieve may include it).

[U] choices, in the spirit of the ConnectedApp rules: a settings component naming an unknown app, or
a changed consumer key or secret on update, is refused; deleting the app deletes its settings and
policies components too.
"""

from __future__ import annotations

from collections.abc import Callable

from runbook.localorg.model import credentials, ids
from runbook.localorg.model.components import (
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
from runbook.localorg.model.store import Component, Node, Store

APP = "ExternalClientApplication"
OAUTH_SETTINGS = "ExtlClntAppOauthSettings"
GLOBAL_OAUTH = "ExtlClntAppGlobalOauthSettings"
OAUTH_POLICIES = "ExtlClntAppOauthConfigurablePolicies"
POLICIES = "ExtlClntAppConfigurablePolicies"
SATELLITES = (OAUTH_SETTINGS, GLOBAL_OAUTH, OAUTH_POLICIES, POLICIES)
ADMIN_APPROVED = "AdminApprovedPreAuthorized"
_PERMITTED = ("AllSelfAuthorized", ADMIN_APPROVED)

# Org settings (store keys) this module reads.
OPT_IN_SETTING = "external_client_apps"
KEY_IN_RETRIEVE_SETTING = "eca_consumer_key_in_retrieve"
# [U] Salesforce's refusal without the opt-in is not published; this code and text are the local org's,
# distinct from every other refusal, so a tool can tell it apart ("Opt in to External Client Apps").
OPT_IN_CODE = "FUNCTIONALITY_NOT_ENABLED"
OPT_IN_MESSAGE = ("Opt in to External Client Apps is not enabled for this org. Turn it on in Setup, External "
                  "Client App Settings, and try again.")
GENERATED_POLICIES_SUFFIX = "_oauthPlcy"
# [O] the fields an org answered for the OAuth policies it generated
_GENERATED_POLICIES: Node = {
    "ipRelaxationPolicyType": ["Enforce"], "isClientCredentialsFlowEnabled": ["false"],
    "isGuestCodeCredFlowEnabled": ["false"], "isTokenExchangeFlowEnabled": ["false"],
    "permittedUsersPolicyType": ["AllSelfAuthorized"], "refreshTokenPolicyType": ["SpecificLifetime"],
    "refreshTokenValidityPeriod": ["365"], "refreshTokenValidityUnit": ["Days"],
    "requiredSessionLevel": ["STANDARD"]}


def comma_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _require_opt_in(store: Store) -> None:
    if not store.get_setting(OPT_IN_SETTING, True):
        raise SaveError(OPT_IN_CODE, OPT_IN_MESSAGE)


def _opted_in(save: Callable[..., None]) -> Callable[..., None]:
    """``save`` (a create, update or delete), refused while the org has not opted in."""
    def guarded(store: Store, *args: object) -> None:
        _require_opt_in(store)
        save(store, *args)
    return guarded


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
    """The component as readMetadata and retrieve return it (see the module docstring for what shows)."""
    definition: Node = {"fullName": [current.full_name], **current.definition}
    if current.consumer_key and store.get_setting(KEY_IN_RETRIEVE_SETTING, True):
        definition["consumerKey"] = [current.consumer_key]
    scopes = text(definition, "commaSeparatedOauthScopes")
    if current.type == OAUTH_SETTINGS and scopes is not None:
        definition["commaSeparatedOauthScopes"] = [", ".join(read_scopes(comma_list(scopes)))]
    return definition


# --- settings and policies ------------------------------------------------------------------------

def _owner(store: Store, type_name: str, full_name: str, definition: Node) -> Component:
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
        raise SaveError("DUPLICATE_VALUE", "duplicate value found: ExternalClientApplicationId duplicates value "
                        f"on {others[0].full_name}", ["externalClientApplication"])
    return app


def _check_oauth_settings(store: Store, app: Component, definition: Node) -> None:
    check_scopes(comma_list(text(definition, "commaSeparatedOauthScopes")), "commaSeparatedOauthScopes")


def _check_global_oauth(store: Store, app: Component, definition: Node) -> None:
    if not store.components(OAUTH_SETTINGS, parent=app.full_name):
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "The external client app configured in your global OAuth "
                        "Settings doesn't have a valid OAuth settings configuration.", ["externalClientApplication"])
    check_certificate(text(definition, "certificate"), "certificate")


def _check_oauth_policies(store: Store, app: Component, definition: Node) -> None:
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


def _check_policies(store: Store, app: Component, definition: Node) -> None:
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


def _satellite(type_name: str, check: Callable[[Store, Component, Node], None], rank: int) -> MetadataType:
    def save(store: Store, full_name: str, definition: Node, current: Component | None) -> None:
        app = _owner(store, type_name, full_name, definition)
        check(store, app, definition)
        key = secret = consumer_id = None
        if type_name == GLOBAL_OAUTH:
            key, secret = _global_keys(store, definition, current)
            consumer_id = (current.sobject_id if current else None) or store.new_id("OauthConsumer")
        kept = {name: values for name, values in _stored(definition).items()
                if name not in ("consumerKey", "consumerSecret")}
        for flag in ("shouldRotateConsumerKey", "shouldRotateConsumerSecret"):
            if flag in kept:  # a rotation happens once, not on every later save of what was read back
                kept[flag] = ["false"]
        name, created = (current.full_name, current.created_date) if current else (full_name, "")
        store.save_component(Component(type_name, name, kept, key, secret, consumer_id, app.full_name, created))

    return MetadataType(
        type_name, _FILES[type_name][0], _FILES[type_name][1],
        create=_opted_in(lambda store, full_name, definition: save(store, full_name, definition, None)),
        update=_opted_in(lambda store, current, definition: save(store, current.full_name, definition, current)),
        delete=_opted_in(lambda store, current: store.delete_component(type_name, current.full_name)),
        read=read_component, rank=rank)


def ensure_oauth_policies(store: Store, app_name: str) -> str | None:
    """Generate the OAuth policies an app with OAuth settings and no policies gets; the new fullName, or None.

    [U] Nothing is generated when ``<App>_oauthPlcy`` is taken (by another app's policies).
    """
    app = store.component(APP, app_name)
    if (app is None or not store.components(OAUTH_SETTINGS, parent=app.full_name)
            or store.components(OAUTH_POLICIES, parent=app.full_name)):
        return None
    full_name = app.full_name + GENERATED_POLICIES_SUFFIX
    if store.component(OAUTH_POLICIES, full_name) is not None:
        return None
    definition = {"externalClientApplication": [app.full_name], "label": [full_name], **_GENERATED_POLICIES}
    store.save_component(Component(OAUTH_POLICIES, full_name, definition, parent=app.full_name))
    return full_name


_FILES = {
    APP: ("externalClientApps", "eca"),
    OAUTH_SETTINGS: ("extlClntAppOauthSettings", "ecaOauth"),
    GLOBAL_OAUTH: ("extlClntAppGlobalOauthSets", "ecaGlblOauth"),
    OAUTH_POLICIES: ("extlClntAppOauthPolicies", "ecaOauthPlcy"),
    POLICIES: ("extlClntAppPolicies", "ecaPlcy"),
}

# Deploy order within one deploy: the app, its OAuth settings, the global settings that need them, policies.
TYPES = (
    MetadataType(APP, *_FILES[APP], _opted_in(create_app), _opted_in(update_app), _opted_in(delete_app),
                 read_component, rank=1),
    _satellite(OAUTH_SETTINGS, _check_oauth_settings, rank=2),
    _satellite(GLOBAL_OAUTH, _check_global_oauth, rank=3),
    _satellite(OAUTH_POLICIES, _check_oauth_policies, rank=4),
    _satellite(POLICIES, _check_policies, rank=4),
)


def _app_satellite(store: Store, type_name: str, app_name: str) -> Node:
    found = next(iter(store.components(type_name, parent=app_name)), None)
    return found.definition if found else {}


def oauth_app(store: Store, component: Component) -> OAuthApp | None:
    """The app behind a global OAuth settings component (found by consumer key), with its policies.

    [D] ExtlClntAppConfigurablePolicies: ``isEnabled`` "The default value is true"; without that
    component, or without ``isOauthPluginEnabled``, the app and its OAuth plugin count as enabled.
    """
    app = store.component(APP, component.parent or "")
    if app is None:
        return None
    policy = _app_satellite(store, OAUTH_POLICIES, app.full_name)
    plugins = _app_satellite(store, POLICIES, app.full_name)
    scopes = text(_app_satellite(store, OAUTH_SETTINGS, app.full_name), "commaSeparatedOauthScopes")
    return OAuthApp(
        kind=APP, full_name=app.full_name, entity_id=app.sobject_id or "",
        certificate=text(component.definition, "certificate"),
        scopes=wire_scopes(comma_list(scopes)),
        admin_approved=text(policy, "permittedUsersPolicyType") == ADMIN_APPROVED,
        profiles=tuple(comma_list(text(policy, "commaSeparatedProfile"))),
        permission_sets=tuple(comma_list(text(policy, "commaSeparatedPermissionSet"))),
        enabled=as_bool(text(plugins, "isEnabled"), default=True),
        oauth_plugin_enabled=as_bool(text(plugins, "isOauthPluginEnabled"), default=True))


def consumer(store: Store, app_id: str) -> Component | None:
    """The global OAuth settings (the OAuth consumer) of the app whose ExternalClientApplication Id is given."""
    row = store.get(APP, app_id)
    return next(iter(store.components(GLOBAL_OAUTH, parent=row["DeveloperName"])), None) if row else None


def permission_set_ids(store: Store, values: tuple[str, ...]) -> set[str]:
    """Ids of the permission sets an ECA policy names (by Id or API name)."""
    return {found["Id"] for value in values if (found := _permission_set(store, value)) is not None}
