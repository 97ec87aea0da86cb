"""Phase 2: the connected app — desired definition, a plan against the org, apply, read back.

The org is the source of truth: the app is read first, a plan lists exactly what would change
(``apply=False`` stops there), and apply creates the app or updates it in place. The consumer
key is made by the org on create and never sent back; after applying, the app is read again and
checked against the plan, because Salesforce has silently dropped fields on create before.
Fields owned by phase 3 (policies, pre-authorized profiles) are carried over untouched.

Flows: ``jwt`` uploads the certificate ("Use digital signatures"); ``web`` (the web server flow) turns
on PKCE and makes the consumer secret optional, because the Salesforce CLI is a public client that
always sends a PKCE challenge and keeps no secret. A confidential client can still use the secret: on
create it is generated here and written to ``<workdir>/secrets/<app>.consumer_secret`` (mode 0600),
never shown (``consumer_secret_by="org"`` leaves it to the org: read it in Setup > Manage Consumer Details).

Preflight: since Spring '26 an org needs a Salesforce Support exception to create connected apps.
Before creating one, a check-only deploy of a minimal app asks the org (nothing is saved); a refusal
becomes a ``PreflightError`` naming the two ways out. The create's own refusal is read the same way, for
orgs whose check-only deploy does not tell.
"""

from __future__ import annotations

import io
import re
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from html import escape
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from runbook import consumer_secret, metadata
from runbook.certificate import certificate_pem
from runbook.errors import NO_ANSWER, InputError, PreflightError, SalesforceError
from runbook.org import OrgSession
from runbook.ports import check_callback_port
from runbook.sfdx_project import ProjectChange, apply_project_port, plan_project_port
from runbook.workdir import open_workdir

METADATA_TYPE = "ConnectedApp"
API_NAME_MAX = 40
LABEL_MAX = 40  # the "Connected App Name" field in Setup
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Friendly OAuth scope names (as Setup and the wire show them) → ConnectedAppOauthAccessScope values.
SCOPES = {
    "api": "Api",
    "web": "Web",
    "full": "Full",
    "refresh_token offline_access": "RefreshToken",
    "refresh_token": "RefreshToken",
    "offline_access": "RefreshToken",
    "openid": "OpenID",
    "id": "Basic",
    "profile": "Profile",
    "email": "Email",
    "address": "Address",
    "phone": "Phone",
    "chatter_api": "Chatter",
    "custom_permissions": "CustomPermissions",
    "wave_api": "Wave",
    "eclair_api": "Eclair",
    "pardot_api": "Pardot",
    "lightning": "Lightning",
    "content": "Content",
    "cdp_query_api": "CDPQuery",
    "cdp_profile_api": "CDPProfile",
    "cdp_ingest_api": "CDPIngest",
    "einstein_gpt_api": "EinsteinGPT",
}
DEFAULT_SCOPES = ("api", "web", "refresh_token offline_access")
# How the Metadata API reads scopes back [D ConnectedApp doc, wire facts §1.3]: these behave as (and are
# retrieved as) the scope on the right, so plans compare the normalised sets or a rerun would never converge.
SCOPE_READ_AS = {"Profile": "Basic", "Email": "Basic", "Address": "Basic", "Phone": "Basic",
                 "OfflineAccess": "RefreshToken"}
FLOWS = ("jwt", "web")
APP_KINDS = ("auto", "connected_app", "external_client_app")
ECA_TYPE = "ExternalClientApplication"
SECRET_BY = ("runbook", "org")
# The real refusal's wording is not published [U real-orgs-2026.md §2]: these are the phrasings seen in the
# doc banner and in peers' messages. A bare INSUFFICIENT_ACCESS (a missing permission) is NOT a refusal of
# connected apps: it keeps its own message (runbook.metadata names the permissions).
RESTRICTED = re.compile(r"connected apps? creation is restricted|cannot create (new )?connected app"
                        r"|connected apps? can ?no longer be created"
                        r"|new connected apps? (are|is) (not allowed|restricted)|contact salesforce support", re.I)
WAYS_OUT = ("1) ask Salesforce Support for the connected-app exception for this Dev Hub (needed when the Dev Hub "
            "creates scratch orgs through a connected app), or 2) rerun with app_kind=\"external_client_app\" (or "
            "\"auto\", which makes one where the org refuses connected apps); "
            "`sf org create scratch` then needs SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI in the environment")


@dataclass(frozen=True)
class AppSpec:
    """The validated, desired connected app (phase 2's fields only)."""

    full_name: str
    label: str
    contact_email: str
    description: str
    callback_url: str
    callback_port: int
    scopes: tuple[str, ...]  # metadata enum values, e.g. ("Api", "Web", "RefreshToken")
    certificate: str  # PEM; empty when the jwt flow is not asked for
    flows: tuple[str, ...] = ("jwt",)
    app_kind: str = "auto"  # auto: what the org allows (see plan_connected_app); an existing app keeps its kind
    consumer_secret_by: str = "runbook"  # who makes the consumer secret on create (web flow)
    sfdx_project: ProjectChange | None = None

    @property
    def web_flow(self) -> bool:
        return "web" in self.flows

    def owned_fields(self) -> dict:
        """The metadata this phase owns, in the Metadata API's shape."""
        return {
            "fullName": self.full_name,
            "label": self.label,
            "contactEmail": self.contact_email,
            "description": self.description or None,
            "oauthConfig": {
                "callbackUrl": self.callback_url,
                "certificate": self.certificate or None,
                "isConsumerSecretOptional": self.web_flow,
                "isPkceRequired": self.web_flow,
                "scopes": list(self.scopes),
            },
        }


@dataclass(frozen=True)
class Change:
    field: str
    old: str
    new: str


@dataclass
class AppPlan:
    """What applying would do: create, update (with the field changes) or nothing."""

    action: str  # create | update | none
    spec: AppSpec
    changes: list[Change]
    current: dict | None = field(default=None, repr=False)
    preflight: str = ""
    kind_choice: str = ""  # app_kind="auto": which kind, and why
    fallback: bool = False  # a connected-app create that becomes an External Client App if the org refuses it

    @property
    def kind_name(self) -> str:
        return self.spec.app_kind.replace("_", " ")

    def rows(self) -> list[tuple[str, str, str]]:
        rows = [(c.field, c.old, c.new) for c in self.changes]
        if self.action == "create":
            rows = [("(new app)", "", f"{self.spec.full_name} ({self.spec.label})")]
        project = self.spec.sfdx_project
        if project is not None and project.action != "none":
            rows.append((f"{project.path.name}: oauthLocalPort", str(project.old or ""), str(project.new)))
        return rows

    def __str__(self) -> str:
        name = self.spec.full_name
        head = {"create": f"Create {self.kind_name} {name}",
                "update": f"Update {self.kind_name} {name}: {len(self.changes)} change(s)",
                "none": f"The {self.kind_name} {name} is up to date: nothing to change"}[self.action]
        lines = [head] + [f"  {c.field}: {c.old or '(empty)'} -> {c.new or '(empty)'}" for c in self.changes]
        if self.spec.sfdx_project is not None and self.spec.sfdx_project.action != "none":
            lines.append(f"  {self.spec.sfdx_project}")
        if self.kind_choice:
            lines.append(f"  app kind: {self.kind_choice}")
        if self.preflight:
            lines.append(f"  preflight: {self.preflight}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td>{escape(c)}</td></tr>"
                       for a, b, c in self.rows())
        table = f"<table><tr><th>Field</th><th>Now</th><th>After</th></tr>{rows}</table>" if rows else ""
        note = "".join(f"<p>{label}: {escape(text)}</p>" for label, text in
                       (("App kind", self.kind_choice), ("Preflight", self.preflight)) if text)
        return f"<p><b>{escape(str(self).splitlines()[0])}</b></p>{table}{note}"


@dataclass
class AppResult:
    """The app as the org has it after phase 2."""

    app_kind: str
    full_name: str
    label: str
    consumer_key: str
    callback_url: str
    scopes: list[str]
    certificate_fingerprint: str
    action: str
    applied: bool
    changes: list[dict]
    flows: list[str] = field(default_factory=lambda: ["jwt"])
    callback_port: int = 1717
    consumer_secret_file: str = ""  # a path (mode 0600), never the secret
    sfdx_project: str = ""
    kind_choice: str = ""  # app_kind="auto": which kind was chosen, and why
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def _repr_html_(self) -> str:
        rows = [("App", f"{self.label} ({self.full_name})"), ("Kind", self.app_kind),
                ("Consumer key", self.consumer_key or "(dry run: not created)"),
                ("Callback URL", self.callback_url), ("Scopes", ", ".join(self.scopes)),
                ("Certificate SHA-256", self.certificate_fingerprint or "(no jwt flow)"),
                ("Flows", ", ".join(self.flows)),
                ("Consumer secret", self.consumer_secret_file or "held by the org: Setup > Manage Consumer Details"
                 if "web" in self.flows else "(not used)"),
                ("Action", self.action + ("" if self.applied else " (dry run)")),
                *(("Warning", w) for w in self.warnings)]
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in rows)
        return f"<table>{body}</table>"


def parse_scopes(scopes: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    """Friendly scope names (or metadata enum names) → metadata enum values, order kept, no repeats."""
    items = [scopes] if isinstance(scopes, str) else list(scopes)
    if not items:
        raise InputError("scopes", scopes, f"give at least one scope, e.g. {list(DEFAULT_SCOPES)}")
    enum_values = {v.lower(): v for v in SCOPES.values()}
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        value = SCOPES.get(key) or enum_values.get(key)
        if value is None:
            raise InputError("scopes", item, f"use one of: {', '.join(sorted(SCOPES))}")
        if value not in out:
            out.append(value)
    return tuple(out)


def normalised_scopes(values) -> str:
    """Scope enum values as the org reads them back, sorted and joined, for comparing plans with the org."""
    return ", ".join(sorted({SCOPE_READ_AS.get(v.strip(), v.strip()) for v in values if v and v.strip()}))


def check_api_name(name: str, field_name: str = "app_name") -> str:
    """Salesforce API-name rules: letter first, letters/digits/underscores, no __ or trailing _."""
    fix = "use letters, digits and single underscores, starting with a letter, e.g. Runbook_CI"
    if not isinstance(name, str) or not name:
        raise InputError(field_name, name, fix, problem="it is empty")
    if len(name) > API_NAME_MAX:
        raise InputError(field_name, name, f"use at most {API_NAME_MAX} characters")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise InputError(field_name, name, fix, problem="it has characters an API name cannot have")
    if "__" in name or name.endswith("_"):
        raise InputError(field_name, name, fix, problem="API names cannot contain '__' or end with '_'")
    return name


def _choice(field_name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(field_name, value, f"use one of: {', '.join(allowed)}")
    return value


def parse_flows(flows) -> tuple[str, ...]:
    """``"jwt"``, ``"web"``, ``"jwt,web"`` or a list of them → a tuple in a stable order."""
    items = [f.strip() for f in flows.split(",")] if isinstance(flows, str) else list(flows or ())
    if not items:
        raise InputError("flows", flows, 'give "jwt", "web" or both, e.g. ["jwt", "web"]')
    for item in items:
        _choice("flows", item, FLOWS)
    return tuple(f for f in FLOWS if f in items)


def build_spec(*, app_name: str, label: str = "", contact_email: str, description: str = "",
               callback_port: int | str = 1717, scopes=DEFAULT_SCOPES, cert_path: str | Path = "",
               flows=("jwt",), app_kind: str = "auto", consumer_secret_by: str = "runbook",
               sfdx_project: str | Path = "", create_sfdx_project: bool = False, workdir: str | Path = "") -> AppSpec:
    """Validate phase 2's parameters into an AppSpec; nothing is written (the port is bound and released).

    The jwt flow's certificate is ``cert_path``, else the one phase 1 recorded in ``workdir``. With
    ``app_kind="auto"`` the kind phase 2 recorded for this app name is kept (the org is asked only once).
    """
    check_api_name(app_name)
    if not isinstance(label, str) or len(label) > LABEL_MAX:
        raise InputError("label", label, f"give a label of at most {LABEL_MAX} characters")
    label = label or app_name.replace("_", " ")
    if not label.strip():
        raise InputError("label", label, f"give a non-empty label of at most {LABEL_MAX} characters")
    if not isinstance(contact_email, str) or not EMAIL.match(contact_email):
        raise InputError("contact_email", contact_email, "give an email address like admin@example.com")
    flow_t = parse_flows(flows)
    _choice("app_kind", app_kind, APP_KINDS)
    if app_kind == "auto":
        app_kind = _recorded_kind(workdir, app_name) or app_kind
    _choice("consumer_secret_by", consumer_secret_by, SECRET_BY)
    scope_t = parse_scopes(scopes)
    certificate = certificate_pem(_certificate_path(workdir, cert_path)) if "jwt" in flow_t else ""
    port = check_callback_port(callback_port)
    return AppSpec(
        full_name=app_name, label=label, contact_email=contact_email, description=description,
        callback_url=f"http://localhost:{port}/OauthRedirect", callback_port=port, scopes=scope_t,
        certificate=certificate, flows=flow_t, app_kind=app_kind, consumer_secret_by=consumer_secret_by,
        sfdx_project=plan_project_port(sfdx_project, port, create=bool(create_sfdx_project)),
    )


def _cert_fingerprint(pem: str | None) -> str:
    if not pem:
        return ""
    text = pem if "BEGIN CERTIFICATE" in pem else f"-----BEGIN CERTIFICATE-----\n{pem}\n-----END CERTIFICATE-----\n"
    cert = x509.load_pem_x509_certificate(text.encode())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def flag(value) -> str:
    """A Metadata API boolean as shown in plans (absent means false)."""
    return "true" if str(value).lower() == "true" else "false"


def _comparable(data: dict | None) -> dict[str, str]:
    """The owned fields of an app as display strings, so plans and read-back checks compare alike."""
    data = data or {}
    oauth = data.get("oauthConfig") or {}
    return {
        "label": data.get("label") or "",
        "contactEmail": data.get("contactEmail") or "",
        "description": data.get("description") or "",
        "oauthConfig.callbackUrl": oauth.get("callbackUrl") or "",
        "oauthConfig.certificate (SHA-256)": _cert_fingerprint(oauth.get("certificate")),
        "oauthConfig.scopes": normalised_scopes(oauth.get("scopes") or []),
        "oauthConfig.isConsumerSecretOptional": flag(oauth.get("isConsumerSecretOptional")),
        "oauthConfig.isPkceRequired": flag(oauth.get("isPkceRequired")),
    }


def _recorded_kind(workdir: str | Path, app_name: str) -> str:
    """The kind phase 2 recorded for ``app_name`` in ``workdir`` ("" when it recorded another app or none)."""
    record = open_workdir(workdir).load("connected_app") if workdir else None
    if not record or record.get("full_name") != app_name:
        return ""
    return str(record.get("app_kind") or "")


def plan_connected_app(session: OrgSession, spec: AppSpec, *, apply: bool = True) -> AppPlan:
    """Read the org's app and list what applying ``spec`` would change.

    A create is checked before anything is saved: by a check-only deploy in a dry run (``apply``
    False); when applying, by the create itself, which the org refuses whole (two round trips fewer).
    ``app_kind="auto"`` is decided here (``choose_app_kind``); the plan says which kind and why.
    """
    if spec.app_kind == "auto":
        return choose_app_kind(session, spec, apply=apply)
    if spec.app_kind == "external_client_app":
        from runbook.external_client_app import plan_external_client_app

        return plan_external_client_app(session, spec)
    current = metadata.read(session, METADATA_TYPE, spec.full_name)
    if current is None:
        preflight = preflight_connected_app(session, spec) if not apply else \
            "checked by the create itself (a refused create saves nothing)"
        return AppPlan("create", spec, [], None, preflight=preflight)
    now, want = _comparable(current), _comparable(spec.owned_fields())
    changes = [Change(k, now[k], want[k]) for k in want if now[k] != want[k]]
    return AppPlan("update" if changes else "none", spec, changes, current)


def choose_app_kind(session: OrgSession, spec: AppSpec, *, apply: bool = True) -> AppPlan:
    """The plan for ``app_kind="auto"``: an existing app keeps its kind; a new one is what the org allows.

    One listMetadata call asks for both kinds by name. With neither in the org, a connected app is
    planned where the org allows one (Salesforce still advises it for a Dev Hub that creates scratch orgs
    [V SF DX guide 262.0]) and an External Client App where it does not: a dry run asks by a check-only
    deploy; an apply lets the create ask, and turns into an External Client App if it is refused.
    """
    listed = metadata.list_names(session, [METADATA_TYPE, ECA_TYPE])
    for kind, type_name in (("connected_app", METADATA_TYPE), ("external_client_app", ECA_TYPE)):
        if spec.full_name in listed.get(type_name, []):
            plan = plan_connected_app(session, replace(spec, app_kind=kind), apply=apply)
            article = "an" if kind == "external_client_app" else "a"
            plan.kind_choice = (f"the org has {article} {kind.replace('_', ' ')} named {spec.full_name}: kept as "
                                "that kind")
            return plan
    as_connected_app = replace(spec, app_kind="connected_app")
    if apply:
        return AppPlan("create", as_connected_app, [], None, fallback=True,
                       preflight="checked by the create itself (a refused create saves nothing)",
                       kind_choice="a connected app if the org allows new ones (the create asks), else an "
                                   "External Client App")
    try:
        preflight = preflight_connected_app(session, as_connected_app)
    except PreflightError as refusal:
        return _external_client_app_instead(as_connected_app, refusal)
    return AppPlan("create", as_connected_app, [], None, preflight=preflight,
                   kind_choice="the org allows new connected apps: a connected app, which Salesforce still "
                               "advises for a Dev Hub that creates scratch orgs")


def _external_client_app_instead(spec: AppSpec, refusal: PreflightError) -> AppPlan:
    """A create plan for an External Client App, when the org refused a new connected app (nothing exists yet)."""
    from runbook.external_client_app import COMPONENTS

    return AppPlan("create", replace(spec, app_kind="external_client_app"), [], dict.fromkeys(COMPONENTS),
                   preflight="external client apps need no Salesforce Support exception",
                   kind_choice=f"the org does not allow new connected apps ({refusal.sf_message}): an External "
                               "Client App instead")


def _check_only_zip(spec: AppSpec, api_version: str) -> bytes:
    ns = 'xmlns="http://soap.sforce.com/2006/04/metadata"'
    app = (f'<?xml version="1.0" encoding="UTF-8"?><ConnectedApp {ns}>'
           f"<contactEmail>{escape(spec.contact_email)}</contactEmail><label>{escape(spec.label)}</label>"
           f"<oauthConfig><callbackUrl>{escape(spec.callback_url)}</callbackUrl><scopes>Api</scopes></oauthConfig>"
           "</ConnectedApp>")
    package = (f'<?xml version="1.0" encoding="UTF-8"?><Package {ns}><types><members>{spec.full_name}</members>'
               f"<name>ConnectedApp</name></types><version>{api_version}</version></Package>")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("package.xml", package)
        archive.writestr(f"connectedApps/{spec.full_name}.connectedApp", app)
    return buffer.getvalue()


def preflight_connected_app(session: OrgSession, spec: AppSpec, *, wait_seconds: float = 60) -> str:
    """Ask the org, by a check-only deploy (nothing saved), whether it lets us create a connected app.

    Returns what the user should know; raises PreflightError with the ways out when the org refuses.
    Any other outcome (e.g. a deploy still queued) is not a refusal: the create will tell.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preflight.zip"
        path.write_bytes(_check_only_zip(spec, session.sf.sf_version))
        try:
            started = session.sf.deploy(str(path), sandbox=False, checkOnly=True)
            deadline = time.monotonic() + wait_seconds
            status = session.sf.checkDeployStatus(started["asyncId"])
            while status.get("state") in ("Queued", "Pending", "InProgress") and time.monotonic() < deadline:
                time.sleep(1)
                status = session.sf.checkDeployStatus(started["asyncId"])
        except Exception as exc:  # a preflight that cannot run must not block the create
            return f"could not ask the org ({type(exc).__name__}); the create will tell"
    errors = (status.get("deployment_detail") or {}).get("errors") or []
    for error in errors:
        message = str(error.get("message") or "")
        if RESTRICTED.search(message) or RESTRICTED.search(str(error.get("status") or "")):
            raise PreflightError(f"create ConnectedApp {spec.full_name}", "INSUFFICIENT_ACCESS",
                                 f"this org does not allow new connected apps ({message})", WAYS_OUT)
    if status.get("state") == "Succeeded":
        return "the org allows new connected apps (check-only deploy passed, nothing saved)"
    return f"check-only deploy ended {status.get('state')}; the create will tell"


def _merged(current: dict, spec: AppSpec) -> dict:
    """The update payload: the org's app with this phase's fields replaced, keys never re-sent."""
    owned = spec.owned_fields()
    merged = {**current, **{k: v for k, v in owned.items() if k != "oauthConfig"}}
    oauth = {**(current.get("oauthConfig") or {}), **owned["oauthConfig"]}
    oauth.pop("consumerKey", None)  # Salesforce: "You cannot provide a Consumer Key" on update
    oauth.pop("consumerSecret", None)
    merged["oauthConfig"] = {k: v for k, v in oauth.items() if v is not None}
    for key in ("profileName", "permissionSetName"):  # access is phase 3's; the org keeps it as is
        merged.pop(key, None)
    return {k: v for k, v in merged.items() if v is not None}


def _create(session: OrgSession, plan: AppPlan, secret: str | None) -> None:
    payload = {k: v for k, v in plan.spec.owned_fields().items() if v is not None}
    payload["oauthConfig"] = {k: v for k, v in payload["oauthConfig"].items() if v is not None}
    if secret:
        payload["oauthConfig"]["consumerSecret"] = secret
    payload["oauthPolicy"] = {"ipRelaxation": "ENFORCE", "refreshTokenPolicy": "infinite"}
    try:
        metadata.create(session, METADATA_TYPE, payload)
    except SalesforceError as exc:
        if RESTRICTED.search(exc.sf_message):
            raise PreflightError(exc.operation, exc.code, exc.sf_message, WAYS_OUT) from None
        if exc.code == "INSUFFICIENT_ACCESS" and not exc.fix:
            raise SalesforceError(exc.operation, exc.code, exc.sf_message, metadata.MISSING_PERMISSION_FIX) from None
        raise


def apply_plan(session: OrgSession, plan: AppPlan, secret: str | None = None) -> dict:
    """Create or update the app as planned; returns the app as read back from the org (as read for
    the plan when there was nothing to change)."""
    if plan.spec.app_kind == "external_client_app":
        from runbook.external_client_app import apply_external_client_app

        return apply_external_client_app(session, plan, secret)
    if plan.action == "none":
        return plan.current or {}
    if plan.action == "create":
        _create(session, plan, secret)
    elif plan.action == "update":
        metadata.update(session, METADATA_TYPE, _merged(plan.current or {}, plan.spec))
    after = metadata.read(session, METADATA_TYPE, plan.spec.full_name)
    if after is None:
        raise SalesforceError(f"readMetadata {METADATA_TYPE} {plan.spec.full_name}", "NOT_FOUND",
                              "the app was saved but cannot be read back",
                              "check the org's Setup > App Manager and rerun")
    check_readback(plan, _comparable(plan.spec.owned_fields()), _comparable(after))
    return after


def check_readback(plan: AppPlan, want: dict[str, str], got: dict[str, str]) -> None:
    """Raise when the org did not keep a field the plan set (Salesforce has dropped fields silently)."""
    drift = sorted(k for k, v in want.items() if got.get(k) != v)
    if drift:
        raise SalesforceError(f"{plan.action} {plan.kind_name} {plan.spec.full_name}", "READBACK_MISMATCH",
                              f"the org did not keep {', '.join(drift)}",
                              "rerun the phase; if it persists, set the field in Setup > App Manager")


def consumer_key_of(app: dict | None) -> str:
    """The consumer key in a read-back app (a connected app, or an external client app's components)."""
    app = app or {}
    if "oauthConfig" in app:
        return (app.get("oauthConfig") or {}).get("consumerKey", "")
    return (app.get("ExtlClntAppGlobalOauthSettings") or {}).get("consumerKey", "")


def apply_connected_app(session: OrgSession, plan: AppPlan, *, workdir: str | Path,
                        apply: bool = True) -> AppResult:
    """Apply ``plan`` (unless ``apply`` is False: a dry run) and record the consumer key.

    The web flow's consumer secret is written (pending) before the create sends it; see
    ``runbook.consumer_secret`` for what a lost answer, a refusal and a rerun do with it.
    """
    spec = plan.spec
    makes_secret = spec.web_flow and spec.consumer_secret_by == "runbook"
    pending = consumer_secret.pending_secret(workdir, spec.full_name) if makes_secret else None
    if apply and plan.action == "create" and makes_secret:
        pending = pending or consumer_secret.write_pending(workdir, spec.full_name)
    try:
        after, plan = _apply_with_fallback(session, plan, pending.value if pending else None, apply)
    except SalesforceError as exc:
        if not (pending and plan.action == "create"):
            raise
        if exc.code != NO_ANSWER:
            consumer_secret.discard(pending)  # the org answered no: it holds no secret of ours
            raise
        raise SalesforceError(exc.operation, exc.code, exc.sf_message,
                              f"rerun phase 2: it reads the org first, so nothing is made twice; the consumer "
                              f"secret sent with the create is kept in {pending.path} (pending) and adopted if "
                              "the org made the app") from None
    spec, warnings = plan.spec, []
    if apply and pending:
        consumer_secret.confirm(pending)  # created now, or by the earlier create whose answer was lost
    secret_path = consumer_secret.secret_file(workdir, spec.full_name)
    if apply and makes_secret and plan.action != "create" and not secret_path.is_file():
        warnings.append(consumer_secret.unknown_secret_warning(secret_path, spec.full_name))
    if apply:
        apply_project_port(spec.sfdx_project)
    result = AppResult(
        app_kind=spec.app_kind, full_name=spec.full_name, label=spec.label, consumer_key=consumer_key_of(after),
        callback_url=spec.callback_url, scopes=list(spec.scopes),
        certificate_fingerprint=_cert_fingerprint(spec.certificate), action=plan.action, applied=apply,
        changes=[asdict(c) for c in plan.changes], flows=list(spec.flows), callback_port=spec.callback_port,
        consumer_secret_file=str(secret_path) if spec.web_flow and secret_path.is_file() else "",
        sfdx_project=str(spec.sfdx_project.path) if spec.sfdx_project else "",
        kind_choice=plan.kind_choice, warnings=warnings,
    )
    if apply:
        open_workdir(workdir).save("connected_app", result.as_dict())
    return result


def _apply_with_fallback(session: OrgSession, plan: AppPlan, secret: str | None,
                         apply: bool) -> tuple[dict, AppPlan]:
    """The app after applying and the plan that was applied: an External Client App where ``auto``'s
    connected-app create was refused."""
    if not apply:
        return plan.current or {}, plan
    try:
        return apply_plan(session, plan, secret), plan
    except PreflightError as refusal:
        if not plan.fallback:
            raise
        plan = _external_client_app_instead(plan.spec, refusal)
        return apply_plan(session, plan, secret), plan


def ensure_connected_app(session: OrgSession, spec: AppSpec, *, workdir: str | Path,
                         apply: bool = True) -> tuple[AppPlan, AppResult]:
    """Phase 2 in one call: plan, then apply."""
    plan = plan_connected_app(session, spec, apply=apply)
    return plan, apply_connected_app(session, plan, workdir=workdir, apply=apply)


def _certificate_path(workdir: str | Path, cert_path: str | Path = "") -> Path:
    """The certificate to upload: the parameter, else the one phase 1 recorded."""
    if cert_path:
        return Path(cert_path).expanduser()
    record = open_workdir(workdir).load("certificate") if workdir else None
    if record is None:
        raise InputError("cert_path", str(cert_path), "the jwt flow needs a certificate: run phase 1 "
                         "(01_certificate) first, or give cert_path")
    return Path(record["cert_path"])
