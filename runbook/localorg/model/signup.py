"""A scratch org signup, as a Dev Hub runs one: the ScratchOrgInfo insert's checks, the outcome, the new org.

The wire sequence and its sources are in ``shared/reference/scratch-org-wire.md`` (§n below).

At the insert (the error comes back from the POST, 400):
- fields as for any insert: unknown ones INVALID_FIELD, read-only ones INVALID_FIELD_FOR_INSERT_UPDATE, and
  ``ConnectedAppConsumerKey`` and ``ConnectedAppCallbackUrl`` both required [D "Required"; O cli#3515: the key
  alone is ``REQUIRED_FIELD_MISSING [ConnectedAppCallbackUrl]``]; ``Edition`` (or a ``Snapshot`` or
  ``SourceOrg``) too [U];
- picklists (Edition, Release) take their values in any case and keep Salesforce's spelling [U]; a wrong
  one is INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST "bad value for restricted picklist field: …" [O];
  ``DurationDays`` 1 to 30 [V the CLI's own check; U the server's wording], 7 when left out [D];
- the callback must be one the signup's connected app has: [O sfdx-travisci#12, MetaCI#868] a custom
  app whose callback is not the CLI's ``http://localhost:1717/OauthRedirect`` fails ``org create`` with
  "The callback URL provided is not valid." ([U] the code, and that PlatformCLI takes only 1717);
- the daily and active allocations (``limits``).

Then the signup itself, off the request thread: Status ``New`` → ``Creating`` → ``Active`` or ``Error``
with an ``ErrorCode`` (§1.5), polled by the CLI every second:
- C-1016 when Proxy Signup cannot install the app named by ``ConnectedAppConsumerKey`` in the new org:
  an External Client App's key [O cli#3515, PR sfdx-core#1315: "ECAs cannot be replicated by Proxy
  Signup"], a key no connected app of the hub has, or an app whose certificate has expired [D the
  C-1016 text: "valid consumer key, callback URL, and unexpired certificate"]. ``PlatformCLI``, the CLI's
  own app, is in every org, so it always works [O cli#3515 workaround];
- C-1007 for a ``Username`` already taken [V scratchOrgErrorCodes.md], S-1006 for an ``AdminEmail`` that is
  no email address, S-2006 for a ``Country`` that is no two-letter upper-case code, S-1017 for any
  ``Namespace`` (no namespace is linked to the local Dev Hub), T-0002 for a ``Snapshot`` and SH-0002 for a
  ``SourceOrg`` (neither exists here) [V the CLI's texts; U that the signup, not the insert, reports them].

The new org (a ``LocalOrg`` of its own, seeded by ``seed_scratch_org``) is a Developer Edition-like
scratch org: ``IsSandbox`` true and a ``TrialExpirationDate`` (the CLI reads that pair as "scratch"
[V]), the five profiles, one user, the admin ``SignupUsername`` (``test-<12 characters>@example.com``
like real ones [O], or the requested ``Username``), with no password. Proxy Signup "approved
automatically" the signup's connected app for it [D ConnectedAppConsumerKey]: the hub's connected app
is installed with its consumer key, secret, certificate, callbacks and scopes, so a JWT signed with the
hub app's key logs the admin in (§1.6a), and Salesforce's own ``PlatformCLI`` is there in every org.
[U] The copy is self-authorized with the admin's approval recorded, not the hub's pre-authorization. An
``AuthCode`` for the auth-code exchange (§1.6b, c) is issued only when the app has no certificate [D
AuthCode: "when the specified connected app hasn't been configured with an X.509 certificate"].
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.localorg.model import connected_apps, credentials, ids, limits, records, seed
from runbook.localorg.model.components import child, load_certificate, text, texts
from runbook.localorg.model.context import CLOCK_OFFSET_SETTING, Session
from runbook.localorg.model.records import RecordError
from runbook.localorg.model.schema import BOOLEAN, INT, PICKLIST, SOBJECTS
from runbook.localorg.model.store import Component, Store

SCHEMA = SOBJECTS["ScratchOrgInfo"]
PLATFORM_CLI = "PlatformCLI"
CLI_CALLBACK = "http://localhost:1717/OauthRedirect"
CALLBACK_NOT_VALID = "The callback URL provided is not valid."
DEFAULT_DURATION_DAYS = 7
# Where the scratch org is: [V getOrgInstanceAuthority] a SignupInstance not ending in "s" sends the CLI to
# https://<instance>.salesforce.com; real scratch instances end in S (e.g. USA784S) [O].
SIGNUP_INSTANCE = "LOCAL1S"
# the store setting saying a state is a scratch org's (of which hub, from which ScratchOrgInfo)
SCRATCH_SETTING = "scratch_org"
# [D] ScratchOrgInfo.Edition; [U] the OrganizationType each becomes (Group Edition orgs say "Team Edition")
EDITIONS = {"Developer": "Developer Edition", "Enterprise": "Enterprise Edition", "Group": "Team Edition",
            "Professional": "Professional Edition", "Partner Developer": "Developer Edition",
            "Partner Enterprise": "Enterprise Edition", "Partner Group": "Team Edition",
            "Partner Professional": "Professional Edition"}
RELEASES = ("Current", "Previous", "Preview")
_PICKLISTS = {"Edition": tuple(EDITIONS), "Release": RELEASES}
_USERNAME_CHARS = string.ascii_lowercase + string.digits
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # [U] how strict Salesforce's check is
_COUNTRY = re.compile(r"[A-Z]{2}")  # [D] Country: "The two-character, upper-case ISO-3166 country code"
_PLATFORM_CLI_APP = {  # the CLI's built-in app: no secret, no certificate, the CLI's callback [O]
    "label": ["Salesforce CLI"], "contactEmail": ["noreply@salesforce.com"],
    "oauthConfig": [{"callbackUrl": [CLI_CALLBACK], "consumerKey": [PLATFORM_CLI],
                     "scopes": ["Api", "Web", "RefreshToken"], "isAdminApproved": ["false"],
                     "isConsumerSecretOptional": ["true"]}]}


def org_now(store: Store) -> datetime:
    """The org's time: its own clock (``LocalOrg.advance_clock`` moves it), which days and expiry follow."""
    return datetime.fromtimestamp(store.clock(CLOCK_OFFSET_SETTING), UTC)


def stamped(store: Store) -> dict[str, str]:
    """A new record's audit dates, on the org's clock."""
    now = org_now(store).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return {"CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now}


# --- the insert -----------------------------------------------------------------------------------

def checked_request(store: Store, session: Session, data: dict[str, Any]) -> dict[str, Any]:
    """The ScratchOrgInfo row a signup request makes, before its Id; raises RecordError as the insert is refused."""
    values = {name: _typed(name, value) for name, value in records.check_fields(SCHEMA, data).items()}
    if not any(values.get(name) for name in ("Edition", "Snapshot", "SourceOrg")):
        raise RecordError("REQUIRED_FIELD_MISSING", "Required fields are missing: [Edition]", ["Edition"])
    days = values.get("DurationDays")
    if days is not None and not 1 <= days <= 30:  # [U] wording
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", "DurationDays: the duration must be 1 to 30 days.",
                          ["DurationDays"])
    _check_callback(store, values["ConnectedAppConsumerKey"], values["ConnectedAppCallbackUrl"])
    limits.check_signup(store)
    user = session.user
    username = (values.get("Username") or "").lower() or None
    given = {name: value for name, value in values.items() if value is not None}
    return {"DurationDays": DEFAULT_DURATION_DAYS, "HasSampleData": False, **given, "Username": username,
            "OwnerId": user["Id"], "CreatedById": user["Id"], "LastModifiedById": user["Id"],
            "IsDeleted": False, "Status": "New",
            "SignupEmail": values.get("AdminEmail") or user["Email"], **stamped(store)}


def _typed(name: str, value: Any) -> Any:
    """A field's value as its type takes it; refuses values JSON cannot give that type [U wording]."""
    field = SCHEMA.field(name)
    if value is None:
        return None
    if field.type == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of int from {value!r}", [name])
        return value
    if field.type == BOOLEAN:
        if not isinstance(value, bool):
            raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of boolean from {value!r}", [name])
        return value
    if isinstance(value, dict | list):
        raise RecordError("JSON_PARSER_ERROR", f"Cannot deserialize instance of string from {value!r}", [name])
    value = str(value)
    if field.type == PICKLIST and name in _PICKLISTS:
        canonical = {choice.lower(): choice for choice in _PICKLISTS[name]}.get(value.lower())
        if canonical is None:
            raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                              f"bad value for restricted picklist field: {value}", [name])
        return canonical
    return value


def _check_callback(store: Store, consumer_key: str, callback: str) -> None:
    """The callback must be one of the app's; a key the signup cannot install is the signup's to refuse."""
    if consumer_key == PLATFORM_CLI:
        allowed: list[str] = [CLI_CALLBACK]
    else:
        app = store.component_by_consumer_key(consumer_key)
        if app is None or app.type != connected_apps.TYPE:
            return
        allowed = callbacks(app)
    if callback not in allowed:
        raise RecordError("FIELD_INTEGRITY_EXCEPTION", CALLBACK_NOT_VALID, ["ConnectedAppCallbackUrl"])


def callbacks(app: Component) -> list[str]:
    """A connected app's callback URLs (one ``callbackUrl`` holds them a line each)."""
    oauth = child(app.definition, "oauthConfig")
    return [url.strip() for value in texts(oauth, "callbackUrl") for url in value.splitlines() if url.strip()]


def next_name(store: Store, sobject: str) -> str:
    """The next auto number (``Name``) of ``sobject``'s records: 00000001, 00000002, ... (never reused)."""
    with store.transaction():
        number = int(store.get_setting(f"autonumber:{sobject}", 0)) + 1
        store.set_setting(f"autonumber:{sobject}", number)
    return f"{number:08d}"


# --- the signup -----------------------------------------------------------------------------------

def failure(store: Store, record: dict[str, Any]) -> str | None:
    """The ErrorCode the signup of ``record`` ends with, or None when it succeeds."""
    key = record["ConnectedAppConsumerKey"]
    if key != PLATFORM_CLI:
        app = store.component_by_consumer_key(key)
        if app is None or app.type != connected_apps.TYPE or _certificate_expired(app):
            return "C-1016"
    if record["AdminEmail"] and not _EMAIL.fullmatch(record["AdminEmail"]):
        return "S-1006"
    if record["Country"] and not _COUNTRY.fullmatch(record["Country"]):
        return "S-2006"
    if record["Namespace"]:
        return "S-1017"
    if record["Snapshot"]:
        return "T-0002"
    if record["SourceOrg"]:
        return "SH-0002"
    if record["Username"] and records.username_taken(store, record["Username"]):
        return "C-1007"
    return None


def _certificate_expired(app: Component) -> bool:
    pem = text(child(app.definition, "oauthConfig"), "certificate")
    if not pem:
        return False
    try:
        return load_certificate(pem).not_valid_after_utc < datetime.now(UTC)
    except ValueError:
        return True


@dataclass
class NewScratchOrg:
    """What a successful signup makes: the new org's identity and the app Proxy Signup installs in it."""

    info_id: str
    hub_org_id: str
    org_id: str
    username: str
    email: str
    org_name: str
    edition: str
    trial_expiration: datetime
    consumer_key: str
    callback_url: str
    app: Component | None  # the hub's connected app to install; None: PlatformCLI, which every org has

    @property
    def expiration_date(self) -> str:
        return self.trial_expiration.date().isoformat()

    @property
    def needs_auth_code(self) -> bool:
        """[D] AuthCode is for an app without an X.509 certificate (the auth-code exchange, not JWT)."""
        return self.app is None or not text(child(self.app.definition, "oauthConfig"), "certificate")


def plan(store: Store, record: dict[str, Any], hub_org_id: str) -> NewScratchOrg:
    """The scratch org a successful signup of ``record`` makes (a fresh org id and, unless asked, username)."""
    key = record["ConnectedAppConsumerKey"]
    username = record["Username"] or _new_username(store)
    return NewScratchOrg(
        info_id=record["Id"], hub_org_id=hub_org_id, org_id=ids.random_org_id(), username=username,
        email=record["SignupEmail"], org_name=record["OrgName"] or "Company", edition=record["Edition"] or "Developer",
        trial_expiration=org_now(store) + timedelta(days=record["DurationDays"] or DEFAULT_DURATION_DAYS),
        consumer_key=key, callback_url=record["ConnectedAppCallbackUrl"],
        app=None if key == PLATFORM_CLI else store.component_by_consumer_key(key))


def _new_username(store: Store) -> str:
    while True:
        username = "test-" + "".join(secrets.choice(_USERNAME_CHARS) for _ in range(12)) + "@example.com"
        if not records.username_taken(store, username):
            return username


def seed_scratch_org(new: NewScratchOrg, store: Store) -> str:
    """Seed a fresh scratch org state (``LocalOrg(seed=...)``): organization, profiles, admin, apps; its org id."""
    with store.transaction():
        store.set_setting("org_id", new.org_id)
        store.set_setting("org_secret", credentials.new_org_secret())
        store.set_setting(seed.ADMIN_SETTING, new.username)
        store.set_setting(SCRATCH_SETTING, {"dev_hub_org_id": new.hub_org_id, "scratch_org_info_id": new.info_id})
        store.insert("Organization", {
            "Id": new.org_id, "Name": new.org_name, "OrganizationType": EDITIONS.get(new.edition, new.edition),
            "IsSandbox": True, "InstanceName": SIGNUP_INSTANCE, "NamespacePrefix": None,
            "TrialExpirationDate": new.trial_expiration.strftime("%Y-%m-%dT%H:%M:%S.000+0000")})
        admin_profile = None
        for name in seed.PROFILES:
            profile_id = store.insert("Profile", {"Name": name, "UserType": "Standard"})
            admin_profile = profile_id if name == seed.ADMIN_PROFILE else admin_profile
            store.insert("PermissionSet", {"Name": f"X{profile_id[:15]}", "Label": profile_id[:15],
                                           "IsOwnedByProfile": True, "ProfileId": profile_id, "IsCustom": False,
                                           "PermissionsViewSetup": name == seed.ADMIN_PROFILE})
        admin_id = store.insert("User", {  # [O] a scratch org's admin is "User User"
            "Username": new.username, "FirstName": "User", "LastName": "User", "Name": "User User",
            "Email": new.email, "IsActive": True, "ProfileId": admin_profile, "UserType": "Standard",
            **seed.user_settings("UUser")})
        _install(store, PLATFORM_CLI, json.loads(json.dumps(_PLATFORM_CLI_APP)))
        if new.app is not None:
            _install(store, new.app.full_name, _replicated(new.app))
        installed = store.component_by_consumer_key(new.consumer_key)
        store.record_approval(installed.sobject_id or "", admin_id)
    return new.org_id


def _replicated(app: Component) -> dict[str, Any]:
    """The hub app's definition as Proxy Signup installs it: same key and secret, approved for the admin [U]."""
    definition = json.loads(json.dumps(app.definition))
    oauth = child(definition, "oauthConfig")
    oauth["isAdminApproved"] = ["false"]
    oauth["consumerKey"] = [app.consumer_key or ""]
    if app.consumer_secret:
        oauth["consumerSecret"] = [app.consumer_secret]
    return definition


def _install(store: Store, full_name: str, definition: dict[str, Any]) -> None:
    connected_apps.create(store, full_name, definition)


def active_record(store: Store, record: dict[str, Any], new: NewScratchOrg) -> dict[str, Any]:
    """The ActiveScratchOrg row of a scratch org that is up."""
    return {**stamped(store), "OwnerId": record["OwnerId"], "CreatedById": record["CreatedById"],
            "LastModifiedById": record["CreatedById"], "IsDeleted": False, "Name": next_name(store, "ActiveScratchOrg"),
            "Description": record["Description"], "Edition": new.edition, "ExpirationDate": new.expiration_date,
            "Features": record["Features"], "HasSampleData": bool(record["HasSampleData"]),
            "Namespace": record["Namespace"], "OrgName": new.org_name, "ScratchOrg": new.org_id[:15],
            "ScratchOrgInfoId": record["Id"], "SignupEmail": new.email, "SignupInstance": SIGNUP_INSTANCE,
            "SignupTrialDays": record["DurationDays"], "SignupUsername": new.username}
