"""Phase 3's least-privilege CI user (``ci_user``, optional): created or reused, with the Dev Hub permission set.

CI should not log in as the admin. A new user gets the minimum access profile the org has and no password, so
it logs in only through the JWT app; its permission set carries what scratch orgs need and is pre-authorized for
the app like any other set (``with_ci_permission_set``). Reruns converge with no write; teardown removes what
was created here, never the user.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path

from runbook.errors import InputError
from runbook.salesforce import OrgSession, rest
from runbook.work.workdir import open_workdir

CI_PERMISSION_SET = "Runbook_CI_Dev_Hub"
CI_PERMISSION_SET_LABEL = "Runbook CI Dev Hub"
# [D] the Integration user's profile ("API only", no object access); else the smallest standard one
CI_PROFILES = ("Minimum Access - API Only Integrations", "Minimum Access - Salesforce")
# [D] sfdx_setup_permission_set: what a Dev Hub user needs for scratch orgs (wire reference §5)
DEV_HUB_OBJECTS = {"ScratchOrgInfo": ("Read", "Create", "Edit", "Delete"),
                   "ActiveScratchOrg": ("Read", "Edit", "Delete")}


@dataclass
class CiUserResult:
    """The CI user and its Dev Hub permission set, as they stand after phase 3 (what this run created)."""

    username: str
    user_id: str
    profile: str
    permission_set: str
    permission_set_id: str
    created: list[str]  # what this run created, in the org's words; [] on a rerun
    warnings: list[str]
    applied: bool
    created_set: bool = False  # the runbook created the permission set (teardown deletes it)
    created_assignment: bool = False  # the runbook assigned it (teardown removes the assignment)
    in_use: bool = True  # False once a run has ci_user = "": the record stays for teardown, phase 4 skips the user

    @property
    def permission_sets(self) -> list[str]:
        """The permission set the app must pre-authorize (none before it exists)."""
        return [self.permission_set] if self.permission_set_id else []

    def as_dict(self) -> dict:
        return asdict(self)

    def _repr_html_(self) -> str:
        rows = [("CI user", f"{self.username} ({self.profile})"),
                ("Permission set", f"{self.permission_set}: pre-authorized for the app; Scratch Org Infos "
                                   "Read/Create/Edit/Delete, Active Scratch Orgs Read/Edit/Delete"),
                ("Created", "; ".join(self.created) or "nothing (already in place)")]
        rows += [("Warning", w) for w in self.warnings]
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in rows)
        return f"<table>{body}</table>"


def check_ci_user(ci_user) -> str:
    """The CI username, stripped ("" = no CI user); refuses what is no username."""
    if not isinstance(ci_user, str) or (ci_user.strip() and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+",
                                                                             ci_user.strip())):
        raise InputError("ci_user", ci_user, 'give a Salesforce username such as "ci@example.com", or "" for none')
    return ci_user.strip()


def ensure_ci_user(session: OrgSession, *, ci_user: str, workdir: str | Path,
                   apply: bool = True) -> CiUserResult | None:
    """Create or reuse ``ci_user`` and its Dev Hub permission set (object permissions, assignment); None without one.

    A new user gets the minimum access profile the org has (``CI_PROFILES``) and no password: it logs in
    only with the JWT app. An existing user is reused as it is (its profile is not changed). The permission
    set ``Runbook_CI_Dev_Hub`` gets ScratchOrgInfo and ActiveScratchOrg object permissions and is assigned to
    the user; everything missing is created in one all-or-none request, so a rerun writes nothing. The app's
    pre-authorization of the set is phase 3's ordinary grant (``CiUserResult.permission_sets``).
    """
    username = check_ci_user(ci_user)
    wd = open_workdir(workdir)
    before = wd.load("ci_user") or {}
    if not username:
        if before.get("in_use", True) and before and apply:  # kept for teardown; phase 4 no longer logs in as it
            wd.save("ci_user", {**before, "in_use": False})
        return None
    found = rest.query_many(session, {
        "user": f"SELECT Id, Username, IsActive, Profile.Name FROM User WHERE Username = {rest.quote(username)}",
        "profiles": f"SELECT Id, Name FROM Profile WHERE Name IN {rest.quote_list(CI_PROFILES)}",
        "set": f"SELECT Id, Name FROM PermissionSet WHERE Name = {rest.quote(CI_PERMISSION_SET)}"})
    user, pset = (found["user"] or [None])[0], (found["set"] or [None])[0]
    rows, assigned = _ci_grants(session, pset, user)
    records, created, warnings = _ci_records(username, user, pset, rows, assigned, found["profiles"])
    result = CiUserResult(username, user["Id"] if user else "", _ci_profile(user, found["profiles"]),
                          CI_PERMISSION_SET, pset["Id"] if pset else "", created if apply else [], warnings, apply,
                          bool(before.get("created_set")) or pset is None,
                          bool(before.get("created_assignment")) or not assigned)
    if not apply:
        result.warnings.append("not applied (apply = False): would create " + ("; ".join(created) or "nothing"))
        return result
    if records:
        ids = rest.create_many(session, records)
        result.user_id = result.user_id or ids.get("user", "")
        result.permission_set_id = result.permission_set_id or ids.get("set", "")
    wd.save("ci_user", result.as_dict())
    return result


def _ci_grants(session: OrgSession, pset: dict | None, user: dict | None) -> tuple[dict[str, dict], bool]:
    """The set's ObjectPermissions rows by object, and whether the user holds the set (one round trip)."""
    if pset is None:
        return {}, False
    soqls = {"rows": "SELECT Id, SobjectType, PermissionsRead, PermissionsCreate, PermissionsEdit, PermissionsDelete "
                     f"FROM ObjectPermissions WHERE ParentId = {rest.quote(pset['Id'])}"}
    if user is not None:
        soqls["held"] = (f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = {rest.quote(user['Id'])} "
                         f"AND PermissionSetId = {rest.quote(pset['Id'])}")
    found = rest.query_many(session, soqls)
    return {r["SobjectType"]: r for r in found["rows"]}, bool(found.get("held"))


def _ci_profile(user: dict | None, profiles: list[dict]) -> str:
    if user is not None:
        return (user.get("Profile") or {}).get("Name", "")
    names = {p["Name"] for p in profiles}
    return next((n for n in CI_PROFILES if n in names), "")


def _ci_records(username: str, user: dict | None, pset: dict | None, rows: dict[str, dict], assigned: bool,
                profiles: list[dict]) -> tuple[list[tuple[str, str, dict]], list[str], list[str]]:
    """(the records to create, in order with references, what they are, warnings)."""
    records: list[tuple[str, str, dict]] = []
    created, warnings = [], []
    if user is None:
        profile = _ci_profile(None, profiles)
        if not profile:
            raise InputError("ci_user", username, f"create the user yourself (the org has no {CI_PROFILES[0]!r} "
                             "profile), or name an existing user", problem="no such user")
        alias = re.sub(r"[^a-z0-9]", "", username.split("@")[0].lower())[:8] or "ci"
        records.append(("user", "User", {
            "Username": username, "LastName": "CI", "FirstName": "Runbook", "Email": username, "Alias": alias,
            "ProfileId": next(p["Id"] for p in profiles if p["Name"] == profile), "TimeZoneSidKey": "GMT",
            "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}))
        created.append(f"user {username} ({profile}, no password: JWT only)")
    else:
        if not user.get("IsActive", True):
            warnings.append(f"user {username} is inactive: the assignment is made, but it cannot log in")
        profile = (user.get("Profile") or {}).get("Name", "")
        if profile not in CI_PROFILES:
            warnings.append(f"user {username} is reused with its profile {profile!r}, which grants more than "
                            f"{CI_PROFILES[0]!r} would (the runbook does not change a user's profile)")
    if pset is None:
        records.append(("set", "PermissionSet", {"Name": CI_PERMISSION_SET, "Label": CI_PERMISSION_SET_LABEL}))
        created.append(f"permission set {CI_PERMISSION_SET}")
    parent = pset["Id"] if pset else "@{set.id}"
    for sobject, actions in DEV_HUB_OBJECTS.items():
        row = rows.get(sobject)
        if row is None:
            records.append((f"perm{sobject}", "ObjectPermissions", {
                "ParentId": parent, "SobjectType": sobject, **{f"Permissions{a}": True for a in actions}}))
            created.append(f"{sobject} {'/'.join(actions)}")
        elif not all(row.get(f"Permissions{a}") for a in actions):
            warnings.append(f"{CI_PERMISSION_SET} has {sobject} without some of {', '.join(actions)}: tick them in "
                            f"Setup > Permission Sets > {CI_PERMISSION_SET_LABEL} > Object Settings")
    if not assigned:
        records.append(("assign", "PermissionSetAssignment", {
            "AssigneeId": user["Id"] if user else "@{user.id}", "PermissionSetId": parent}))
        created.append(f"assignment of {CI_PERMISSION_SET} to {username}")
    return records, created, warnings


def with_ci_permission_set(permission_sets, ci: CiUserResult | None) -> list[str]:
    """``permission_sets`` plus the CI user's set (once it exists), for the app to pre-authorize."""
    listed = [permission_sets] if isinstance(permission_sets, str) else list(permission_sets or ())
    return list(dict.fromkeys([*listed, *(ci.permission_sets if ci else [])]))
