"""The ConnectedApp metadata type: checks, consumer key rules, and pre-authorization as SetupEntityAccess.

Each ConnectedApp has a read-only ``ConnectedApplication`` sObject row (its Id is what
SetupEntityAccess rows point at). Pre-authorized profiles and permission sets are stored only as
SetupEntityAccess rows, so the Metadata API (profileName / permissionSetName) and REST
(SetupEntityAccess create/delete) see and change the same grants. Grants are taken only with
``isAdminApproved`` true [D]; a read names permission sets by API name or by label, as the org's
``permission_set_read_as`` setting says [U], and answers scopes normalised [D].
"""

from __future__ import annotations

from runbook.localorg.model import credentials
from runbook.localorg.model.components import (
    MetadataType,
    OAuthApp,
    SaveError,
    as_bool,
    check_certificate,
    check_consumer_key,
    check_consumer_secret,
    check_scopes,
    child,
    missing,
    not_found,
    read_scopes,
    text,
    texts,
    wire_scopes,
)
from runbook.localorg.model.store import Component, Node, Store

TYPE = "ConnectedApp"
ENTITY = "ConnectedApplication"

# [D] Salesforce's banner (metadata-connectedapp doc, Spring '26). [U] The status code and the use of this
# text as the save error: the real refusal's wording is not published.
RESTRICTED_CODE = "INSUFFICIENT_ACCESS"
RESTRICTED_MESSAGE = (
    "Connected apps creation is restricted as of Spring '26. You can use existing connected apps during and "
    "after Spring '26. However, we recommend using external client apps instead. If you must continue "
    "creating connected apps, contact Salesforce Support.")
_GRANT_FIELDS = ("profileName", "permissionSetName")
# [D] profileName / permissionSetName: "To use this field, the isAdminApproved field on the
# ConnectedAppOauthConfig subtype must be set to true." The status code is an [U] choice.
_NEEDS_ADMIN_APPROVAL = ("To use this field, the isAdminApproved field on the ConnectedAppOauthConfig subtype "
                         "must be set to true.")
# [U] Whether a read names a pre-authorized permission set by API name or by label is not known (Salesforce's
# own ready-to-fly deploys the label): the setting picks one, so callers can be tested under both.
PERMISSION_SET_READ_AS = ("name", "label")


def _check(definition: Node) -> None:
    problems = missing(definition, ("contactEmail", "label"))
    oauth = child(definition, "oauthConfig")
    if oauth is not None:
        problems += missing(oauth, ("callbackUrl",), "oauthConfig.")
    if problems:
        raise SaveError.of(problems)
    if oauth is not None:
        check_certificate(text(oauth, "certificate"), "oauthConfig.certificate")
        check_scopes(texts(oauth, "scopes"), "oauthConfig.scopes")


def _with_policy_defaults(definition: Node) -> Node:
    """Fill oauthPolicy's required ipRelaxation / refreshTokenPolicy when a deployed file leaves them out."""
    policy = child(definition, "oauthPolicy")
    if policy is not None:
        policy.setdefault("ipRelaxation", ["ENFORCE"])
        policy.setdefault("refreshTokenPolicy", ["infinite"])
    return definition


def _stored(definition: Node) -> Node:
    """The definition as kept: no consumer key/secret (kept beside it) and no grants (kept as rows)."""
    kept = {name: values for name, values in definition.items() if name not in (*_GRANT_FIELDS, "fullName")}
    oauth = child(kept, "oauthConfig")
    if oauth is not None:
        kept["oauthConfig"] = [{name: values for name, values in oauth.items()
                                if name not in ("consumerKey", "consumerSecret")}]
    return kept


def _entity_fields(definition: Node) -> dict[str, object]:
    oauth, policy = child(definition, "oauthConfig"), child(definition, "oauthPolicy")
    refresh = (text(policy, "refreshTokenPolicy") or "").split(":")
    period = int(refresh[1]) if len(refresh) == 3 and refresh[1].isdigit() else None
    return {"Name": text(definition, "label"),
            "OptionsAllowAdminApprovedUsersOnly": as_bool(text(oauth, "isAdminApproved")),
            "OptionsRefreshTokenValidityMetric": refresh[0] == "specific_inactivity",
            "RefreshTokenValidityPeriod": period, "StartUrl": text(definition, "startUrl"),
            "MobileStartUrl": text(definition, "mobileStartUrl")}


def _grant_parents(store: Store, definition: Node) -> list[str] | None:
    """PermissionSet Ids named by profileName / permissionSetName; None when the payload names none.

    Names or labels are accepted; an empty element contributes nothing, so ``<profileName/>`` alone
    removes every grant [D]. Leaving the rows alone when neither element is present is an [U] choice.
    """
    if not any(name in definition for name in _GRANT_FIELDS):
        return None
    _check_admin_approved(definition)
    parents, problems = [], []
    for name in filter(str.strip, texts(definition, "profileName")):
        profile = store.find("Profile", Name=name.strip())
        owned = (store.find("PermissionSet", ProfileId=profile[0]["Id"], IsOwnedByProfile=True)
                 if profile else [])
        if owned:
            parents.append(owned[0]["Id"])
        else:
            problems += not_found("Profile", name, "profileName").problems
    for name in filter(str.strip, texts(definition, "permissionSetName")):
        found = (store.find("PermissionSet", Name=name.strip(), IsOwnedByProfile=False)
                 or store.find("PermissionSet", Label=name.strip(), IsOwnedByProfile=False))
        if found:
            parents.append(found[0]["Id"])
        else:
            problems += not_found("PermissionSet", name, "permissionSetName").problems
    if problems:
        raise SaveError.of(problems)
    return list(dict.fromkeys(parents))


def _check_admin_approved(definition: Node) -> None:
    """Refuse named grants on a self-authorize app; empty elements (``<profileName/>``) name none and pass."""
    if as_bool(text(child(definition, "oauthConfig"), "isAdminApproved")):
        return
    named = [name for name in _GRANT_FIELDS if any(value.strip() for value in texts(definition, name))]
    if named:
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", f"{named[0]}: {_NEEDS_ADMIN_APPROVAL}", named)


def set_grants(store: Store, entity_id: str, entity_type: str, parents: list[str]) -> None:
    """Make the app's SetupEntityAccess rows exactly ``parents``."""
    have = {row["ParentId"]: row["Id"] for row in store.find("SetupEntityAccess", SetupEntityId=entity_id)}
    for parent, row_id in have.items():
        if parent not in parents:
            store.delete("SetupEntityAccess", Id=row_id)
    for parent in parents:
        if parent not in have:
            store.insert("SetupEntityAccess", {"ParentId": parent, "SetupEntityId": entity_id,
                                               "SetupEntityType": entity_type})


def create(store: Store, full_name: str, definition: Node) -> None:
    if not store.get_setting("allow_connected_apps", True):
        raise SaveError(RESTRICTED_CODE, RESTRICTED_MESSAGE)
    _check(definition)
    parents = _grant_parents(store, definition)
    oauth = child(definition, "oauthConfig")
    key = secret = None
    if oauth is not None:
        key, secret = text(oauth, "consumerKey"), text(oauth, "consumerSecret")
        if key is not None:
            check_consumer_key(store, key, "oauthConfig.consumerKey")
        if secret is not None:
            check_consumer_secret(store, secret, "oauthConfig.consumerSecret")
        key, secret = key or credentials.new_consumer_key(), secret or credentials.new_consumer_secret()
    definition = _with_policy_defaults(definition)
    entity_id = store.insert(ENTITY, _entity_fields(definition))
    store.save_component(Component(TYPE, full_name, _stored(definition), key, secret, entity_id))
    set_grants(store, entity_id, ENTITY, parents or [])


def update(store: Store, current: Component, definition: Node) -> None:
    """Replace the definition; the consumer key and secret stay (sending either is refused)."""
    oauth = child(definition, "oauthConfig")
    if text(oauth, "consumerKey") is not None:  # [D] set only at creation; [O] wording, ready-to-fly#29
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "You cannot provide a Consumer Key",
                        ["oauthConfig.consumerKey"])
    if text(oauth, "consumerSecret") is not None:  # [U] mirrors the consumer key rule
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "You cannot provide a Consumer Secret",
                        ["oauthConfig.consumerSecret"])
    _check(definition)
    parents = _grant_parents(store, definition)
    key, secret = current.consumer_key, current.consumer_secret
    if oauth is not None and key is None:  # OAuth switched on by this update: the org makes the key now
        key, secret = credentials.new_consumer_key(), credentials.new_consumer_secret()
    definition = _with_policy_defaults(definition)
    store.update(ENTITY, current.sobject_id or "", _entity_fields(definition))
    store.save_component(Component(TYPE, current.full_name, _stored(definition), key if oauth else None,
                                   secret if oauth else None, current.sobject_id, None, current.created_date))
    if parents is not None:
        set_grants(store, current.sobject_id or "", ENTITY, parents)


def delete(store: Store, current: Component) -> None:
    """Remove the app with its ConnectedApplication row, grants, approvals and sessions."""
    entity_id = current.sobject_id or ""
    store.delete("SetupEntityAccess", SetupEntityId=entity_id)
    store.delete(ENTITY, Id=entity_id)
    store.forget_approvals(entity_id)
    store.revoke_tokens(entity_id)
    store.delete_component(TYPE, current.full_name)


def _grant_names(store: Store, entity_id: str) -> tuple[list[str], list[str]]:
    """The app's pre-authorized profile names and permission sets (by the org's ``permission_set_read_as``)."""
    set_field = "Label" if store.get_setting("permission_set_read_as", "name") == "label" else "Name"
    profiles, sets = [], []
    for row in store.find("SetupEntityAccess", SetupEntityId=entity_id):
        permission_set = store.get("PermissionSet", row["ParentId"])
        if permission_set is None:
            continue
        if permission_set["IsOwnedByProfile"]:
            profile = store.get("Profile", permission_set["ProfileId"])
            profiles += [profile["Name"]] if profile else []
        else:
            sets.append(permission_set[set_field])
    return sorted(profiles), sorted(sets)


def read(store: Store, current: Component) -> Node:
    """The app as readMetadata and retrieve return it: consumer key shown, secret never ([D] §1.4), scopes
    normalised, grants from SetupEntityAccess."""
    definition: Node = {"fullName": [current.full_name], **current.definition}
    oauth = child(definition, "oauthConfig")
    if oauth is not None:
        shown = {**oauth, "scopes": read_scopes(texts(oauth, "scopes"))} if "scopes" in oauth else dict(oauth)
        if current.consumer_key:
            shown["consumerKey"] = [current.consumer_key]
        definition["oauthConfig"] = [shown]
    profiles, sets = _grant_names(store, current.sobject_id or "")
    if profiles:
        definition["profileName"] = list(profiles)
    if sets:
        definition["permissionSetName"] = list(sets)
    return definition


def oauth_app(store: Store, component: Component) -> OAuthApp:
    oauth = child(component.definition, "oauthConfig")
    return OAuthApp(kind=ENTITY, full_name=component.full_name, entity_id=component.sobject_id or "",
                    certificate=text(oauth, "certificate"), scopes=wire_scopes(texts(oauth, "scopes")),
                    admin_approved=as_bool(text(oauth, "isAdminApproved")))


CONNECTED_APP = MetadataType(TYPE, "connectedApps", "connectedApp", create, update, delete, read)
