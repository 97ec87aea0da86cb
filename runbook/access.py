"""Phase 3: OAuth policies and who may use the app — exactly the users the admin meant.

Policies ("Admin approved users are pre-authorized", IP relaxation, refresh token policy) and
pre-authorized profiles / permission sets live where the app kind keeps them:

- a **connected app** keeps policies in its ``oauthConfig`` / ``oauthPolicy`` metadata and its
  pre-authorized profiles and permission sets in ``profileName`` / ``permissionSetName`` (the org
  stores them as the SetupEntityAccess rows Manage Profiles / Manage Permission Sets write), so
  one metadata read shows everything and one update changes policies and grants together;
- an **external client app** keeps both in its ``ExtlClntAppOauthConfigurablePolicies`` component
  (``permittedUsersPolicyType``, ``commaSeparatedProfile``, ``commaSeparatedPermissionSet``).

The phase converges: a rerun adds only what is missing and writes nothing when nothing is, and
pre-authorizations are removed only when ``exclusive=True`` asks for it (the plan lists them first).
A connected app's read may name a permission set by API name or by label (Salesforce's choice is
not known), so the two are compared by API name and a label never shows up as a remove plus an add.
Pre-authorizations need admin-approved users: with ``permitted_users="all_users"`` none is sent,
and the plan names the profiles and permission sets it leaves out.
Round trips are few on purpose: the app is read once; the org's permission sets, users and
assignments are looked up (one Composite request) only when a name is not already granted or users
are to be assigned; new permission sets and assignments are created in one all-or-none request.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path

from runbook import metadata, rest
from runbook.connected_app import METADATA_TYPE, check_api_name
from runbook.errors import InputError, SalesforceError
from runbook.org import OrgSession
from runbook.workdir import open_workdir

PERMITTED_USERS = {"admin_approved": True, "all_users": False}
IP_RELAXATION = ("ENFORCE", "BYPASS_2FACTOR", "BYPASS", "ENFORCE_RELAXREFRESH")
REFRESH_POLICY = re.compile(r"^(infinite|zero|specific_(lifetime|inactivity):[1-9][0-9]{0,3}:(HOURS|DAYS|MONTHS))$")
APP_KINDS = ("connected_app", "external_client_app")

ECA_TYPE = "ExternalClientApplication"
ECA_POLICIES_TYPE = "ExtlClntAppOauthConfigurablePolicies"
ECA_POLICIES_SUFFIX = "OAuthSettings_defaultPolicy"  # phase 2's (and sfdx-hardis') name; found ones keep theirs
ECA_PERMITTED = {True: "AdminApprovedPreAuthorized", False: "AllSelfAuthorized"}
ECA_IP_RELAXATION = {"ENFORCE": "Enforce", "BYPASS": "Bypass", "BYPASS_2FACTOR": "Bypass_2factor",
                     "ENFORCE_RELAXREFRESH": "Enforce_RelaxRefresh"}
ECA_REFRESH = {"infinite": "Infinite", "zero": "Zero", "specific_lifetime": "SpecificLifetime",
               "specific_inactivity": "SpecificInactivity"}


@dataclass(frozen=True)
class AccessSpec:
    """Validated phase 3 parameters."""

    app_name: str
    admin_approved: bool
    ip_relaxation: str
    refresh_token_policy: str
    profiles: tuple[str, ...]
    permission_sets: tuple[str, ...]
    create_permission_sets: bool
    assign_users: tuple[str, ...]
    exclusive: bool
    warnings: tuple[str, ...] = ()
    app_kind: str = ""  # connected_app | external_client_app; "" = find out from the org


def build_access_spec(*, app_name: str, permitted_users: str = "admin_approved", ip_relaxation: str = "ENFORCE",
                      refresh_token_policy: str = "infinite", profiles=("System Administrator",),
                      permission_sets=(), create_permission_sets: bool = False, assign_users=(),
                      exclusive: bool = False, workdir: str | Path | None = None,
                      app_kind: str = "") -> AccessSpec:
    """Validate phase 3's parameters; nothing is read from or written to the org yet.

    ``app_kind`` comes from phase 2's record in ``workdir`` when not given (and the record is for
    this app); left empty, ``plan_access`` asks the org which kind ``app_name`` is.
    """
    check_api_name(app_name)
    if permitted_users not in PERMITTED_USERS:
        raise InputError("permitted_users", permitted_users, 'use "admin_approved" (pre-authorized profiles '
                         'and permission sets only, needed for JWT) or "all_users" (self-authorize)')
    if ip_relaxation not in IP_RELAXATION:
        raise InputError("ip_relaxation", ip_relaxation, f"use one of {', '.join(IP_RELAXATION)}")
    if not REFRESH_POLICY.match(str(refresh_token_policy)):
        raise InputError("refresh_token_policy", refresh_token_policy,
                         'use "infinite", "zero", "specific_lifetime:N:HOURS|DAYS|MONTHS" or '
                         '"specific_inactivity:N:HOURS|DAYS|MONTHS" (N from 1 to 9999)')
    profiles_t, sets_t, users_t = _names("profiles", profiles), _names("permission_sets", permission_sets), \
        _names("assign_users", assign_users)
    if create_permission_sets:
        for name in sets_t:
            new_permission_set_names(name)
    if users_t and not sets_t:
        raise InputError("assign_users", list(users_t), "name the permission_sets to assign them to")
    if PERMITTED_USERS[permitted_users] and not profiles_t and not sets_t:
        raise InputError("profiles", [], "name at least one profile or permission set whose users may log in "
                         "(e.g. profiles=['System Administrator']), or use permitted_users='all_users'",
                         problem="with admin-approved users and no profiles or permission sets, nobody can log in")
    kind = app_kind or _recorded_app_kind(workdir, app_name)
    if kind and kind not in APP_KINDS:
        raise InputError("app_kind", kind, f"use one of {', '.join(APP_KINDS)}")
    return AccessSpec(app_name, PERMITTED_USERS[permitted_users], ip_relaxation, str(refresh_token_policy),
                      profiles_t, sets_t, bool(create_permission_sets), users_t, bool(exclusive), (), kind)


def _recorded_app_kind(workdir, app_name: str) -> str:
    """The app kind phase 2 recorded for ``app_name`` in ``workdir``, or "" when it recorded none."""
    record = open_workdir(workdir).load("connected_app") if workdir else None
    if not record or record.get("full_name", app_name) != app_name:
        return ""
    return str(record.get("app_kind") or "")


def _names(field_name: str, value) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InputError(field_name, value, "give a list of names, e.g. ['System Administrator']")
    return tuple(dict.fromkeys(i.strip() for i in items))


def new_permission_set_names(name: str) -> tuple[str, str]:
    """(API name, label) for a permission set to create from ``name``, which may be either.

    An API name (``Runbook_JWT_Users``) gets the label "Runbook JWT Users"; a label ("Runbook JWT
    Users") gets the API name ``Runbook_JWT_Users``.
    """
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        return check_api_name(name, "permission_sets"), name.replace("_", " ")
    api_name = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    return check_api_name(api_name, "permission_sets"), name


@dataclass
class Grant:
    """One pre-authorization: a profile or permission set, and the permission set that carries it."""

    kind: str  # profile | permission_set
    name: str  # profile name or permission set API name
    parent_id: str  # PermissionSet Id (profile-owned for profiles); "" when not looked up or not created yet

    @property
    def key(self) -> tuple[str, str]:
        """Names compare as Salesforce compares them: ignoring case."""
        return self.kind, self.name.lower()


@dataclass
class AccessPlan:
    """What applying phase 3 would change in the org."""

    policy_changes: list[tuple[str, str, str]]
    add: list[Grant]
    remove: list[Grant]
    create_sets: list[str]  # API names (labels in new_sets)
    assign: list[tuple[str, str]]  # (username, permission set API name)
    warnings: list[str] = field(default_factory=list)
    current_app: dict | None = field(default=None, repr=False)  # ECA: the policies component (None: create)
    app_kind: str = "connected_app"
    keep: list[Grant] = field(default_factory=list)  # pre-authorizations that stay as they are
    new_sets: dict[str, str] = field(default_factory=dict)  # API name -> label
    user_ids: dict[str, str] = field(default_factory=dict)  # username -> User Id, of the users to assign
    not_sent: list[Grant] = field(default_factory=list)  # asked for, but all_users takes no grants

    @property
    def is_empty(self) -> bool:
        return not (self.policy_changes or self.add or self.remove or self.create_sets or self.assign)

    def lines(self) -> list[str]:
        """The plan as shown: the changes (or "nothing to change"), then what is left out on purpose."""
        return (self.change_lines() or ["nothing to change"]) + self.not_sent_lines()

    def change_lines(self) -> list[str]:
        out = [f"policy {f}: {old} -> {new}" for f, old, new in self.policy_changes]
        out += [f"create permission set {n} (label {self.new_sets.get(n, n)!r})" for n in self.create_sets]
        out += [f"pre-authorize {g.kind} {g.name}" for g in self.add]
        out += [f"REMOVE pre-authorization of {g.kind} {g.name}" for g in self.remove]
        out += [f"assign permission set {p} to {u}" for u, p in self.assign]
        return out

    def not_sent_lines(self) -> list[str]:
        """What the plan leaves out on purpose: with all_users, Salesforce takes no pre-authorizations."""
        if not self.not_sent:
            return []
        names = ", ".join(f"{g.kind} {g.name}" for g in self.not_sent)
        return [f"not sent: pre-authorization of {names}. With permitted_users='all_users' every user may "
                "self-authorize, and Salesforce takes profiles and permission sets only for admin-approved "
                "users (isAdminApproved=true); use permitted_users='admin_approved' to pre-authorize them"]

    def __str__(self) -> str:
        return "\n".join(self.lines() + [f"warning: {w}" for w in self.warnings])

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{escape(line)}</li>" for line in self.lines())
        warns = "".join(f"<li><b>warning:</b> {escape(w)}</li>" for w in self.warnings)
        return f"<b>Access plan</b><ul>{items}{warns}</ul>"


@dataclass
class AccessResult:
    app_name: str
    admin_approved: bool
    ip_relaxation: str
    refresh_token_policy: str
    profiles: list[str]
    permission_sets: list[str]
    applied: bool
    changes: list[str]
    warnings: list[str]
    app_kind: str = "connected_app"

    def as_dict(self) -> dict:
        return asdict(self)

    def _repr_html_(self) -> str:
        rows = [("App", f"{self.app_name} ({self.app_kind})"),
                ("Permitted users", "Admin approved users are pre-authorized" if self.admin_approved
                 else "All users may self-authorize"),
                ("IP relaxation", self.ip_relaxation), ("Refresh token policy", self.refresh_token_policy),
                ("Pre-authorized profiles", ", ".join(self.profiles) or "(none)"),
                ("Pre-authorized permission sets", ", ".join(self.permission_sets) or "(none)"),
                ("Changes", "; ".join(self.changes) or "none")]
        rows += [("Warning", w) for w in self.warnings]
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in rows)
        return f"<table>{body}</table>"


def _closest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.4)
    return f"did you mean {', '.join(repr(n) for n in near)}?" if near else \
        f"existing: {', '.join(sorted(choices)[:8])}"


@dataclass
class _OrgSets:
    """The org's permission sets: profile-owned ones by profile name, standalone ones by API name."""

    by_profile: dict[str, dict]
    standalone: list[dict]

    @classmethod
    def of(cls, sets: list[dict]) -> _OrgSets:
        return cls({s["Profile"]["Name"]: s for s in sets if s["IsOwnedByProfile"] and s.get("Profile")},
                   [s for s in sets if not s["IsOwnedByProfile"]])

    def standalone_named(self, name: str) -> dict | None:
        """A standalone permission set by Id, API name or label (case-insensitive)."""
        low = name.lower()
        return next((s for s in self.standalone if low in (s["Id"].lower(), s["Name"].lower(),
                                                            s["Label"].lower())), None)


_SETS = "SELECT Id, Name, Label, IsOwnedByProfile, Profile.Name FROM PermissionSet"


@dataclass
class _OrgLookup:
    """What the org says about the names the parameters use: permission sets, users, assignments."""

    sets: _OrgSets
    users: dict[str, dict]  # by lower-case username
    held: set[tuple[str, str]]  # (AssigneeId, PermissionSetId)


def _lookup(session: OrgSession, spec: AccessSpec, *, every_set: bool = False,
            also_sets: list[str] | tuple[str, ...] = ()) -> _OrgLookup:
    """One round trip: the permission sets the parameters name (as profiles' own sets, API names or
    labels, and the names new ones would get) and ``also_sets`` names, or ``every_set``, the users to
    assign, and what those users hold."""
    set_names = sorted({n for name in spec.permission_sets for n in (name, *_new_names(name, spec))}
                       | set(also_sets))
    where = [f"(IsOwnedByProfile = true AND Profile.Name IN ({_in(spec.profiles)}))"] if spec.profiles else []
    if set_names:
        where.append(f"(IsOwnedByProfile = false AND (Name IN ({_in(set_names)}) OR Label IN ({_in(set_names)})))")
    soqls = {"sets": _SETS if every_set else f"{_SETS} WHERE {' OR '.join(where)}"} if where or every_set else {}
    if spec.assign_users:
        soqls["users"] = f"SELECT Id, Username, IsActive FROM User WHERE Username IN ({_in(spec.assign_users)})"
        soqls["held"] = ("SELECT AssigneeId, PermissionSetId FROM PermissionSetAssignment WHERE "
                         f"Assignee.Username IN ({_in(spec.assign_users)})")
    found = rest.query_many(session, soqls) if soqls else {}
    return _OrgLookup(_OrgSets.of(found.get("sets", [])),
                      {u["Username"].lower(): u for u in found.get("users", [])},
                      {(r["AssigneeId"], r["PermissionSetId"]) for r in found.get("held", [])})


def _new_names(name: str, spec: AccessSpec) -> tuple[str, ...]:
    return new_permission_set_names(name) if spec.create_permission_sets else ()


def _in(values) -> str:
    return ", ".join(rest.quote(v) for v in values)


def _all_sets(session: OrgSession) -> _OrgSets:
    """Every permission set: only to suggest names when one asked for does not exist."""
    return _OrgSets.of(rest.query(session, _SETS))


def _wanted_grants(session: OrgSession, spec: AccessSpec, sets: _OrgSets) -> tuple[list[Grant], dict[str, str]]:
    """The grants the parameters ask for, and the permission sets to create (API name -> label).

    Refuses an unknown profile, or an unknown permission set without create_permission_sets, with
    the closest existing names; nothing has been written at this point.
    """
    grants: list[Grant] = []
    for name in spec.profiles:
        match = next((p for p in sets.by_profile if p.lower() == name.lower()), None)
        if match is None:
            known = list(_all_sets(session).by_profile)
            raise InputError("profiles", name, _closest(name, known), problem="no such profile")
        grants.append(Grant("profile", match, sets.by_profile[match]["Id"]))
    create: dict[str, str] = {}
    for name in spec.permission_sets:
        found = sets.standalone_named(name)
        if found is None and spec.create_permission_sets:
            api_name, label = new_permission_set_names(name)
            found = sets.standalone_named(api_name) or sets.standalone_named(label)
            if found is None:
                create[api_name] = label
                grants.append(Grant("permission_set", api_name, ""))
                continue
        if found is None:
            standalone = _all_sets(session).standalone
            choices = [s["Name"] for s in standalone] + [s["Label"] for s in standalone]
            raise InputError("permission_sets", name, _closest(name, choices) +
                             " Or set create_permission_sets=True to create it.", problem="no such permission set")
        grants.append(Grant("permission_set", found["Name"], found["Id"]))
    return list({(g.kind, g.name): g for g in grants}.values()), create


def plan_access(session: OrgSession, spec: AccessSpec) -> AccessPlan:
    """Read the app and its policies and grants; list what must change.

    Every parameter not already in effect is checked against the org here (an unknown profile,
    permission set or user is an ``InputError``), so a refused plan has changed nothing.
    """
    kind = spec.app_kind or _app_kind_in_org(session, spec.app_name)
    if kind == "external_client_app":
        lookup = _lookup(session, spec, every_set=True)  # the component may hold sets by Id
        requested, create = _wanted_grants(session, spec, lookup.sets)
        policies, have = _read_eca(session, spec, lookup.sets)
        changes = _eca_policy_changes(policies or {}, spec)
    else:
        policies, have = _read_connected_app(session, spec)
        changes = _policy_changes(policies, spec)
        have, requested, create, lookup = _connected_app_grants(session, spec, have)
    # Salesforce takes profiles and permission sets only with admin-approved users: with all_users none is sent
    wanted, not_sent = (requested, []) if spec.admin_approved else ([], requested)
    have_keys = {g.key for g in have}
    add = [g for g in wanted if g.key not in have_keys]
    keep = [g for g in wanted if g.key in have_keys]
    wanted_keys = {g.key for g in wanted}
    extra = [g for g in have if g.key not in wanted_keys]  # keyed as add is, so never both removed and added
    warnings = list(spec.warnings)
    if extra and not spec.exclusive:
        why = "not in the parameters" if spec.admin_approved else "from before, unused while all users may " \
            "self-authorize"
        warnings.append(f"also pre-authorized, {why} (kept; exclusive=True would remove them): "
                        + ", ".join(f"{g.kind} {g.name}" for g in extra))
    assign, user_warnings = _plan_assignments(spec, requested, create, lookup) if lookup else ([], [])
    return AccessPlan(changes, add, extra if spec.exclusive else [], list(create), assign,
                      warnings + user_warnings, policies, kind or "connected_app",
                      keep + ([] if spec.exclusive else extra), create,
                      {u["Username"]: u["Id"] for u in lookup.users.values()} if lookup else {}, not_sent)


def _connected_app_grants(session: OrgSession, spec: AccessSpec, have: list[Grant],
                          ) -> tuple[list[Grant], list[Grant], dict[str, str], _OrgLookup | None]:
    """(the app's grants, the grants asked for, permission sets to create, the org lookup or None).

    A read may name a permission set by its API name or by its label (which one Salesforce answers is
    not known), so when the org is asked about names it is asked about the app's too, and both sides
    then compare by API name: a label never looks like a different set to add (or, with exclusive, to
    remove).
    """
    granted = _granted(spec, have)
    if granted is not None:
        return have, granted, {}, None
    lookup = _lookup(session, spec, also_sets=[g.name for g in have if g.kind == "permission_set"])
    wanted, create = _wanted_grants(session, spec, lookup.sets)
    return [_by_api_name(g, lookup.sets) for g in have], wanted, create, lookup


def _by_api_name(grant: Grant, sets: _OrgSets) -> Grant:
    """A permission set grant named by its API name (and its Id), whatever name the read gave it."""
    found = sets.standalone_named(grant.name) if grant.kind == "permission_set" else None
    return Grant(grant.kind, found["Name"], found["Id"]) if found else grant


def _granted(spec: AccessSpec, have: list[Grant]) -> list[Grant] | None:
    """The wanted grants when every one is already in effect and no user is to be assigned (then the
    org need not be asked about names); None when the org must be asked."""
    if spec.assign_users:
        return None
    have_by_key = {g.key: g for g in have}
    wanted = [have_by_key.get(Grant(kind, name, "").key) for kind, names in
              (("profile", spec.profiles), ("permission_set", spec.permission_sets)) for name in names]
    return None if None in wanted else wanted


def _app_kind_in_org(session: OrgSession, app_name: str) -> str:
    """Which kind of app ``app_name`` is, asking the org (phase 2 left no record saying so)."""
    if metadata.read(session, METADATA_TYPE, app_name) is not None:
        return "connected_app"
    if metadata.read(session, ECA_TYPE, app_name) is not None:
        return "external_client_app"
    raise InputError("app_name", app_name, "the org has no connected app or external client app of that name: "
                     "run phase 2 (02_connected_app) first, or fix app_name")


# ---------------------------------------------------------------- connected apps: one metadata component

def _policy_changes(app: dict, spec: AccessSpec) -> list[tuple[str, str, str]]:
    oauth, policy = app.get("oauthConfig") or {}, app.get("oauthPolicy") or {}
    have = {"isAdminApproved": str(bool(oauth.get("isAdminApproved"))).lower(),
            "ipRelaxation": policy.get("ipRelaxation") or "ENFORCE",
            "refreshTokenPolicy": policy.get("refreshTokenPolicy") or "infinite"}
    want = {"isAdminApproved": str(spec.admin_approved).lower(), "ipRelaxation": spec.ip_relaxation,
            "refreshTokenPolicy": spec.refresh_token_policy}
    return [(k, have[k], want[k]) for k in want if have[k] != want[k]]


def _read_connected_app(session: OrgSession, spec: AccessSpec) -> tuple[dict, list[Grant]]:
    """The app's metadata and its grants (its profileName and permissionSetName elements)."""
    app = metadata.read(session, METADATA_TYPE, spec.app_name)
    if app is None:
        raise InputError("app_name", spec.app_name, "the org has no such connected app: run phase 2 "
                         "(02_connected_app) first, or fix app_name")
    return app, [Grant("profile", n, "") for n in _listed(app.get("profileName"))] + \
        [Grant("permission_set", n, "") for n in _listed(app.get("permissionSetName"))]


def _listed(value) -> list[str]:
    return [v for v in ([value] if isinstance(value, str) else value or []) if v and v.strip()]


def _apply_connected_app(session: OrgSession, spec: AccessSpec, plan: AccessPlan) -> None:
    """One metadata update: the policies, and, when grants change, the complete grant lists."""
    if not (plan.policy_changes or plan.add or plan.remove):
        return
    app = plan.current_app or {}
    data = {k: v for k, v in app.items() if k not in ("profileName", "permissionSetName")}
    oauth = {k: v for k, v in (data.get("oauthConfig") or {}).items() if k not in ("consumerKey", "consumerSecret")}
    oauth["isAdminApproved"] = spec.admin_approved
    data["oauthConfig"] = oauth
    data["oauthPolicy"] = {**(data.get("oauthPolicy") or {}), "ipRelaxation": spec.ip_relaxation,
                           "refreshTokenPolicy": spec.refresh_token_policy}
    if plan.add or plan.remove:  # without these elements the org keeps the grants as they are
        grants = plan.keep + plan.add
        profiles = [g.name for g in grants if g.kind == "profile"]
        sets = [g.name for g in grants if g.kind == "permission_set"]
        # An empty element is the Metadata API's way to say "none" (both lists are replaced together).
        data["profileName"], data["permissionSetName"] = profiles or [""], sets or [""]
    metadata.update(session, METADATA_TYPE, data)


# ---------------------------------------------------------------- external client apps: the OAuth policies component

def _eca_policies_name(session: OrgSession, app_name: str) -> str | None:
    """The full name of the app's ExtlClntAppOauthConfigurablePolicies component, if it has one.

    Phase 2 names it ``<App>OAuthSettings_defaultPolicy``; other tools pick other names (only the
    app's name as prefix is conventional), so when that name is not it, the org lists them and the
    one whose ``externalClientApplication`` is this app wins.
    """
    usual = metadata.read(session, ECA_POLICIES_TYPE, app_name + ECA_POLICIES_SUFFIX)
    if usual and (usual.get("externalClientApplication") or "").lower() == app_name.lower():
        return usual["fullName"]
    mdapi = metadata._mdapi(session)
    query = mdapi._client.get_type("ns0:ListMetadataQuery")(type=ECA_POLICIES_TYPE)
    try:
        listed = mdapi.list_metadata([query]) or []
    except Exception as exc:  # zeep Fault: keep Salesforce's words
        raise SalesforceError(f"listMetadata {ECA_POLICIES_TYPE}", "SOAP_FAULT", str(exc)) from None
    names = sorted((item.fullName for item in listed),
                   key=lambda n: (not n.lower().startswith(app_name.lower()), n))
    for name in names:
        component = metadata.read(session, ECA_POLICIES_TYPE, name)
        if component and (component.get("externalClientApplication") or "").lower() == app_name.lower():
            return name
    return None


def _comma(value) -> list[str]:
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


def _read_eca(session: OrgSession, spec: AccessSpec, sets: _OrgSets) -> tuple[dict | None, list[Grant]]:
    """The app's OAuth policies component (None: none yet) and its grants."""
    if metadata.read(session, ECA_TYPE, spec.app_name) is None:
        raise InputError("app_name", spec.app_name, "the org has no such external client app: run phase 2 "
                         "(02_connected_app) first, or fix app_name")
    name = _eca_policies_name(session, spec.app_name)
    policies = metadata.read(session, ECA_POLICIES_TYPE, name) if name else None
    grants = []
    for profile in _comma((policies or {}).get("commaSeparatedProfile")):
        row = next((r for p, r in sets.by_profile.items() if p.lower() == profile.lower()), None)
        grants.append(Grant("profile", profile, row["Id"] if row else f"profile:{profile}"))
    for value in _comma((policies or {}).get("commaSeparatedPermissionSet")):
        found = sets.standalone_named(value)
        grants.append(Grant("permission_set", found["Name"], found["Id"]) if found
                      else Grant("permission_set", value, f"permission_set:{value}"))
    return policies, grants


def _eca_refresh(policies: dict) -> str:
    kind = policies.get("refreshTokenPolicyType") or "Infinite"
    policy = next((k for k, v in ECA_REFRESH.items() if v == kind), kind)
    if policy.startswith("specific_"):
        unit = str(policies.get("refreshTokenValidityUnit") or "").upper()
        return f"{policy}:{policies.get('refreshTokenValidityPeriod')}:{unit}"
    return policy


def _eca_policy_changes(policies: dict, spec: AccessSpec) -> list[tuple[str, str, str]]:
    ip = policies.get("ipRelaxationPolicyType") or "Enforce"
    have = {"permittedUsersPolicyType": policies.get("permittedUsersPolicyType") or ECA_PERMITTED[False],
            "ipRelaxationPolicyType": next((k for k, v in ECA_IP_RELAXATION.items() if v == ip), ip),
            "refreshTokenPolicy": _eca_refresh(policies)}
    want = {"permittedUsersPolicyType": ECA_PERMITTED[spec.admin_approved],
            "ipRelaxationPolicyType": spec.ip_relaxation, "refreshTokenPolicy": spec.refresh_token_policy}
    return [(k, have[k], want[k]) for k in want if have[k] != want[k]]


def _eca_policy_fields(spec: AccessSpec) -> dict:
    kind, _, rest_ = spec.refresh_token_policy.partition(":")
    fields = {"permittedUsersPolicyType": ECA_PERMITTED[spec.admin_approved],
              "ipRelaxationPolicyType": ECA_IP_RELAXATION[spec.ip_relaxation],
              "refreshTokenPolicyType": ECA_REFRESH[kind]}
    if rest_:
        period, unit = rest_.split(":")
        fields |= {"refreshTokenValidityPeriod": int(period), "refreshTokenValidityUnit": unit.capitalize()}
    return fields


def _apply_eca(session: OrgSession, spec: AccessSpec, plan: AccessPlan, created: dict[str, str]) -> None:
    """One save of the policies component: policies, and the grants kept plus the ones added."""
    grants = plan.keep + plan.add
    profiles = [g.name for g in grants if g.kind == "profile"]
    # The documented content is permission set Ids (names also work in some orgs; Ids always do).
    set_ids = [created[g.name] if not g.parent_id else g.name if g.parent_id.startswith("permission_set:")
               else g.parent_id for g in grants if g.kind == "permission_set"]
    current = plan.current_app
    data = {k: v for k, v in (current or {}).items()
            if k not in ("refreshTokenValidityPeriod", "refreshTokenValidityUnit", "commaSeparatedProfile",
                         "commaSeparatedPermissionSet")}
    data |= _eca_policy_fields(spec)
    if profiles:
        data["commaSeparatedProfile"] = ", ".join(profiles)
    if set_ids:
        data["commaSeparatedPermissionSet"] = ", ".join(set_ids)
    if current is None:
        data |= {"fullName": spec.app_name + ECA_POLICIES_SUFFIX, "externalClientApplication": spec.app_name,
                 "label": f"{spec.app_name} OAuth policies"}
        metadata.create(session, ECA_POLICIES_TYPE, data)
    else:
        metadata.update(session, ECA_POLICIES_TYPE, data)


# ---------------------------------------------------------------- permission sets and their users

def _plan_assignments(spec: AccessSpec, wanted: list[Grant], create: dict[str, str],
                      lookup: _OrgLookup) -> tuple[list[tuple[str, str]], list[str]]:
    """(username, permission set API name) pairs still to assign, and warnings about the users."""
    for username in spec.assign_users:
        if username.lower() not in lookup.users:
            raise InputError("assign_users", username, "give the Salesforce username of an existing user",
                             problem="no such user")
    warnings = [f"user {u['Username']} is inactive: the assignment is made, but they cannot log in"
                for u in lookup.users.values() if not u.get("IsActive", True)]
    plan = []
    for grant in (g for g in wanted if g.kind == "permission_set"):
        for username in spec.assign_users:
            user = lookup.users[username.lower()]
            if grant.name in create or (user["Id"], grant.parent_id) not in lookup.held:
                plan.append((user["Username"], grant.name))
    return plan, warnings


def _create_sets_and_assign(session: OrgSession, plan: AccessPlan) -> dict[str, str]:
    """New permission sets and the assignments, in one all-or-none request; the new sets' Ids by name."""
    records = [(f"set{i}", "PermissionSet", {"Name": name, "Label": plan.new_sets.get(name, name)})
               for i, name in enumerate(plan.create_sets)]
    refs = {name: f"@{{set{i}.id}}" for i, name in enumerate(plan.create_sets)}
    users = plan.user_ids
    ids = {g.name: g.parent_id for g in plan.keep + plan.add if g.kind == "permission_set" and g.parent_id}
    records += [(f"assign{i}", "PermissionSetAssignment", {"AssigneeId": users[username],
                                                           "PermissionSetId": refs.get(name) or ids[name]})
                for i, (username, name) in enumerate(plan.assign)]
    made = rest.create_many(session, records)
    return {name: made[f"set{i}"] for i, name in enumerate(plan.create_sets)}


# ---------------------------------------------------------------- apply and read back

def apply_access(session: OrgSession, spec: AccessSpec, plan: AccessPlan) -> None:
    """Carry out ``plan``: new permission sets and assignments first (the grants name them), then
    policies and grants."""
    created = _create_sets_and_assign(session, plan) if plan.create_sets or plan.assign else {}
    if plan.app_kind == "external_client_app":
        if plan.policy_changes or plan.add or plan.remove:
            _apply_eca(session, spec, plan, created)
    else:
        _apply_connected_app(session, spec, plan)


def apply_access_plan(session: OrgSession, spec: AccessSpec, plan: AccessPlan, *, workdir: str | Path,
                      apply: bool = True) -> AccessResult:
    """Apply ``plan`` unless ``apply`` is False, and record the result.

    No read-back: each write's answer is checked (an all-or-none create, a metadata save that
    succeeds whole or not at all), and phase 4's JWT login is the proof that the grants work.
    """
    if apply and not plan.is_empty:
        apply_access(session, spec, plan)
    granted = plan.keep + plan.add
    result = AccessResult(spec.app_name, spec.admin_approved, spec.ip_relaxation, spec.refresh_token_policy,
                          [g.name for g in granted if g.kind == "profile"],
                          [g.name for g in granted if g.kind == "permission_set"], apply,
                          plan.change_lines(), list(plan.warnings) + plan.not_sent_lines(),
                          plan.app_kind)
    if apply:
        open_workdir(workdir).save("access", result.as_dict())
    return result


def ensure_access(session: OrgSession, spec: AccessSpec, *, workdir: str | Path,
                  apply: bool = True) -> tuple[AccessPlan, AccessResult]:
    """Phase 3 in one call: plan, then apply."""
    plan = plan_access(session, spec)
    return plan, apply_access_plan(session, spec, plan, workdir=workdir, apply=apply)
