"""The connected app kind: one ``ConnectedApp`` metadata component, saved by CRUD calls.

Its fields, policies (``oauthConfig.isAdminApproved``, ``oauthPolicy``) and pre-authorizations
(``profileName`` / ``permissionSetName``, kept by the org as SetupEntityAccess rows) are all in that one
component, so one read shows everything and one update changes policies and grants together.

Since Spring '26 a new connected app needs a Salesforce Support exception [D wire facts §1.1]. The
refusal's wording is not published [U real-orgs-2026.md §2], so it is recognised from several phrasings,
and a bare INSUFFICIENT_ACCESS (a missing permission) is never read as one.
"""

from __future__ import annotations

import re

from runbook.apps.kind import DeleteStep
from runbook.apps.model import AccessState, AppSpec, AppState, Grant, normalised_scopes
from runbook.errors import InputError, PreflightError, SalesforceError
from runbook.fingerprints import pem_fingerprint
from runbook.salesforce import OrgSession, metadata, metadata_files, rest

TYPE = "ConnectedApp"
LAYOUT = ("connectedApps", "connectedApp")  # its file in a metadata-format zip [D wire facts §1.2]
RESTRICTED = re.compile(r"connected apps? creation is restricted|cannot create (new )?connected app"
                        r"|connected apps? can ?no longer be created"
                        r"|new connected apps? (are|is) (not allowed|restricted)|contact salesforce support", re.I)
WAYS_OUT = ("1) ask Salesforce Support for the connected-app exception for this Dev Hub (needed when the Dev Hub "
            "creates scratch orgs through a connected app), or 2) rerun with app_kind=\"external_client_app\" (or "
            "\"auto\", which makes one where the org refuses connected apps); "
            "`sf org create scratch` then needs SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI in the environment")
_GRANT_FIELDS = ("profileName", "permissionSetName")


def flag(value) -> str:
    """A Metadata API boolean as shown in plans (absent means false)."""
    return "true" if str(value).lower() == "true" else "false"


def _listed(value) -> list[str]:
    return [v for v in ([value] if isinstance(value, str) else value or []) if v and v.strip()]


class ConnectedAppKind:
    """App Manager → New Connected App, as Metadata API calls."""

    name = "connected_app"
    title = "connected app"
    list_type = TYPE
    setup_path = "Setup > App Manager"

    # ---------------------------------------------------------------- phase 2

    def _fields(self, data: dict) -> dict[str, str]:
        oauth = data.get("oauthConfig") or {}
        return {
            "label": data.get("label") or "",
            "contactEmail": data.get("contactEmail") or "",
            "description": data.get("description") or "",
            "oauthConfig.callbackUrl": oauth.get("callbackUrl") or "",
            "oauthConfig.certificate (SHA-256)": pem_fingerprint(oauth.get("certificate")),
            "oauthConfig.scopes": normalised_scopes(oauth.get("scopes") or []),
            "oauthConfig.isConsumerSecretOptional": flag(oauth.get("isConsumerSecretOptional")),
            "oauthConfig.isPkceRequired": flag(oauth.get("isPkceRequired")),
        }

    def _owned(self, spec: AppSpec) -> dict:
        """The metadata phase 2 owns, in the Metadata API's shape."""
        return {
            "fullName": spec.full_name, "label": spec.label, "contactEmail": spec.contact_email,
            "description": spec.description or None,
            "oauthConfig": {"callbackUrl": spec.callback_url, "certificate": spec.certificate or None,
                            "isConsumerSecretOptional": spec.web_flow, "isPkceRequired": spec.web_flow,
                            "scopes": list(spec.scopes)},
        }

    def desired(self, spec: AppSpec) -> dict[str, str]:
        return self._fields(self._owned(spec))

    def check_spec(self, spec: AppSpec) -> None:
        """A connected app takes every spec build_spec accepts."""

    def read(self, session: OrgSession, app_name: str) -> AppState | None:
        data = metadata.read(session, TYPE, app_name)
        if data is None:
            return None
        oauth = data.get("oauthConfig") or {}
        return AppState(self.name, app_name, data.get("label") or app_name, self._fields(data),
                        oauth.get("certificate") or "", oauth.get("consumerKey") or "", data)

    def preflight(self, session: OrgSession, spec: AppSpec) -> str:
        """A check-only deploy of a minimal app (nothing saved); a refusal names the two ways out."""
        probe = metadata_files.Component(TYPE, spec.full_name, {
            "contactEmail": spec.contact_email, "label": spec.label,
            "oauthConfig": {"callbackUrl": spec.callback_url, "scopes": ["Api"]}}, *LAYOUT)
        try:
            metadata_files.deploy(session, [probe], check_only=True, wait_seconds=60)
        except SalesforceError as exc:
            if RESTRICTED.search(exc.sf_message):
                raise PreflightError(f"create ConnectedApp {spec.full_name}", "INSUFFICIENT_ACCESS",
                                     f"this org does not allow new connected apps ({exc.sf_message})",
                                     WAYS_OUT) from None
            return f"check-only deploy ended {exc.code}; the create will tell"
        return "the org allows new connected apps (check-only deploy passed, nothing saved)"

    def save(self, session: OrgSession, spec: AppSpec, current: AppState | None, secret: str | None) -> AppState:
        if current is None:
            self._create(session, spec, secret)
        else:
            metadata.update(session, TYPE, self._merged(current.raw, spec))
        after = self.read(session, spec.full_name)
        if after is None:
            raise SalesforceError(f"readMetadata {TYPE} {spec.full_name}", "NOT_FOUND",
                                  "the app was saved but cannot be read back",
                                  f"check the org's {self.setup_path} and rerun")
        return after

    def _create(self, session: OrgSession, spec: AppSpec, secret: str | None) -> None:
        payload = {k: v for k, v in self._owned(spec).items() if v is not None}
        payload["oauthConfig"] = {k: v for k, v in payload["oauthConfig"].items() if v is not None}
        if secret:
            payload["oauthConfig"]["consumerSecret"] = secret
        payload["oauthPolicy"] = {"ipRelaxation": "ENFORCE", "refreshTokenPolicy": "infinite"}
        try:
            metadata.create(session, TYPE, payload)
        except SalesforceError as exc:
            if RESTRICTED.search(exc.sf_message):
                raise PreflightError(exc.operation, exc.code, exc.sf_message, WAYS_OUT) from None
            if exc.code == "INSUFFICIENT_ACCESS" and not exc.fix:
                raise SalesforceError(exc.operation, exc.code, exc.sf_message,
                                      metadata.MISSING_PERMISSION_FIX) from None
            raise

    def _merged(self, current: dict, spec: AppSpec) -> dict:
        """The update payload: the org's app with phase 2's fields replaced, keys never re-sent, access kept."""
        owned = self._owned(spec)
        merged = {**current, **{k: v for k, v in owned.items() if k != "oauthConfig"}}
        oauth = {**(current.get("oauthConfig") or {}), **owned["oauthConfig"]}
        oauth.pop("consumerKey", None)  # Salesforce: "You cannot provide a Consumer Key" on update
        oauth.pop("consumerSecret", None)
        merged["oauthConfig"] = {k: v for k, v in oauth.items() if v is not None}
        for key in _GRANT_FIELDS:  # access is phase 3's; without these elements the org keeps it as is
            merged.pop(key, None)
        return {k: v for k, v in merged.items() if v is not None}

    # ---------------------------------------------------------------- phase 3

    def read_access(self, session: OrgSession, app_name: str, *, hint: str = "") -> AccessState:
        app = metadata.read(session, TYPE, app_name)
        if app is None:
            raise InputError("app_name", app_name, "the org has no such connected app: run phase 2 "
                             "(02_connected_app) first, or fix app_name")
        oauth, policy = app.get("oauthConfig") or {}, app.get("oauthPolicy") or {}
        policies = {"permitted_users": "admin_approved" if flag(oauth.get("isAdminApproved")) == "true"
                    else "all_users",
                    "ip_relaxation": policy.get("ipRelaxation") or "ENFORCE",
                    "refresh_token_policy": policy.get("refreshTokenPolicy") or "infinite"}
        grants = [Grant("profile", n, "") for n in _listed(app.get("profileName"))] + \
            [Grant("permission_set", n, "") for n in _listed(app.get("permissionSetName"))]
        return AccessState(policies, grants, app)

    def save_access(self, session: OrgSession, app_name: str, current: AccessState, policies: dict[str, str],
                    grants: list[Grant] | None) -> None:
        """One metadata update: the policies and, unless ``grants`` is None, the complete grant lists (an empty
        element means none; without the elements the org keeps the grants as they are)."""
        app = current.raw or {}
        data = {k: v for k, v in app.items() if k not in _GRANT_FIELDS}
        oauth = {k: v for k, v in (data.get("oauthConfig") or {}).items() if k not in ("consumerKey", "consumerSecret")}
        oauth["isAdminApproved"] = policies["permitted_users"] == "admin_approved"
        data["oauthConfig"] = oauth
        data["oauthPolicy"] = {**(data.get("oauthPolicy") or {}), "ipRelaxation": policies["ip_relaxation"],
                               "refreshTokenPolicy": policies["refresh_token_policy"]}
        if grants is not None:
            data["profileName"] = [g.name for g in grants if g.kind == "profile"] or [""]
            data["permissionSetName"] = [g.name for g in grants if g.kind == "permission_set"] or [""]
        metadata.update(session, TYPE, data)

    # ---------------------------------------------------------------- teardown and hand-off

    def teardown_steps(self, session: OrgSession, app_name: str) -> list[DeleteStep]:
        """Delete the app, then any SetupEntityAccess row left pointing at it (grants go after the app)."""
        app = metadata.read(session, TYPE, app_name)
        if app is None:
            return []
        label = app.get("label") or app_name
        apps = rest.query(session, f"SELECT Id FROM ConnectedApplication WHERE Name = {rest.quote(label)}")
        entity = apps[0]["Id"] if apps else ""
        rows = rest.query(session, "SELECT Id FROM SetupEntityAccess WHERE SetupEntityId = "
                          f"{rest.quote(entity)}") if entity else []

        def leftover_rows() -> None:
            for row in rest.query(session, f"SELECT Id FROM SetupEntityAccess WHERE SetupEntityId = "
                                  f"{rest.quote(entity)}") if entity else []:
                rest.delete(session, "SetupEntityAccess", row["Id"])

        return [DeleteStep(f"delete ConnectedApp {app_name}", lambda: metadata.delete(session, TYPE, app_name)),
                *([DeleteStep(f"delete its {len(rows)} pre-authorization(s) (SetupEntityAccess)", leftover_rows)]
                  if rows else [])]

    def handoff_notes(self) -> list[str]:
        return []
