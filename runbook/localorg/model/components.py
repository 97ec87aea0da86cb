"""Shared pieces of the metadata types: component trees, save errors, checks, and an app's OAuth view.

A component arrives as XML (createMetadata, or a file in a deploy zip) and is kept as a ``Node``:
element name -> list of values, each text or a nested Node, so repeated elements (``scopes``,
``profileName``) and nesting survive a round trip. Field order is not kept: responses are written
in XSD order, which for these types is alphabetical with ``fullName`` first.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from runbook.localorg.model.store import Component, Node, Store


@dataclass(frozen=True)
class Problem:
    """One entry of a SaveResult's ``errors``."""

    status_code: str
    message: str
    fields: tuple[str, ...] = ()


class SaveError(Exception):
    """A component Salesforce would refuse; carries the SaveResult errors."""

    def __init__(self, status_code: str, message: str, fields: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message)
        self.problems = [Problem(status_code, message, tuple(fields))]

    @classmethod
    def of(cls, problems: list[Problem]) -> SaveError:
        error = cls(problems[0].status_code, problems[0].message, problems[0].fields)
        error.problems = problems
        return error


@dataclass(frozen=True)
class OAuthApp:
    """What the token endpoint needs to know about a Connected App or an External Client App."""

    kind: str  # the SetupEntityType: ConnectedApplication or ExternalClientApplication
    full_name: str
    entity_id: str  # ConnectedApplication / ExternalClientApplication Id
    certificate: str | None
    scopes: tuple[str, ...]  # wire strings: api, web, refresh_token ...
    admin_approved: bool
    profiles: tuple[str, ...] = ()  # ECA only: commaSeparatedProfile
    permission_sets: tuple[str, ...] = ()  # ECA only: commaSeparatedPermissionSet (ids or names)
    enabled: bool = True  # ECA only: ExtlClntAppConfigurablePolicies.isEnabled
    oauth_plugin_enabled: bool = True  # ECA only: ExtlClntAppConfigurablePolicies.isOauthPluginEnabled


@dataclass(frozen=True)
class MetadataType:
    """How one metadata type is checked and stored; each function raises SaveError to refuse."""

    name: str
    folder: str  # in a deploy zip / listMetadata fileName
    suffix: str
    create: Callable[[Store, str, Node], None]
    update: Callable[[Store, Component, Node], None]
    delete: Callable[[Store, Component], None]
    read: Callable[[Store, Component], Node]
    rank: int = 0  # deploy order, lowest first: what a component names is deployed before it
    manifest_name: str = ""  # the type's name in package.xml, when it is not ``name`` (settings: "Settings")
    # For components that are not stored as such (settings): the one with a name, and all of them.
    lookup: Callable[[Store, str], Component | None] | None = None
    listing: Callable[[Store], list[Component]] | None = None
    # For types whose fields are checked against the WSDL (settings): (component, the elements' namespace) ->
    # the first problem, as Salesforce's parser words it, or None.
    check: Callable[[Node, str], str | None] | None = None

    @property
    def manifest(self) -> str:
        return self.manifest_name or self.name

    def file_name(self, full_name: str) -> str:
        return f"{self.folder}/{full_name}.{self.suffix}"

    def current(self, store: Store, full_name: str) -> Component | None:
        """The stored component of this type called ``full_name``, or None."""
        return self.lookup(store, full_name) if self.lookup else store.component(self.name, full_name)

    def all(self, store: Store) -> list[Component]:
        """Every component of this type, by name."""
        return self.listing(store) if self.listing else store.components(self.name)


# --- reading a Node -------------------------------------------------------------------------------

def texts(node: Node | None, name: str) -> list[str]:
    return [value for value in (node or {}).get(name, []) if isinstance(value, str)]


def text(node: Node | None, name: str) -> str | None:
    values = texts(node, name)
    return values[0] if values else None


def child(node: Node | None, name: str) -> Node | None:
    return next((value for value in (node or {}).get(name, []) if isinstance(value, dict)), None)


def as_bool(value: str | None, default: bool = False) -> bool:
    """An xsd:boolean, also in Python's spelling (``True``) that simple-salesforce's templates send."""
    return default if value is None or not value.strip() else value.strip().lower() in ("true", "1")


def missing(node: Node | None, names: tuple[str, ...], prefix: str = "") -> list[Problem]:
    """A REQUIRED_FIELD_MISSING problem for each required element that is absent or blank."""
    return [Problem("REQUIRED_FIELD_MISSING", f"Required field is missing: {prefix}{name}", (prefix + name,))
            for name in names if not (text(node, name) or "").strip()]


# --- checks shared by the types -------------------------------------------------------------------

_DEVELOPER_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*")
API_NAME_RULES = ("can only contain underscores and alphanumeric characters. It must be unique, begin with a "
                  "letter, not include spaces, not end with an underscore, and not contain two consecutive "
                  "underscores.")


def is_api_name(name: str) -> bool:
    """Salesforce's developer-name rule, shared by metadata full names and permission set names."""
    return bool(_DEVELOPER_NAME.fullmatch(name)) and not name.endswith("_") and len(name) <= 80


def check_full_name(full_name: str) -> None:
    if not is_api_name(full_name):
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", f"The API name '{full_name}' {API_NAME_RULES}",
                        ["fullName"])


def load_certificate(pem: str) -> x509.Certificate:
    """The certificate in ``pem``: a full PEM, or just its base64 body; ValueError if it is not one."""
    body = re.sub(r"-----(BEGIN|END) CERTIFICATE-----|\s", "", pem)
    try:
        return x509.load_der_x509_certificate(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


def check_certificate(pem: str | None, field_name: str) -> None:
    """An uploaded certificate must parse ([U] choice: Salesforce's own wording is not known)."""
    if pem is None:
        return
    try:
        load_certificate(pem)
    except ValueError:
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "The certificate is not a valid PEM-encoded X.509 "
                        "certificate.", [field_name]) from None


def check_consumer_key(store: Store, key: str, field_name: str) -> None:
    """Any 8-256 non-blank characters, unique in the org.

    [D] says 8-256 alphanumerics; [O] real keys hold ``. _ + / =``, so the local org is not stricter.
    "The consumer key is already taken." is [O] (devops-center-feedback#256).
    """
    if not 8 <= len(key) <= 256 or any(char.isspace() for char in key):
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "The consumer key must be between 8 and 256 characters "
                        "and contain no spaces.", [field_name])
    if store.component_by_consumer_key(key) is not None:
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "The consumer key is already taken.", [field_name])


def check_consumer_secret(store: Store, secret: str, field_name: str) -> None:
    """8-256 alphanumerics, unique in the org [D]; the messages are [U] choices."""
    if not (8 <= len(secret) <= 256 and secret.isalnum()):
        raise SaveError("FIELD_INTEGRITY_EXCEPTION",
                        "The consumer secret must be 8 to 256 alphanumeric characters.", [field_name])
    if store.consumer_secret_in_use(secret):
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", "The consumer secret is already taken.", [field_name])


def not_found(type_name: str, full_name: str, field_name: str = "fullName") -> SaveError:
    """Salesforce's wording when a named component or reference does not exist."""
    return SaveError("INVALID_CROSS_REFERENCE_KEY",
                     f"In field: {field_name} - no {type_name} named {full_name} found", [field_name])


# --- OAuth scopes ---------------------------------------------------------------------------------

# Metadata enum -> the scope string in token responses. The first column is the WSDL's enum; the
# wire spellings are Salesforce's documented scope parameter values [D] (the mapping itself is [U]).
SCOPE_WIRE = {
    "Basic": "id", "Api": "api", "Web": "web", "Full": "full", "Chatter": "chatter_api",
    "CustomApplications": "visualforce", "RefreshToken": "refresh_token", "OpenID": "openid",
    "Profile": "profile", "Email": "email", "Address": "address", "Phone": "phone",
    "OfflineAccess": "refresh_token", "CustomPermissions": "custom_permissions", "Wave": "wave_api",
    "Eclair": "eclair_api", "Pardot": "pardot_api", "Lightning": "lightning", "Content": "content",
    "CDPIngest": "cdp_ingest_api", "CDPProfile": "cdp_profile_api", "CDPQuery": "cdp_query_api",
    "Chatbot": "chatbot_api", "CDPSegment": "cdp_segment_api",
    "CDPIdentityResolution": "cdp_identityresolution_api",
    "CDPCalculatedInsight": "cdp_calculated_insight_api", "ForgotPassword": "forgot_password",
    "UserRegistration": "user_registration_api", "SFAP": "sfap_api", "Interaction": "interaction_api",
    "CDP": "cdp_api", "EinsteinGPT": "einstein_gpt_api", "PwdlessLogin": "pwdless_login_api",
}


def check_scopes(scopes: list[str], field_name: str) -> None:
    unknown = [scope for scope in scopes if scope not in SCOPE_WIRE]
    if unknown:
        raise SaveError("FIELD_INTEGRITY_EXCEPTION", f"Unknown OAuth scope: {unknown[0]}. Use one of: "
                        f"{', '.join(SCOPE_WIRE)}", [field_name])


# [D] ConnectedAppOauthAccessScope: on deploy "Profile, Email, Address, Phone" behave like Basic and
# OfflineAccess like RefreshToken; the doc's "when retrieving" list leaves them out, so a read answers
# the scope each one stands for. The ECA settings' commaSeparatedOauthScopes take the same enum.
_READ_AS = {"Profile": "Basic", "Email": "Basic", "Address": "Basic", "Phone": "Basic",
            "OfflineAccess": "RefreshToken"}


def read_scopes(scopes: list[str]) -> list[str]:
    """The scopes as the Metadata API reads them back: aliases replaced, each once, in first-seen order."""
    return list(dict.fromkeys(_READ_AS.get(scope, scope) for scope in scopes))


def wire_scopes(scopes: list[str]) -> tuple[str, ...]:
    """The scope strings of a token response, in the app's order, without repeats."""
    return tuple(dict.fromkeys(SCOPE_WIRE[s] for s in scopes if s in SCOPE_WIRE))
