"""Phase 3: OAuth policies and who may use the app — exactly the users the admin meant.

Policies ("Admin approved users are pre-authorized", IP relaxation, refresh token policy) live on
the app's metadata; pre-authorization lives in SetupEntityAccess rows that tie the app to a
profile's own permission set or to a standalone permission set. The phase converges: a rerun
adds only what is missing, and removes nothing unless ``exclusive=True`` asks for it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field, replace
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


def build_access_spec(*, app_name: str, permitted_users: str = "admin_approved", ip_relaxation: str = "ENFORCE",
                      refresh_token_policy: str = "infinite", profiles=("System Administrator",),
                      permission_sets=(), create_permission_sets: bool = False, assign_users=(),
                      exclusive: bool = False) -> AccessSpec:
    """Validate phase 3's parameters; nothing is read or written yet."""
    check_api_name(app_name)
    if permitted_users not in PERMITTED_USERS:
        raise InputError("permitted_users", permitted_users, 'use "admin_approved" (pre-authorized profiles '
                         'and permission sets only, needed for JWT) or "all_users" (self-authorize)')
    if ip_relaxation not in IP_RELAXATION:
        raise InputError("ip_relaxation", ip_relaxation, f"use one of {', '.join(IP_RELAXATION)}")
    if not REFRESH_POLICY.match(str(refresh_token_policy)):
        raise InputError("refresh_token_policy", refresh_token_policy,
                         'use "infinite", "zero", "specific_lifetime:N:HOURS|DAYS|MONTHS" or '
                         '"specific_inactivity:N:HOURS|DAYS|MONTHS"')
    profiles_t, sets_t, users_t = _names("profiles", profiles), _names("permission_sets", permission_sets), \
        _names("assign_users", assign_users)
    if create_permission_sets:
        for name in sets_t:
            check_api_name(name, "permission_sets")
    if users_t and not sets_t:
        raise InputError("assign_users", list(users_t), "name the permission_sets to assign them to")
    warnings = []
    if PERMITTED_USERS[permitted_users] and not profiles_t and not sets_t:
        warnings.append("admin-approved with no profiles and no permission sets: nobody can log in by JWT")
    return AccessSpec(app_name, PERMITTED_USERS[permitted_users], ip_relaxation, str(refresh_token_policy),
                      profiles_t, sets_t, bool(create_permission_sets), users_t, bool(exclusive),
                      tuple(warnings))


def _names(field_name: str, value) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InputError(field_name, value, "give a list of names, e.g. ['System Administrator']")
    return tuple(dict.fromkeys(i.strip() for i in items))


@dataclass
class Grant:
    """One pre-authorization: a profile or permission set, and the permission set that carries it."""

    kind: str  # profile | permission_set
    name: str
    parent_id: str  # PermissionSet Id (profile-owned for profiles)


@dataclass
class AccessPlan:
    """What applying phase 3 would change in the org."""

    app_id: str
    policy_changes: list[tuple[str, str, str]]
    add: list[Grant]
    remove: list[Grant]
    create_sets: list[str]
    assign: list[tuple[str, str]]  # (username, permission set name)
    warnings: list[str] = field(default_factory=list)
    current_app: dict | None = field(default=None, repr=False)

    @property
    def is_empty(self) -> bool:
        return not (self.policy_changes or self.add or self.remove or self.create_sets or self.assign)

    def lines(self) -> list[str]:
        out = [f"policy {f}: {old} -> {new}" for f, old, new in self.policy_changes]
        out += [f"create permission set {n}" for n in self.create_sets]
        out += [f"pre-authorize {g.kind} {g.name}" for g in self.add]
        out += [f"REMOVE pre-authorization of {g.kind} {g.name}" for g in self.remove]
        out += [f"assign permission set {p} to {u}" for u, p in self.assign]
        return out or ["nothing to change"]

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

    def as_dict(self) -> dict:
        return asdict(self)

    def _repr_html_(self) -> str:
        rows = [("App", self.app_name),
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


def _policy_changes(app: dict, spec: AccessSpec) -> list[tuple[str, str, str]]:
    oauth, policy = app.get("oauthConfig") or {}, app.get("oauthPolicy") or {}
    have = {"isAdminApproved": str(bool(oauth.get("isAdminApproved"))).lower(),
            "ipRelaxation": policy.get("ipRelaxation") or "ENFORCE",
            "refreshTokenPolicy": policy.get("refreshTokenPolicy") or "infinite"}
    want = {"isAdminApproved": str(spec.admin_approved).lower(), "ipRelaxation": spec.ip_relaxation,
            "refreshTokenPolicy": spec.refresh_token_policy}
    return [(k, have[k], want[k]) for k in want if have[k] != want[k]]


def _closest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.4)
    return f"did you mean {', '.join(repr(n) for n in near)}?" if near else \
        f"existing: {', '.join(sorted(choices)[:8])}"


def plan_access(session: OrgSession, spec: AccessSpec) -> AccessPlan:
    """Read the app, its policies, the org's permission sets and grants; list what must change."""
    app = metadata.read(session, METADATA_TYPE, spec.app_name)
    if app is None:
        raise InputError("app_name", spec.app_name, "the org has no such connected app: run phase 2 "
                         "(02_connected_app) first, or fix app_name")
    label = app.get("label") or spec.app_name
    apps = rest.query(session, f"SELECT Id, Name FROM ConnectedApplication WHERE Name = {rest.quote(label)}")
    if not apps:
        raise SalesforceError("query ConnectedApplication", "NOT_FOUND",
                              f"no ConnectedApplication named {label!r}", "rerun phase 2")
    app_id = apps[0]["Id"]
    sets = rest.query(session, "SELECT Id, Name, Label, IsOwnedByProfile, Profile.Name FROM PermissionSet")
    by_profile = {s["Profile"]["Name"]: s for s in sets if s["IsOwnedByProfile"] and s.get("Profile")}
    standalone = [s for s in sets if not s["IsOwnedByProfile"]]
    grants: list[Grant] = []
    for name in spec.profiles:
        match = next((p for p in by_profile if p.lower() == name.lower()), None)
        if match is None:
            raise InputError("profiles", name, _closest(name, list(by_profile)), problem="no such profile")
        grants.append(Grant("profile", match, by_profile[match]["Id"]))
    create_sets = []
    for name in spec.permission_sets:
        found = next((s for s in standalone if name.lower() in (s["Name"].lower(), s["Label"].lower())), None)
        if found is not None:
            grants.append(Grant("permission_set", found["Name"], found["Id"]))
        elif spec.create_permission_sets:
            create_sets.append(name)
            grants.append(Grant("permission_set", name, ""))
        else:
            choices = [s["Name"] for s in standalone] + [s["Label"] for s in standalone]
            raise InputError("permission_sets", name, _closest(name, choices) +
                             " Or set create_permission_sets=True to create it.", problem="no such permission set")
    existing = rest.query(session, f"SELECT Id, ParentId FROM SetupEntityAccess WHERE SetupEntityId = "
                                   f"{rest.quote(app_id)}")
    have_parents = {row["ParentId"]: row["Id"] for row in existing}
    add = [g for g in grants if g.parent_id not in have_parents]
    remove = []
    if spec.exclusive:
        wanted = {g.parent_id for g in grants}
        names = {s["Id"]: (("profile", s["Profile"]["Name"]) if s["IsOwnedByProfile"] and s.get("Profile")
                           else ("permission_set", s["Name"])) for s in sets}
        remove = [Grant(*names.get(pid, ("permission_set", pid)), pid) for pid in have_parents if pid not in wanted]
    assign = _plan_assignments(session, spec, {s["Name"]: s["Id"] for s in standalone}, create_sets)
    return AccessPlan(app_id, _policy_changes(app, spec), add, remove, create_sets, assign,
                      list(spec.warnings), app)


def _plan_assignments(session: OrgSession, spec: AccessSpec, set_ids: dict[str, str],
                      create_sets: list[str]) -> list[tuple[str, str]]:
    if not spec.assign_users:
        return []
    names = ", ".join(rest.quote(u) for u in spec.assign_users)
    users = {u["Username"].lower(): u for u in rest.query(
        session, f"SELECT Id, Username, IsActive FROM User WHERE Username IN ({names})")}
    for username in spec.assign_users:
        if username.lower() not in users:
            raise InputError("assign_users", username, "give the Salesforce username of an existing user",
                             problem="no such user")
    ids = [set_ids[n] for n in spec.permission_sets if n in set_ids]
    held = set()
    if ids:
        rows = rest.query(session, "SELECT AssigneeId, PermissionSetId FROM PermissionSetAssignment WHERE "
                                   f"PermissionSetId IN ({', '.join(rest.quote(i) for i in ids)})")
        held = {(r["AssigneeId"], r["PermissionSetId"]) for r in rows}
    plan = []
    for set_name in spec.permission_sets:
        for username in spec.assign_users:
            user = users[username.lower()]
            if set_name in create_sets or (user["Id"], set_ids.get(set_name)) not in held:
                plan.append((user["Username"], set_name))
    return plan


def apply_access(session: OrgSession, spec: AccessSpec, plan: AccessPlan) -> None:
    """Carry out ``plan``: policies first, then sets, grants, removals and assignments."""
    if plan.policy_changes:
        _update_policies(session, spec, plan.current_app or {})
    created = {}
    for name in plan.create_sets:
        created[name] = rest.create(session, "PermissionSet", {"Name": name, "Label": name.replace("_", " ")})
    for grant in plan.add:
        parent = grant.parent_id or created[grant.name]
        rest.create(session, "SetupEntityAccess", {"ParentId": parent, "SetupEntityId": plan.app_id})
    if plan.remove:
        rows = rest.query(session, "SELECT Id, ParentId FROM SetupEntityAccess WHERE SetupEntityId = "
                                   f"{rest.quote(plan.app_id)}")
        doomed = {g.parent_id for g in plan.remove}
        for row in rows:
            if row["ParentId"] in doomed:
                rest.delete(session, "SetupEntityAccess", row["Id"])
    if plan.assign:
        _assign(session, plan, created)


def _assign(session: OrgSession, plan: AccessPlan, created: dict[str, str]) -> None:
    names = ", ".join(rest.quote(u) for u, _ in plan.assign)
    users = {u["Username"]: u["Id"] for u in rest.query(
        session, f"SELECT Id, Username FROM User WHERE Username IN ({names})")}
    set_names = ", ".join(rest.quote(n) for _, n in plan.assign)
    sets = {s["Name"]: s["Id"] for s in rest.query(
        session, f"SELECT Id, Name FROM PermissionSet WHERE Name IN ({set_names})")}
    for username, set_name in plan.assign:
        set_id = created.get(set_name) or sets[set_name]
        try:
            rest.create(session, "PermissionSetAssignment", {"AssigneeId": users[username],
                                                             "PermissionSetId": set_id})
        except SalesforceError as exc:
            if exc.code != "DUPLICATE_VALUE":  # already assigned: that is the state we want
                raise


def _update_policies(session: OrgSession, spec: AccessSpec, app: dict) -> None:
    data = {k: v for k, v in app.items() if k not in ("profileName", "permissionSetName")}
    oauth = {k: v for k, v in (data.get("oauthConfig") or {}).items() if k not in ("consumerKey", "consumerSecret")}
    oauth["isAdminApproved"] = spec.admin_approved
    data["oauthConfig"] = oauth
    data["oauthPolicy"] = {**(data.get("oauthPolicy") or {}), "ipRelaxation": spec.ip_relaxation,
                           "refreshTokenPolicy": spec.refresh_token_policy}
    metadata.update(session, METADATA_TYPE, data)


def apply_access_plan(session: OrgSession, spec: AccessSpec, plan: AccessPlan, *, workdir: str | Path,
                      apply: bool = True) -> AccessResult:
    """Apply ``plan`` unless ``apply`` is False, then read back and check the org agrees."""
    if apply and not plan.is_empty:
        apply_access(session, spec, plan)
        check = plan_access(session, replace(spec, create_permission_sets=False))
        if check.policy_changes or check.add or check.remove:
            raise SalesforceError("read back access", "READBACK_MISMATCH", "; ".join(check.lines()),
                                  "rerun phase 3; if it persists, check Setup > App Manager > Manage > "
                                  "Edit Policies")
    result = AccessResult(spec.app_name, spec.admin_approved, spec.ip_relaxation, spec.refresh_token_policy,
                          list(spec.profiles), list(spec.permission_sets), apply,
                          [] if plan.is_empty else plan.lines(), list(spec.warnings))
    if apply:
        open_workdir(workdir).save("access", result.as_dict())
    return result


def ensure_access(session: OrgSession, spec: AccessSpec, *, workdir: str | Path,
                  apply: bool = True) -> tuple[AccessPlan, AccessResult]:
    """Phase 3 in one call: plan, then apply."""
    plan = plan_access(session, spec)
    return plan, apply_access_plan(session, spec, plan, workdir=workdir, apply=apply)
