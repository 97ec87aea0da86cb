"""The External Client App kind: five metadata components, deployed as one package the way Salesforce
takes them [V real-orgs-2026.md §3: sfdx-hardis, Electivus].

``ExternalClientApplication`` (name, label, contact), ``ExtlClntAppOauthSettings`` (scopes),
``ExtlClntAppGlobalOauthSettings`` (callback, certificate, PKCE, consumer key), ``ExtlClntAppConfigurablePolicies``
(enabled, OAuth plugin) and ``ExtlClntAppOauthConfigurablePolicies`` (permitted users, pre-authorized profiles
and permission sets). Deploy order keeps the operator able to log in: phase 2 deploys the first four (the
app, its OAuth and global OAuth settings with the certificate, its plugin policies); phase 3 creates and
assigns permission sets, and only then deploys the OAuth policies with ``AdminApprovedPreAuthorized``.
Salesforce may generate the OAuth policies component when the OAuth settings are deployed [O]: phase 3
updates that one rather than making a second. Deploys are declarative, so each component is sent whole.

The consumer key is read by retrieving ``ExtlClntAppGlobalOauthSettings`` [V Electivus]; where the org
leaves it out, by Connect REST (``apps/oauth/usage``, then ``apps/oauth/credentials``) [V docs, hardis]; a
consumer secret is never read. Apps are listed with listMetadata, and the app's Id for SetupEntityAccess
comes from the Tooling API: the ``ExternalClientApplication`` object is not queryable by SOQL [D].
"""

from __future__ import annotations

from runbook.apps.kind import DeleteStep
from runbook.apps.model import AccessState, AppSpec, AppState, Grant, normalised_scopes
from runbook.errors import InputError, PreflightError, SalesforceError
from runbook.fingerprints import pem_fingerprint
from runbook.salesforce import OrgSession, metadata, metadata_files, rest

APP = "ExternalClientApplication"
OAUTH_SETTINGS = "ExtlClntAppOauthSettings"
GLOBAL_OAUTH = "ExtlClntAppGlobalOauthSettings"
POLICIES = "ExtlClntAppConfigurablePolicies"
OAUTH_POLICIES = "ExtlClntAppOauthConfigurablePolicies"
# their files in a metadata-format zip [V source-deploy-retrieve metadataRegistry.json]
LAYOUT = {APP: ("externalClientApps", "eca"), OAUTH_SETTINGS: ("extlClntAppOauthSettings", "ecaOauth"),
          GLOBAL_OAUTH: ("extlClntAppGlobalOauthSets", "ecaGlblOauth"),
          OAUTH_POLICIES: ("extlClntAppOauthPolicies", "ecaOauthPlcy"), POLICIES: ("extlClntAppPolicies", "ecaPlcy")}
PHASE2 = (APP, OAUTH_SETTINGS, GLOBAL_OAUTH, POLICIES)  # deployed by phase 2; OAUTH_POLICIES is phase 3's
COMPONENTS = (*PHASE2, OAUTH_POLICIES)

PERMITTED = {"admin_approved": "AdminApprovedPreAuthorized", "all_users": "AllSelfAuthorized"}
IP_RELAXATION = {"ENFORCE": "Enforce", "BYPASS": "Bypass", "BYPASS_2FACTOR": "Bypass_2factor",
                 "ENFORCE_RELAXREFRESH": "Enforce_RelaxRefresh"}
REFRESH = {"infinite": "Infinite", "zero": "Zero", "specific_lifetime": "SpecificLifetime",
           "specific_inactivity": "SpecificInactivity"}
# JWT through an ECA needs RefreshToken as well as Api [V Electivus, real-orgs-2026.md §3]
JWT_SCOPES = ("Api", "RefreshToken")
OPT_IN = "External Client Apps"  # the org's opt-in, as Setup names it [D wire facts §5.1 "Opt in to ..."]
KEY_BY_REST_FIX = ("let the runbook read the consumer key: turn on the org setting \"Allow access to External "
                   "Client App consumer secrets via REST API\" (ExternalClientAppSettings."
                   "enableClientSecretInRestApiAccess, Setup > External Client Apps > Settings) and give the user "
                   "the \"External Client App Developer\" and \"View Client Secret\" permissions, rerun phase 2, "
                   "then turn both off again; or copy the key from Setup > External Client App Manager > the app "
                   "> Settings > OAuth Settings > Consumer Key and Secret")
# forcedotcom/cli#3515 (open) [V real-orgs-2026.md §2]; sfdx-core 9.1+ reads the variable (CLI 2.150.6 has 9.4)
# [V scratch-org-wire.md §2]
SCRATCH_NOTE = ("a Dev Hub logged in through an External Client App can fail `sf org create scratch` with C-1016 "
                "(forcedotcom/cli#3515): set SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI where the CLI runs "
                "(Salesforce CLI 2.150 or later), so the scratch org is made through the CLI's own connected app")


def component_names(app_name: str) -> dict[str, str]:
    """Each component type → the fullName the runbook gives it for a new app (sfdx-hardis' names)."""
    return {APP: app_name, OAUTH_SETTINGS: f"{app_name}OAuthSettings", GLOBAL_OAUTH: f"{app_name}GlblOAuth",
            POLICIES: f"{app_name}_defaultPolicy", OAUTH_POLICIES: f"{app_name}OAuthSettings_defaultPolicy"}


def _component(type_name: str, full_name: str, fields: dict) -> metadata_files.Component:
    return metadata_files.Component(type_name, full_name, fields, *LAYOUT[type_name])


def _flag(value) -> str:
    return "true" if str(value).lower() == "true" else "false"


def _comma(value) -> list[str]:
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


class ExternalClientAppKind:
    """External Client App Manager → New External Client App, as metadata deploys."""

    name = "external_client_app"
    title = "external client app"
    list_type = APP
    setup_path = "Setup > External Client App Manager"

    # ---------------------------------------------------------------- reading

    def _retrieve(self, session: OrgSession, app_name: str, types: tuple[str, ...]) -> dict[str, dict]:
        """This app's components by type, from one retrieve (satellites by ``*``: other tools name them
        otherwise, and only their ``externalClientApplication`` says whose they are)."""
        members = {t: [app_name] if t == APP else ["*"] for t in types}
        found = metadata_files.retrieve(session, members, LAYOUT)
        low = app_name.lower()
        out: dict[str, dict] = {}
        for (type_name, full_name), fields in sorted(found.items()):
            owner = full_name if type_name == APP else str(fields.get("externalClientApplication") or "")
            if owner.lower() == low and type_name not in out:
                out[type_name] = fields
        return out

    def _fields(self, components: dict[str, dict]) -> dict[str, str]:
        app, glob = components.get(APP) or {}, components.get(GLOBAL_OAUTH) or {}
        scopes = (components.get(OAUTH_SETTINGS) or {}).get("commaSeparatedOauthScopes") or ""
        plugins = components.get(POLICIES) or {}
        return {
            "label": app.get("label") or "",
            "contactEmail": app.get("contactEmail") or "",
            "description": app.get("description") or "",
            f"{GLOBAL_OAUTH}.callbackUrl": glob.get("callbackUrl") or "",
            f"{GLOBAL_OAUTH}.certificate (SHA-256)": pem_fingerprint(glob.get("certificate")),
            f"{OAUTH_SETTINGS}.scopes": normalised_scopes(_comma(scopes)),
            f"{GLOBAL_OAUTH}.isConsumerSecretOptional": _flag(glob.get("isConsumerSecretOptional")),
            f"{GLOBAL_OAUTH}.isPkceRequired": _flag(glob.get("isPkceRequired")),
            f"{POLICIES}.isEnabled": _flag(plugins.get("isEnabled")),
            f"{POLICIES}.isOauthPluginEnabled": _flag(plugins.get("isOauthPluginEnabled")),
        }

    def read(self, session: OrgSession, app_name: str) -> AppState | None:
        """The app, or None; one listMetadata first, so an absent app costs one call, not a retrieve."""
        listed = metadata.list_names(session, [APP]).get(APP, [])
        if app_name.lower() not in {n.lower() for n in listed}:
            return None
        return self._read(session, app_name)

    def _read(self, session: OrgSession, app_name: str) -> AppState | None:
        return self._state(session, app_name, self._retrieve(session, app_name, COMPONENTS))

    def _state(self, session: OrgSession, app_name: str, components: dict[str, dict]) -> AppState | None:
        """The app from its components (the consumer key by Connect REST where they lack it), or None."""
        if APP not in components:
            return None
        key = (components.get(GLOBAL_OAUTH) or {}).get("consumerKey") or ""
        if not key and GLOBAL_OAUTH in components:
            key = self._consumer_key_by_rest(session, app_name)
        return AppState(self.name, app_name, components[APP].get("label") or app_name, self._fields(components),
                        (components.get(GLOBAL_OAUTH) or {}).get("certificate") or "", key, components,
                        (components.get(OAUTH_POLICIES) or {}).get("fullName") or "")

    def _consumer_key_by_rest(self, session: OrgSession, app_name: str) -> str:
        """The consumer key by Connect REST (API 60+), where a retrieve leaves it out [V docs, hardis]."""
        try:
            apps = (rest.get(session, "apps/oauth/usage") or {}).get("apps") or []
            app = next((a for a in apps if str(a.get("developerName", "")).lower() == app_name.lower()), None)
            if app is None:
                raise SalesforceError(f"GET apps/oauth/usage ({app_name})", "NOT_FOUND",
                                      f"the org lists no OAuth usage for {app_name}", KEY_BY_REST_FIX)
            app_id = app.get("identifier") or app.get("id")
            consumers = (rest.get(session, f"apps/oauth/credentials/{app_id}") or {}).get("consumers") or []
            if not consumers:
                raise SalesforceError(f"GET apps/oauth/credentials/{app_id}", "NOT_FOUND",
                                      f"{app_name} has no OAuth consumer", KEY_BY_REST_FIX)
            part = rest.get(session, f"apps/oauth/credentials/{app_id}/{consumers[0]['id']}", {"part": "key"})
        except SalesforceError as exc:
            raise SalesforceError(exc.operation, exc.code, "the retrieve of its ExtlClntAppGlobalOauthSettings "
                                  f"gave no consumer key, and Connect REST refused it too ({exc.sf_message})",
                                  KEY_BY_REST_FIX) from None
        return str((part or {}).get("key") or (part or {}).get("consumerKey") or "")

    # ---------------------------------------------------------------- phase 2

    def _desired(self, spec: AppSpec, names: dict[str, str]) -> dict[str, dict]:
        app = spec.full_name
        return {
            APP: {"label": spec.label, "contactEmail": spec.contact_email, "description": spec.description or None,
                  "distributionState": "Local", "isProtected": False},
            OAUTH_SETTINGS: {"externalClientApplication": app, "label": f"{spec.label} OAuth Settings",
                             "commaSeparatedOauthScopes": ", ".join(spec.scopes)},
            GLOBAL_OAUTH: {"externalClientApplication": app, "label": f"{spec.label} Global OAuth",
                           "callbackUrl": spec.callback_url, "certificate": spec.certificate or None,
                           "isConsumerSecretOptional": spec.web_flow, "isPkceRequired": spec.web_flow},
            POLICIES: {"externalClientApplication": app, "label": names[POLICIES], "isEnabled": True,
                       "isOauthPluginEnabled": True},
        }

    def desired(self, spec: AppSpec) -> dict[str, str]:
        return self._fields(self._desired(spec, component_names(spec.full_name)))

    def check_spec(self, spec: AppSpec) -> None:
        """Refuse what an External Client App cannot do, before anything is written."""
        missing = [s for s in JWT_SCOPES if s not in spec.scopes and not (s == "RefreshToken" and
                                                                           "OfflineAccess" in spec.scopes)]
        if "jwt" in spec.flows and missing:
            raise InputError("scopes", list(spec.scopes), "add \"refresh_token offline_access\" (and \"api\"): an "
                             "External Client App refuses JWT logins without RefreshToken as well as Api",
                             problem=f"the jwt flow needs {' and '.join(missing)}")

    def _components(self, spec: AppSpec, current: AppState | None, secret: str | None
                    ) -> list[metadata_files.Component]:
        """The components to deploy: all four for a new app; else each changed or missing one, whole."""
        have = current.raw if current else {}
        names = {t: (have.get(t) or {}).get("fullName") or n for t, n in component_names(spec.full_name).items()}
        desired = self._desired(spec, names)
        now, want = (self._fields(have) if current else {}), self.desired(spec)
        out = []
        for type_name in PHASE2:
            owned = {k for k in want if k.split(".")[0] == type_name or (type_name == APP and "." not in k)}
            if current is not None and type_name in have and all(now.get(k) == want[k] for k in owned):
                continue
            fields = {k: v for k, v in (have.get(type_name) or {}).items()
                      if k not in ("fullName", "consumerKey", "consumerSecret")}
            fields |= {k: v for k, v in desired[type_name].items() if v is not None}
            if type_name == GLOBAL_OAUTH and secret and type_name not in have:
                fields["consumerSecret"] = secret
            out.append(_component(type_name, names[type_name], fields))
        return out

    def preflight(self, session: OrgSession, spec: AppSpec) -> str:
        """A check-only deploy of the four components (nothing saved): the opt-in and the fields are checked."""
        self.check_spec(spec)
        try:
            metadata_files.deploy(session, self._components(spec, None, None), check_only=True, wait_seconds=60)
        except SalesforceError as exc:
            raise PreflightError(exc.operation, exc.code, exc.sf_message, self._deploy_fix(exc)) from None
        return "the org takes this external client app (check-only deploy passed, nothing saved; no Salesforce " \
               "Support exception needed)"

    def _deploy_fix(self, exc: SalesforceError) -> str:
        if OPT_IN.lower() in exc.sf_message.lower() or "opt in" in exc.sf_message.lower():
            return (f"turn on the org's \"{OPT_IN}\" opt-in (Setup > External Client Apps > Settings), then rerun; "
                    "or use app_kind=\"connected_app\" where the org still allows connected apps")
        return f"check the app in {self.setup_path} and rerun"

    def save(self, session: OrgSession, spec: AppSpec, current: AppState | None, secret: str | None) -> AppState:
        self.check_spec(spec)
        components = self._components(spec, current, secret)
        try:  # the deploy retrieves what it saved (performRetrieve): no retrieve of its own
            saved = metadata_files.deploy(session, components, layout=LAYOUT) if components else {}
        except SalesforceError as exc:
            raise SalesforceError(exc.operation, exc.code, exc.sf_message, exc.fix or self._deploy_fix(exc)) \
                from None
        kept = {**(current.raw if current else {}), **{t: fields for (t, _n), fields in saved.items()}}
        after = self._state(session, spec.full_name, kept)
        missing = [t for t in PHASE2 if after is None or t not in after.raw]
        if after is None or missing:
            raise SalesforceError(f"retrieve {spec.full_name}", "NOT_FOUND",
                                  f"the org has no {', '.join(missing)} after the deploy",
                                  f"check {self.setup_path} and rerun")
        return after

    # ---------------------------------------------------------------- phase 3

    def read_access(self, session: OrgSession, app_name: str, *, hint: str = "") -> AccessState:
        """The OAuth policies: by name when phase 2 saw them (one readMetadata), else by a retrieve."""
        policies = metadata.read(session, OAUTH_POLICIES, hint) if hint else None
        if not policies or str(policies.get("externalClientApplication") or "").lower() != app_name.lower():
            components = self._retrieve(session, app_name, (APP, OAUTH_POLICIES))
            if APP not in components:
                raise InputError("app_name", app_name, "the org has no such external client app: run phase 2 "
                                 "(02_connected_app) first, or fix app_name")
            policies = components.get(OAUTH_POLICIES)
        data = policies or {}
        ip = data.get("ipRelaxationPolicyType") or "Enforce"
        permitted = data.get("permittedUsersPolicyType") or PERMITTED["all_users"]
        state = {"permitted_users": next((k for k, v in PERMITTED.items() if v == permitted), permitted),
                 "ip_relaxation": next((k for k, v in IP_RELAXATION.items() if v == ip), ip),
                 "refresh_token_policy": self._refresh(data)}
        grants = [Grant("profile", p, "") for p in _comma(data.get("commaSeparatedProfile"))] + \
            [Grant("permission_set", s, "") for s in _comma(data.get("commaSeparatedPermissionSet"))]
        return AccessState(state, grants, policies)

    @staticmethod
    def _refresh(policies: dict) -> str:
        kind = policies.get("refreshTokenPolicyType") or "Infinite"
        policy = next((k for k, v in REFRESH.items() if v == kind), kind)
        if policy.startswith("specific_"):
            unit = str(policies.get("refreshTokenValidityUnit") or "").upper()
            return f"{policy}:{policies.get('refreshTokenValidityPeriod')}:{unit}"
        return policy

    def save_access(self, session: OrgSession, app_name: str, current: AccessState, policies: dict[str, str],
                    grants: list[Grant] | None) -> None:
        """One deploy of the OAuth policies component, whole: the one the org has (generated or not), else ours.

        ``commaSeparatedPermissionSet`` takes permission-set API names (an Id failed in a dry run although
        the doc says Ids) [V Electivus]; ``commaSeparatedProfile`` takes profile names [V hardis].
        """
        raw = current.raw or {}
        name = raw.get("fullName") or component_names(app_name)[OAUTH_POLICIES]
        kind, _, rest_ = policies["refresh_token_policy"].partition(":")
        fields = {k: v for k, v in raw.items() if k not in ("fullName", "refreshTokenValidityPeriod",
                                                            "refreshTokenValidityUnit")}
        fields |= {"externalClientApplication": app_name, "label": raw.get("label") or name,
                   "permittedUsersPolicyType": PERMITTED[policies["permitted_users"]],
                   "ipRelaxationPolicyType": IP_RELAXATION[policies["ip_relaxation"]],
                   "refreshTokenPolicyType": REFRESH[kind]}
        if rest_:
            period, unit = rest_.split(":")
            fields |= {"refreshTokenValidityPeriod": int(period), "refreshTokenValidityUnit": unit.capitalize()}
        if grants is not None:
            fields.pop("commaSeparatedProfile", None)
            fields.pop("commaSeparatedPermissionSet", None)
            profiles = [g.name for g in grants if g.kind == "profile"]
            sets = [g.name for g in grants if g.kind == "permission_set"]
            if profiles:
                fields["commaSeparatedProfile"] = ", ".join(profiles)
            if sets:
                fields["commaSeparatedPermissionSet"] = ", ".join(sets)
        metadata_files.deploy(session, [_component(OAUTH_POLICIES, name, fields)])

    # ---------------------------------------------------------------- teardown and hand-off

    def teardown_steps(self, session: OrgSession, app_name: str) -> list[DeleteStep]:
        """One destructive deploy of the app and all its components (its pre-authorizations go with its
        OAuth policies, never before the app), then any SetupEntityAccess row left pointing at it."""
        components = self._retrieve(session, app_name, COMPONENTS)
        if APP not in components:
            return []
        doomed = [(t, components[t]["fullName"]) for t in reversed(COMPONENTS) if t in components]
        rows = rest.tooling_query(session, "SELECT Id FROM ExternalClientApplication WHERE DeveloperName = "
                                  f"{rest.quote(app_name)}")
        entity = rows[0]["Id"] if rows else ""

        def leftover_rows() -> None:
            for row in rest.query(session, "SELECT Id FROM SetupEntityAccess WHERE SetupEntityId = "
                                  f"{rest.quote(entity)}") if entity else []:
                rest.delete(session, "SetupEntityAccess", row["Id"])

        return [DeleteStep(f"delete {', '.join(f'{t} {n}' for t, n in doomed)} (one destructive deploy)",
                           lambda: metadata_files.destroy(session, doomed)),
                DeleteStep("delete any SetupEntityAccess row left for it", leftover_rows)]

    def handoff_notes(self) -> list[str]:
        return [SCRATCH_NOTE]
