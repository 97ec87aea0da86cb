"""Phase 2: the connected app — desired definition, a plan against the org, apply, read back.

The org is the source of truth: the app is read first, a plan lists exactly what would change
(``apply=False`` stops there), and apply creates the app or updates it in place. The consumer
key is made by the org on create and never sent back; after applying, the app is read again and
checked against the plan, because Salesforce has silently dropped fields on create before.
Fields owned by phase 3 (policies, pre-authorized profiles) are carried over untouched.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from runbook import metadata
from runbook.certificate import certificate_pem
from runbook.errors import InputError, SalesforceError
from runbook.org import OrgSession
from runbook.ports import check_callback_port
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
    certificate: str  # PEM

    def owned_fields(self) -> dict:
        """The metadata this phase owns, in the Metadata API's shape."""
        return {
            "fullName": self.full_name,
            "label": self.label,
            "contactEmail": self.contact_email,
            "description": self.description or None,
            "oauthConfig": {
                "callbackUrl": self.callback_url,
                "certificate": self.certificate,
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

    def rows(self) -> list[tuple[str, str, str]]:
        if self.action == "create":
            return [("(new app)", "", f"{self.spec.full_name} ({self.spec.label})")]
        return [(c.field, c.old, c.new) for c in self.changes]

    def __str__(self) -> str:
        head = {"create": f"Create connected app {self.spec.full_name}",
                "update": f"Update connected app {self.spec.full_name}: {len(self.changes)} change(s)",
                "none": f"Connected app {self.spec.full_name} is up to date: nothing to change"}[self.action]
        lines = [head] + [f"  {c.field}: {c.old or '(empty)'} -> {c.new}" for c in self.changes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td>{escape(c)}</td></tr>"
                       for a, b, c in self.rows())
        table = f"<table><tr><th>Field</th><th>Now</th><th>After</th></tr>{rows}</table>" if rows else ""
        return f"<p><b>{escape(str(self).splitlines()[0])}</b></p>{table}"


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

    def as_dict(self) -> dict:
        return asdict(self)

    def _repr_html_(self) -> str:
        rows = [("App", f"{self.label} ({self.full_name})"), ("Kind", self.app_kind),
                ("Consumer key", self.consumer_key or "(dry run: not created)"),
                ("Callback URL", self.callback_url), ("Scopes", ", ".join(self.scopes)),
                ("Certificate SHA-256", self.certificate_fingerprint),
                ("Action", self.action + ("" if self.applied else " (dry run)"))]
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


def build_spec(*, app_name: str, label: str = "", contact_email: str, description: str = "",
               callback_port: int | str = 1717, scopes=DEFAULT_SCOPES, cert_path: str | Path) -> AppSpec:
    """Validate phase 2's parameters into an AppSpec; nothing is written."""
    check_api_name(app_name)
    label = label or app_name.replace("_", " ")
    if len(label) > LABEL_MAX or not label.strip():
        raise InputError("label", label, f"give a non-empty label of at most {LABEL_MAX} characters")
    if not isinstance(contact_email, str) or not EMAIL.match(contact_email):
        raise InputError("contact_email", contact_email, "give an email address like admin@example.com")
    port = check_callback_port(callback_port)
    return AppSpec(
        full_name=app_name,
        label=label,
        contact_email=contact_email,
        description=description,
        callback_url=f"http://localhost:{port}/OauthRedirect",
        callback_port=port,
        scopes=parse_scopes(scopes),
        certificate=certificate_pem(Path(cert_path)),
    )


def _cert_fingerprint(pem: str | None) -> str:
    if not pem:
        return ""
    text = pem if "BEGIN CERTIFICATE" in pem else f"-----BEGIN CERTIFICATE-----\n{pem}\n-----END CERTIFICATE-----\n"
    cert = x509.load_pem_x509_certificate(text.encode())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


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
        "oauthConfig.scopes": ", ".join(sorted(oauth.get("scopes") or [])),
    }


def plan_connected_app(session: OrgSession, spec: AppSpec) -> AppPlan:
    """Read the org's app and list what applying ``spec`` would change."""
    current = metadata.read(session, METADATA_TYPE, spec.full_name)
    if current is None:
        return AppPlan("create", spec, [], None)
    now, want = _comparable(current), _comparable(spec.owned_fields())
    changes = [Change(k, now[k], want[k]) for k in want if now[k] != want[k]]
    return AppPlan("update" if changes else "none", spec, changes, current)


def _merged(current: dict, spec: AppSpec) -> dict:
    """The update payload: the org's app with this phase's fields replaced, keys never re-sent."""
    owned = spec.owned_fields()
    merged = {**current, **{k: v for k, v in owned.items() if k != "oauthConfig"}}
    oauth = {**(current.get("oauthConfig") or {}), **owned["oauthConfig"]}
    oauth.pop("consumerKey", None)  # Salesforce: "You cannot provide a Consumer Key" on update
    oauth.pop("consumerSecret", None)
    merged["oauthConfig"] = oauth
    for key in ("profileName", "permissionSetName"):  # access is phase 3's; the org keeps it as is
        merged.pop(key, None)
    return {k: v for k, v in merged.items() if v is not None}


def apply_plan(session: OrgSession, plan: AppPlan) -> dict:
    """Create or update the app as planned; returns the app as read back from the org."""
    if plan.action == "create":
        payload = {k: v for k, v in plan.spec.owned_fields().items() if v is not None}
        payload["oauthPolicy"] = {"ipRelaxation": "ENFORCE", "refreshTokenPolicy": "infinite"}
        metadata.create(session, METADATA_TYPE, payload)
    elif plan.action == "update":
        metadata.update(session, METADATA_TYPE, _merged(plan.current or {}, plan.spec))
    after = metadata.read(session, METADATA_TYPE, plan.spec.full_name)
    if after is None:
        raise SalesforceError(f"readMetadata {METADATA_TYPE} {plan.spec.full_name}", "NOT_FOUND",
                              "the app was saved but cannot be read back",
                              "check the org's Setup > App Manager and rerun")
    drift = {k: v for k, v in _comparable(plan.spec.owned_fields()).items() if _comparable(after)[k] != v}
    if drift:
        raise SalesforceError(f"{plan.action} {METADATA_TYPE} {plan.spec.full_name}", "READBACK_MISMATCH",
                              f"the org did not keep {', '.join(sorted(drift))}",
                              "rerun the phase; if it persists, set the field in Setup > App Manager")
    return after


def apply_connected_app(session: OrgSession, plan: AppPlan, *, workdir: str | Path,
                        apply: bool = True) -> AppResult:
    """Apply ``plan`` (unless ``apply`` is False: a dry run) and record the consumer key."""
    after = apply_plan(session, plan) if apply else plan.current
    consumer_key = ((after or {}).get("oauthConfig") or {}).get("consumerKey", "")
    spec = plan.spec
    result = AppResult(
        app_kind="connected_app", full_name=spec.full_name, label=spec.label, consumer_key=consumer_key,
        callback_url=spec.callback_url, scopes=list(spec.scopes),
        certificate_fingerprint=_cert_fingerprint(spec.certificate), action=plan.action, applied=apply,
        changes=[asdict(c) for c in plan.changes],
    )
    if apply:
        open_workdir(workdir).save("connected_app", result.as_dict())
    return result


def ensure_connected_app(session: OrgSession, spec: AppSpec, *, workdir: str | Path,
                         apply: bool = True) -> tuple[AppPlan, AppResult]:
    """Phase 2 in one call: plan, then apply."""
    plan = plan_connected_app(session, spec)
    return plan, apply_connected_app(session, plan, workdir=workdir, apply=apply)


def cert_path_from_workdir(workdir: str | Path, cert_path: str = "") -> Path:
    """The certificate to upload: the parameter, else the one phase 1 recorded."""
    if cert_path:
        return Path(cert_path).expanduser()
    record = open_workdir(workdir).load("certificate")
    if record is None:
        raise InputError("cert_path", cert_path, "run phase 1 (01_certificate) first, or give cert_path")
    return Path(record["cert_path"])
