"""What only the org can answer, asked before phase 1 writes anything: do the names the parameters use exist?

``runbook.phases.parameters.check_run`` refuses what is wrong on its face (types, enums, URLs). Some parameters are
right only if the org agrees: phase 3's profiles, permission sets and users to assign, phase 4's users, and a
login URL that must belong to the org connected to (the local org's own, or a Salesforce host for a real
one). ``runbook run`` asks these in its kernel, on the session the phases then reuse, before phase 1 runs;
all problems are listed at once and nothing has been written.

The queries are phase 3's own lookup (``access.lookup_queries``), kept on the session (``rest.prefetch``) so
phase 3 gets its answers without asking again: a fresh run makes no round trip more. A phase whose last run
succeeded with the same org-checked parameters is not asked about again (a rerun stays at its reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runbook.errors import InputError, ParameterProblems
from runbook.phases import phase_named
from runbook.phases.parameters import effective
from runbook.salesforce import OrgSession, connect, rest
from runbook.work.workdir import open_workdir

# the parameters whose values only the org can check, per phase
ORG_CHECKED: dict[str, tuple[str, ...]] = {
    "access": ("app_name", "profiles", "permission_sets", "create_permission_sets", "assign_users",
               "permitted_users", "ci_user"),
    "verify": ("username", "usernames", "login_url"),
}


def phases_to_check(selected: list[str], params: dict[str, Any], workdir: Path) -> list[str]:
    """The selected phases whose org-checked parameters differ from their last successful run's (or that never
    succeeded here)."""
    out = []
    for phase in (p for p in selected if p in ORG_CHECKED):
        last, now = open_workdir(workdir).last_run(phase), effective(phase_named(phase), params)
        if last is None or last.get("outcome") != "done" or any(
                last["inputs"].get(name) != now.get(name) for name in ORG_CHECKED[phase]):
            out.append(phase)
    return out


def org_checked_values(params: dict[str, Any]) -> dict[str, Any]:
    """Phases 3 and 4's parameters with the notebooks' defaults filled in: worked out where the notebooks are read
    (the batch's parent, the CLI), so the kernel that runs the check reads no notebook."""
    return {**effective(phase_named("access"), params), **effective(phase_named("verify"), params)}


def check_org(session: OrgSession, params: dict[str, Any], phases: list[str]) -> None:
    """Raise ParameterProblems listing every name ``phases``' parameters use that the org does not have.

    ``params`` are phases 3 and 4's effective parameters (``org_checked_values``). One round trip at most: phase
    3's lookup and phase 4's users travel together, and phase 3's part is kept for phase 3.
    """
    from runbook.phases.access import build_access_spec, lookup_queries, name_problems

    problems: list[InputError] = []
    spec, soqls = None, {}
    if "access" in phases:
        spec = build_access_spec(**{k: params[k] for k in (
            "app_name", "permitted_users", "ip_relaxation", "refresh_token_policy", "profiles", "permission_sets",
            "create_permission_sets", "assign_users", "exclusive")})
        soqls = lookup_queries(spec)
    users = _verify_users(session, params) if "verify" in phases else []
    if users:
        soqls["verify_users"] = f"SELECT Username, IsActive FROM User WHERE Username IN {rest.quote_list(users)}"
    if soqls:
        found = rest.prefetch(session, soqls)
        session.prefetched.pop(soqls.pop("verify_users", ""), None)  # only phase 3 asks the same again
        if spec is not None:
            problems += name_problems(session, spec, found)
        problems += _user_problems(users, found.get("verify_users", []))
    if "verify" in phases:
        problems += _login_url_problems(session, params.get("login_url", ""))
    if problems:
        raise ParameterProblems(problems)


def _verify_users(session: OrgSession, params: dict[str, Any]) -> list[str]:
    """The users phase 4 will log in as that exist before phase 3 runs (not the one connected, not the CI user)."""
    named = params.get("usernames") or []
    named = [u.strip() for u in named.split(",")] if isinstance(named, str) else list(named)
    users = [u for u in named if u] or [params.get("username", "")]
    skip = {session.username.lower(), str(params.get("ci_user", "")).strip().lower(), ""}
    return [u for u in dict.fromkeys(users) if u.lower() not in skip]


def _user_problems(users: list[str], rows: list[dict]) -> list[InputError]:
    found = {r["Username"].lower(): r for r in rows}
    field = "usernames"
    problems = [InputError(field, u, "give the Salesforce username of an existing user (Setup > Users), or create "
                           "it first", problem="no such user in the org") for u in users if u.lower() not in found]
    problems += [InputError(field, u, "activate the user (Setup > Users > Edit > Active), or verify another one",
                            problem="the user is inactive, and an inactive user cannot log in")
                 for u in users if not found.get(u.lower(), {}).get("IsActive", True)]
    return problems


def _login_url_problems(session: OrgSession, login_url: str) -> list[InputError]:
    """A login URL for another org than the one connected to: the local org's for a real org, or the reverse."""
    from runbook.phases.jwt_bearer import LOCAL_HOSTS, check_login_url

    url = check_login_url(login_url)
    if not url:
        return []
    host = (urlsplit(url).hostname or "").lower()
    if session.is_local and urlsplit(url).netloc != urlsplit(session.login_url or session.instance_url).netloc:
        return [InputError("login_url", url, f"leave login_url empty (the local org's own, {session.instance_url}) "
                           "or connect to the org it names (--org)", problem="it is not the local org's login URL")]
    if not session.is_local and host in LOCAL_HOSTS:
        return [InputError("login_url", url, "leave login_url empty, or use the Dev Hub's login host "
                           "(https://login.salesforce.com, https://test.salesforce.com or your My Domain)",
                           problem=f"it is a local address, but the org is {session.instance_url}")]
    return []


def check_org_in_kernel(payload: str) -> None:
    """The batch's entry point in its kernel: ``payload`` is JSON of org, workdir, api_version, params, phases.

    Logs in as the phases will (the session is reused by them) and runs ``check_org``.
    """
    data = json.loads(payload)
    session = connect(data["org"], workdir=data["workdir"], api_version=data["api_version"])
    check_org(session, data["params"], data["phases"])
