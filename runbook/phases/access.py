"""Phase 3: OAuth policies and who may use the app — exactly the users the admin meant.

Policies ("Admin approved users are pre-authorized", IP relaxation, refresh token policy) and
pre-authorized profiles / permission sets live where the app's kind keeps them: the kind
(``runbook.apps``) reads them as an ``AccessState`` in the parameters' own words and saves them back;
this module plans and never asks which kind it is.

The phase converges: a rerun adds only what is missing and writes nothing when nothing is, and
pre-authorizations are removed only when ``exclusive=True`` asks for it (the plan lists them first).
A connected app's read may name a permission set by API name or by label (Salesforce's choice is
not known), so the two are compared by API name and a label never shows up as a remove plus an add.
Pre-authorizations need admin-approved users: with ``permitted_users="all_users"`` none is sent,
and the plan names the profiles and permission sets it leaves out.
Round trips are few on purpose: the app's access is read once; the org's permission sets, users and
assignments are looked up (one Composite request) only when a name is not already granted or users
are to be assigned. New permission sets and assignments are created in one all-or-none request, before
the policies that name them (so the operator is never locked out).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path

from runbook.apps import KIND_NAMES, AccessState, Grant, find_app_kind, kind_named
from runbook.errors import InputError, ParameterProblems
from runbook.salesforce import OrgSession, rest
from runbook.salesforce.names import check_api_name
from runbook.work.workdir import open_workdir

PERMITTED_USERS = {"admin_approved": True, "all_users": False}
IP_RELAXATION = ("ENFORCE", "BYPASS_2FACTOR", "BYPASS", "ENFORCE_RELAXREFRESH")
REFRESH_POLICY = re.compile(r"^(infinite|zero|specific_(lifetime|inactivity):[1-9][0-9]{0,3}:(HOURS|DAYS|MONTHS))$")
POLICY_LABELS = {"permitted_users": "Permitted Users", "ip_relaxation": "IP Relaxation",
                 "refresh_token_policy": "Refresh Token Policy"}  # as Setup's Edit Policies page names them
_ID = re.compile(r"^0PS[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")  # a PermissionSet Id, as other tools may store one


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
    app_kind: str = ""  # a kind's name (runbook.apps); "" = find out from the org
    access_hint: str = ""  # where phase 2 saw the app's access kept (the kind's own locator), to read it at once


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
    record = _phase2_record(workdir, app_name)
    kind = app_kind or str(record.get("app_kind") or "")
    if kind and kind not in KIND_NAMES:
        raise InputError("app_kind", kind, f"use one of {', '.join(KIND_NAMES)}")
    return AccessSpec(app_name, PERMITTED_USERS[permitted_users], ip_relaxation, str(refresh_token_policy),
                      profiles_t, sets_t, bool(create_permission_sets), users_t, bool(exclusive), (), kind,
                      str(record.get("access_hint") or "") if kind == record.get("app_kind") else "")


def _phase2_record(workdir, app_name: str) -> dict:
    """Phase 2's record in ``workdir`` when it is for ``app_name`` (its kind, where it saw the access), else {}."""
    record = open_workdir(workdir).load("connected_app") if workdir else None
    return record if record and record.get("full_name", app_name) == app_name else {}


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
class AccessPlan:
    """What applying phase 3 would change in the org."""

    policy_changes: list[tuple[str, str, str]]  # (parameter, now, after)
    add: list[Grant]
    remove: list[Grant]
    create_sets: list[str]  # API names (labels in new_sets)
    assign: list[tuple[str, str]]  # (username, permission set API name)
    warnings: list[str] = field(default_factory=list)
    current: AccessState | None = field(default=None, repr=False)
    app_kind: str = ""
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
        out = [f"policy {POLICY_LABELS[f]} ({f}): {old} -> {new}" for f, old, new in self.policy_changes]
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
    app_kind: str = ""

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


def lookup_queries(spec: AccessSpec, *, also_sets: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The SOQL of the one lookup phase 3 makes (by key): the permission sets the parameters name (as
    profiles' own sets, API names or labels, and the names new ones would get) and ``also_sets`` names, the
    users to assign, and what those users hold. The run's up-front org check asks the same queries, so its
    answers serve this phase's lookup (``rest.prefetch``)."""
    set_names = sorted({n for name in spec.permission_sets for n in (name, *_new_names(name, spec))}
                       | set(also_sets))
    where = [f"(IsOwnedByProfile = true AND Profile.Name IN {rest.quote_list(spec.profiles)})"] if spec.profiles else []
    ids = [n for n in set_names if _ID.match(n)]
    if set_names:
        by_id = f" OR Id IN {rest.quote_list(ids)}" if ids else ""
        names = rest.quote_list(set_names)
        where.append(f"(IsOwnedByProfile = false AND (Name IN {names} OR Label IN {names}{by_id}))")
    soqls = {"sets": f"{_SETS} WHERE {' OR '.join(where)}"} if where else {}
    if spec.assign_users:
        users = rest.quote_list(spec.assign_users)
        soqls["users"] = f"SELECT Id, Username, IsActive FROM User WHERE Username IN {users}"
        soqls["held"] = ("SELECT AssigneeId, PermissionSetId FROM PermissionSetAssignment "
                         f"WHERE Assignee.Username IN {users}")
    return soqls


def _lookup_from(found: dict[str, list[dict]]) -> _OrgLookup:
    return _OrgLookup(_OrgSets.of(found.get("sets", [])),
                      {u["Username"].lower(): u for u in found.get("users", [])},
                      {(r["AssigneeId"], r["PermissionSetId"]) for r in found.get("held", [])})


def _lookup(session: OrgSession, spec: AccessSpec, *, also_sets: list[str] | tuple[str, ...] = ()) -> _OrgLookup:
    """One round trip (none when the run's org check already asked it): ``lookup_queries``' answers."""
    soqls = lookup_queries(spec, also_sets=also_sets)
    return _lookup_from(rest.query_many(session, soqls) if soqls else {})


def name_problems(session: OrgSession, spec: AccessSpec, found: dict[str, list[dict]]) -> list[InputError]:
    """Every profile, permission set and user the parameters name that the org does not have, from the
    answers to ``lookup_queries(spec)``: what the run checks before phase 1 writes anything."""
    lookup = _lookup_from(found)
    return _wanted_grants(session, spec, lookup.sets)[2] + _user_problems(spec, lookup)


def _new_names(name: str, spec: AccessSpec) -> tuple[str, ...]:
    return new_permission_set_names(name) if spec.create_permission_sets else ()


def _all_sets(session: OrgSession) -> _OrgSets:
    """Every permission set: only to suggest names when one asked for does not exist."""
    return _OrgSets.of(rest.query(session, _SETS))


def _wanted_grants(session: OrgSession, spec: AccessSpec, sets: _OrgSets,
                   ) -> tuple[list[Grant], dict[str, str], list[InputError]]:
    """The grants the parameters ask for, the permission sets to create (API name -> label), and the problems.

    An unknown profile, or an unknown permission set without create_permission_sets, is a problem with the
    closest existing names (every permission set is read once, only then, for the suggestions).
    """
    grants: list[Grant] = []
    problems: list[InputError] = []
    every: list[_OrgSets] = []  # read on the first miss

    def all_sets() -> _OrgSets:
        if not every:
            every.append(_all_sets(session))
        return every[0]

    for name in spec.profiles:
        match = next((p for p in sets.by_profile if p.lower() == name.lower()), None)
        if match is None:
            problems.append(InputError("profiles", name, _closest(name, list(all_sets().by_profile)),
                                       problem="no such profile"))
            continue
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
            standalone = all_sets().standalone
            choices = [s["Name"] for s in standalone] + [s["Label"] for s in standalone]
            problems.append(InputError("permission_sets", name, _closest(name, choices) +
                                       " Or set create_permission_sets=True to create it.",
                                       problem="no such permission set"))
            continue
        grants.append(Grant("permission_set", found["Name"], found["Id"]))
    return list({(g.kind, g.name): g for g in grants}.values()), create, problems


def _user_problems(spec: AccessSpec, lookup: _OrgLookup) -> list[InputError]:
    return [InputError("assign_users", username, "give the Salesforce username of an existing user",
                       problem="no such user") for username in spec.assign_users
            if username.lower() not in lookup.users]


def plan_access(session: OrgSession, spec: AccessSpec) -> AccessPlan:
    """Read the app's policies and grants; list what must change.

    Every parameter not already in effect is checked against the org here (an unknown profile,
    permission set or user is an ``InputError``), so a refused plan has changed nothing.
    """
    kind = _kind(session, spec)
    current = kind.read_access(session, spec.app_name, hint=spec.access_hint)
    changes = _policy_changes(current.policies, spec)
    have, requested, create, lookup = _grants(session, spec, current.grants)
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
    return AccessPlan(policy_changes=changes, add=add, remove=extra if spec.exclusive else [],
                      create_sets=list(create), assign=assign, warnings=warnings + user_warnings, current=current,
                      app_kind=kind.name, keep=keep + ([] if spec.exclusive else extra), new_sets=create,
                      user_ids={u["Username"]: u["Id"] for u in lookup.users.values()} if lookup else {},
                      not_sent=not_sent)


def _kind(session: OrgSession, spec: AccessSpec):
    """The app's kind: as phase 2 recorded it, else asked of the org (one listMetadata call)."""
    if spec.app_kind:
        return kind_named(spec.app_kind)
    found = find_app_kind(session, spec.app_name)
    if found is None:
        raise InputError("app_name", spec.app_name, "the org has no app of that name: run phase 2 "
                         "(02_connected_app) first, or fix app_name")
    return found


def _wanted_policies(spec: AccessSpec) -> dict[str, str]:
    return {"permitted_users": "admin_approved" if spec.admin_approved else "all_users",
            "ip_relaxation": spec.ip_relaxation, "refresh_token_policy": spec.refresh_token_policy}


def _policy_changes(have: dict[str, str], spec: AccessSpec) -> list[tuple[str, str, str]]:
    want = _wanted_policies(spec)
    return [(k, have.get(k, ""), want[k]) for k in want if have.get(k, "") != want[k]]


def _grants(session: OrgSession, spec: AccessSpec, have: list[Grant],
            ) -> tuple[list[Grant], list[Grant], dict[str, str], _OrgLookup | None]:
    """(the app's grants, the grants asked for, permission sets to create, the org lookup or None).

    A read may name a permission set by its API name, its label or (other tools) its Id, so when the org is
    asked about names it is asked about the app's too, and both sides then compare by API name: a label
    never looks like a different set to add (or, with exclusive, to remove).
    """
    granted = _granted(spec, have)
    if granted is not None:
        return have, granted, {}, None
    lookup = _lookup(session, spec, also_sets=[g.name for g in have if g.kind == "permission_set"])
    wanted, create, problems = _wanted_grants(session, spec, lookup.sets)
    problems += _user_problems(spec, lookup)
    if problems:
        raise problems[0] if len(problems) == 1 else ParameterProblems(problems)
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


# ---------------------------------------------------------------- permission sets and their users

def _plan_assignments(spec: AccessSpec, wanted: list[Grant], create: dict[str, str],
                      lookup: _OrgLookup) -> tuple[list[tuple[str, str]], list[str]]:
    """(username, permission set API name) pairs still to assign, and warnings about the users."""
    warnings = [f"user {u['Username']} is inactive: the assignment is made, but they cannot log in"
                for u in lookup.users.values() if not u.get("IsActive", True)]
    plan = []
    for grant in (g for g in wanted if g.kind == "permission_set"):
        for username in spec.assign_users:
            user = lookup.users[username.lower()]
            if grant.name in create or (user["Id"], grant.parent_id) not in lookup.held:
                plan.append((user["Username"], grant.name))
    return plan, warnings


def _create_sets_and_assign(session: OrgSession, plan: AccessPlan) -> None:
    """New permission sets and the assignments, in one all-or-none request (assignments refer to new sets)."""
    records = [(f"set{i}", "PermissionSet", {"Name": name, "Label": plan.new_sets.get(name, name)})
               for i, name in enumerate(plan.create_sets)]
    refs = {name: f"@{{set{i}.id}}" for i, name in enumerate(plan.create_sets)}
    users = plan.user_ids
    ids = {g.name: g.parent_id for g in plan.keep + plan.add if g.kind == "permission_set" and g.parent_id}
    records += [(f"assign{i}", "PermissionSetAssignment", {"AssigneeId": users[username],
                                                           "PermissionSetId": refs.get(name) or ids[name]})
                for i, (username, name) in enumerate(plan.assign)]
    rest.create_many(session, records)


# ---------------------------------------------------------------- apply and read back

def apply_access(session: OrgSession, spec: AccessSpec, plan: AccessPlan) -> None:
    """Carry out ``plan``: new permission sets and assignments first (the grants name them), then
    policies and grants, in one save of the app's kind."""
    if plan.create_sets or plan.assign:
        _create_sets_and_assign(session, plan)
    grants_change = bool(plan.add or plan.remove)
    if not (plan.policy_changes or grants_change):
        return
    grants = plan.keep + plan.add if grants_change else None
    kind_named(plan.app_kind).save_access(session, spec.app_name, plan.current or AccessState({}, []),
                                          _wanted_policies(spec), grants)


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
