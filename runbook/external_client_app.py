"""Phase 2 for an External Client App: the five metadata components that replace a connected app.

``ExternalClientApplication`` (name, label, contact), ``ExtlClntAppOauthSettings`` (scopes),
``ExtlClntAppGlobalOauthSettings`` (callback, certificate, PKCE, consumer key and secret),
``ExtlClntAppConfigurablePolicies`` (enabled, OAuth plugin) and ``ExtlClntAppOauthConfigurablePolicies``
(permitted users, pre-authorized profiles). Satellite names follow sfdx-hardis
(``<App>OAuthSettings``, ``<App>GlblOAuth``, ``<App>OAuthSettings_defaultPolicy``, ``<App>_defaultPolicy``).

Who may log in is phase 3's, but an ECA without OAuth policies cannot be used by JWT at all: the
policies component is created once, with "Admin approved users are pre-authorized" and the
System Administrator profile, and never changed here afterwards.
"""

from __future__ import annotations

from runbook import metadata
from runbook.connected_app import (
    AppPlan,
    AppSpec,
    Change,
    _cert_fingerprint,
    check_readback,
    flag,
    normalised_scopes,
)
from runbook.errors import SalesforceError
from runbook.org import OrgSession

APP = "ExternalClientApplication"
OAUTH_SETTINGS = "ExtlClntAppOauthSettings"
GLOBAL_OAUTH = "ExtlClntAppGlobalOauthSettings"
POLICIES = "ExtlClntAppConfigurablePolicies"
OAUTH_POLICIES = "ExtlClntAppOauthConfigurablePolicies"
COMPONENTS = (APP, OAUTH_SETTINGS, GLOBAL_OAUTH, POLICIES, OAUTH_POLICIES)  # create order: the app first
DEFAULT_PROFILE = "System Administrator"


def component_names(app_name: str) -> dict[str, str]:
    """Each component type → its fullName for the app ``app_name``."""
    return {APP: app_name, OAUTH_SETTINGS: f"{app_name}OAuthSettings", GLOBAL_OAUTH: f"{app_name}GlblOAuth",
            POLICIES: f"{app_name}_defaultPolicy", OAUTH_POLICIES: f"{app_name}OAuthSettings_defaultPolicy"}


def desired_components(spec: AppSpec) -> dict[str, dict]:
    """The five components as Metadata API dicts (no consumer key: the org makes it)."""
    names, app = component_names(spec.full_name), spec.full_name
    return {
        APP: {"fullName": app, "label": spec.label, "contactEmail": spec.contact_email,
              "description": spec.description or None, "distributionState": "Local", "isProtected": False},
        OAUTH_SETTINGS: {"fullName": names[OAUTH_SETTINGS], "externalClientApplication": app,
                         "label": f"{spec.label} OAuth Settings", "commaSeparatedOauthScopes": ", ".join(spec.scopes)},
        GLOBAL_OAUTH: {"fullName": names[GLOBAL_OAUTH], "externalClientApplication": app,
                       "label": f"{spec.label} Global OAuth", "callbackUrl": spec.callback_url,
                       "certificate": spec.certificate or None, "isConsumerSecretOptional": spec.web_flow,
                       "isPkceRequired": spec.web_flow},
        POLICIES: {"fullName": names[POLICIES], "externalClientApplication": app, "label": f"{app}_defaultPolicy",
                   "isEnabled": True, "isOauthPluginEnabled": True},
        OAUTH_POLICIES: {"fullName": names[OAUTH_POLICIES], "externalClientApplication": app,
                         "label": f"{app}OAuthSettings_defaultPolicy",
                         "permittedUsersPolicyType": "AdminApprovedPreAuthorized",
                         "commaSeparatedProfile": DEFAULT_PROFILE, "ipRelaxationPolicyType": "Enforce",
                         "refreshTokenPolicyType": "Infinite"},
    }


def _comparable(components: dict[str, dict | None]) -> dict[str, str]:
    """Phase 2's fields of an ECA as display strings (policies are phase 3's and not compared)."""
    app = components.get(APP) or {}
    scopes = (components.get(OAUTH_SETTINGS) or {}).get("commaSeparatedOauthScopes") or ""
    glob = components.get(GLOBAL_OAUTH) or {}
    return {
        "label": app.get("label") or "",
        "contactEmail": app.get("contactEmail") or "",
        "description": app.get("description") or "",
        f"{GLOBAL_OAUTH}.callbackUrl": glob.get("callbackUrl") or "",
        f"{GLOBAL_OAUTH}.certificate (SHA-256)": _cert_fingerprint(glob.get("certificate")),
        f"{OAUTH_SETTINGS}.scopes": normalised_scopes(scopes.split(",")),
        f"{GLOBAL_OAUTH}.isConsumerSecretOptional": flag(glob.get("isConsumerSecretOptional")),
        f"{GLOBAL_OAUTH}.isPkceRequired": flag(glob.get("isPkceRequired")),
    }


def read_components(session: OrgSession, app_name: str) -> dict[str, dict | None]:
    """The app's components as the org has them (None for each one it lacks)."""
    return {t: metadata.read(session, t, name) for t, name in component_names(app_name).items()}


def plan_external_client_app(session: OrgSession, spec: AppSpec) -> AppPlan:
    """Read the five components and list what applying ``spec`` would change."""
    current = read_components(session, spec.full_name)
    if current[APP] is None:
        return AppPlan("create", spec, [], current,
                       preflight="external client apps need no Salesforce Support exception")
    now, want = _comparable(current), _comparable(desired_components(spec))
    changes = [Change(k, now[k], want[k]) for k in want if now[k] != want[k]]
    changes += [Change(t, "(missing)", "create") for t in COMPONENTS if current[t] is None]
    return AppPlan("update" if changes else "none", spec, changes, current)


def _update_payload(current: dict, desired: dict) -> dict:
    merged = {**current, **{k: v for k, v in desired.items() if v is not None}}
    for key in ("consumerKey", "consumerSecret"):  # never re-sent: the org keeps them
        merged.pop(key, None)
    return merged


def apply_external_client_app(session: OrgSession, plan: AppPlan, consumer_secret: str | None = None) -> dict:
    """Create the missing components, update changed ones (policies left to phase 3), read back and check."""
    desired, current = desired_components(plan.spec), plan.current or {}
    now, want = _comparable(current), _comparable(desired)
    changed = {k for k in want if now[k] != want[k]}
    owner = {APP: ("label", "contactEmail", "description"), OAUTH_SETTINGS: (f"{OAUTH_SETTINGS}.scopes",),
             GLOBAL_OAUTH: tuple(k for k in want if k.startswith(GLOBAL_OAUTH))}
    for type_name in COMPONENTS:
        data = {k: v for k, v in desired[type_name].items() if v is not None}
        if current.get(type_name) is None:
            if type_name == GLOBAL_OAUTH and consumer_secret:
                data["consumerSecret"] = consumer_secret
            metadata.create(session, type_name, data)
        elif changed & set(owner.get(type_name, ())):
            metadata.update(session, type_name, _update_payload(current[type_name], data))
    after = read_components(session, plan.spec.full_name)
    missing = [t for t in COMPONENTS if after[t] is None]
    if missing:
        raise SalesforceError(f"read back {plan.spec.full_name}", "NOT_FOUND",
                              f"the org has no {', '.join(missing)} after saving",
                              "check Setup > External Client App Manager and rerun")
    check_readback(plan, want, _comparable(after))
    return after
