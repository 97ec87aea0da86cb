"""Phase 4's scratch-org proof: what CI does with the Dev Hub, done once through the app the runbook set up.

The steps are the Salesforce CLI's (``sf org login jwt``, ``sf org create scratch``, ``sf data query``,
``sf org delete scratch``; wire sequence in ``shared/reference/scratch-org-wire.md``):

1. a JWT login to the Dev Hub as the verified user, with phase 1's key and phase 2's consumer key (never
   the admin session the runbook connected with);
2. on a real org, ``GET /limits``: how many scratch orgs are left today and may be active (none: refused);
3. insert a ``ScratchOrgInfo`` with the fields the CLI sends (§1.2). ``ConnectedAppConsumerKey`` is the
   app's consumer key; for an External Client App, which Proxy Signup cannot install in the new org
   (C-1016, forcedotcom/cli#3515), the documented workaround: ``PlatformCLI`` and the CLI's callback;
4. poll it every second (§1.5) until ``Active``, or ``Error`` with its ``ErrorCode`` mapped to cause and fix;
5. log in to the scratch org as its admin (``SignupUsername``) at its ``LoginUrl``: JWT with the hub app's
   consumer key and key (§1.6a), or the ``AuthCode`` exchange for PlatformCLI (§1.6c);
6. ``SELECT Id FROM Organization`` in the scratch org;
7. delete it as the CLI does: find its ``ActiveScratchOrg`` and DELETE it (§3). A scratch org that was
   created is deleted even when a later step fails.

The result (``ScratchProof``) holds each step's seconds and no token. It is recorded in the work folder
(``phases/scratch_proof.json``, and as ``scratch_proof`` in phase 4's record for the summary). A rerun with
``"auto"`` whose app, key and user have a proof already shows that proof instead of making another scratch
org: reruns converge with 0 writes, and the Dev Hub's daily allocation is not spent again; ``"on"`` repeats it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from runbook.errors import InputError, SalesforceError
from runbook.phases.cards import RowsCard
from runbook.phases.jwt_bearer import jwt_login
from runbook.phases.verify import HandOff, current_ci_user, key_passphrase
from runbook.salesforce import OrgSession
from runbook.salesforce.rest import quote
from runbook.work.workdir import open_workdir

MODES = ("auto", "on", "off")
PLATFORM_CLI = "PlatformCLI"
CLI_CALLBACK = "http://localhost:1717/OauthRedirect"
WAIT = 300.0  # seconds, the CLI's default --wait 5
ERROR_CODES_DOC = ("https://developer.salesforce.com/docs/atlas.en-us.sfdx_dev.meta/sfdx_dev/"
                   "sfdx_dev_scratch_orgs_error_codes.htm")
C1016_FIX = ("sign up through a connected app the Dev Hub has, with its callback URL and an unexpired certificate; "
             "a Dev Hub logged in through an External Client App cannot (Proxy Signup does not install ECAs, "
             "forcedotcom/cli#3515): use the workaround, ConnectedAppConsumerKey \"PlatformCLI\" with "
             f"ConnectedAppCallbackUrl {CLI_CALLBACK} (CLI 2.150+: export SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI "
             f"SF_SCRATCH_SIGNUP_CALLBACK_URL={CLI_CALLBACK}), or make the Dev Hub's app a connected app")
DEV_HUB_PERMISSION_FIX = ("give {user} the Dev Hub object permissions with a permission set: Scratch Org Infos "
                          "Read, Create, Edit, Delete and Active Scratch Orgs Read, Edit, Delete (Setup > Permission "
                          "Sets; phase 3's ci_user does it); and check that Dev Hub is enabled (Setup > Dev Hub)")
LIMITS_FIX = ("delete a scratch org you no longer need (sf org list; sf org delete scratch -o <alias>), or wait for "
              "the daily allocation to renew (a rolling 24 hours); or rerun with prove_scratch_org = \"off\"")


class ScratchOrgProofError(SalesforceError):
    """A step of the scratch-org proof was refused; ``step`` names it, ``code`` is Salesforce's code."""

    def __init__(self, step: str, code: str, message: str, fix: str):
        self.step = step
        super().__init__(f"scratch org proof, {step}", code, message, fix)


@dataclass
class ScratchProof(RowsCard):
    """What the proof did: each step's seconds, the scratch org it made (and deleted). Holds no token."""

    mode: str
    ran: bool
    result: str
    hub_username: str = ""
    signup_consumer_key: str = ""  # the app's consumer key, or PlatformCLI (the ECA workaround)
    workaround: str = ""
    scratch_org_id: str = ""
    scratch_username: str = ""
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds, in order
    proved_at: str = ""  # when the steps ran (UTC)
    reused: bool = False  # a rerun's "auto": the earlier proof for the same app, key and user, not repeated
    fingerprint: str = ""  # what was proved: consumer key, signup key, user, key file

    @property
    def seconds(self) -> float:
        return round(sum(self.steps.values()), 2)

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": self.seconds}

    def summary(self) -> str:
        """One line: the outcome, the total time and each step's."""
        if not self.ran:
            return self.result
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.steps.items())
        again = f"; on {self.proved_at}, not repeated (\"on\" repeats it)" if self.reused else ""
        return f"{self.result} in {self.seconds:.1f} s ({steps}{again})"

    def rows(self) -> list[tuple[str, str]]:
        rows = [("Scratch org proof", self.summary())]
        if self.ran:
            rows += [("Dev Hub user", self.hub_username), ("Signup app", self.signup_consumer_key),
                     ("Scratch org", f"{self.scratch_org_id} ({self.scratch_username})")]
        rows += [(f"{name}", f"{v['Remaining']} of {v['Max']} left") for name, v in self.limits.items()]
        if self.workaround:
            rows.append(("Workaround", self.workaround))
        return rows



def should_run(session: OrgSession, mode: str) -> bool:
    """Whether the proof runs: "auto" on the local org only (a real one spends its daily allocation)."""
    if mode not in MODES:
        raise InputError("prove_scratch_org", mode, '"auto" (the local org only), "on" or "off"')
    return mode == "on" or (mode == "auto" and session.is_local)


def prove_scratch_org(session: OrgSession, handoff: HandOff, *, workdir: str | Path, mode: str = "auto",
                      definition: dict[str, Any] | None = None, username: str = "", wait: float = WAIT,
                      workaround: bool = True, poll: float | None = None) -> ScratchProof:
    """Create, query and delete a scratch org through the Dev Hub's JWT app; the proof, also recorded in ``verify``.

    ``username`` is the Dev Hub user (default: phase 3's ``ci_user`` if any, else the first user phase 4
    verified). ``definition`` is a scratch org definition (``{"edition": "developer", ...}``, as in a
    definition file; ``settings`` are not sent).
    ``workaround`` (for an External Client App hub): sign up with PlatformCLI; False sends the app's own key, as
    the CLI does by default, and meets C-1016.
    """
    if not should_run(session, mode):
        proof = ScratchProof(mode=mode, ran=False, result=f"skipped (prove_scratch_org = {mode!r}: "
                                                           + ("a real org spends its daily scratch org allocation; "
                                                              "\"on\" runs it)" if mode == "auto" else "off)"))
        _record(workdir, proof)
        return proof
    if not (isinstance(wait, int | float) and 0 < wait <= 3600):
        raise InputError("wait", wait, "give the seconds to wait for the signup, 1 to 3600")
    wd = open_workdir(workdir)
    cert, app, verify = wd.load("certificate"), wd.load("connected_app"), wd.load("verify") or {}
    if cert is None or app is None:
        raise InputError("workdir", str(wd.root), "run phases 1 to 4 first")
    ci_user = current_ci_user(wd)  # phase 3's CI user: the one CI logs in as
    user = username or ci_user or (handoff.logins[0].username if handoff.logins else session.username)
    key = Path(handoff.key_path or cert["key_path"])
    passphrase = key_passphrase(key, verify.get("passphrase_env", ""))
    run = _Run(proof=ScratchProof(mode=mode, ran=True, result="", hub_username=user),
               http=session.http(retrying=False),
               version=session.api_version, poll=poll if poll is not None else (0.2 if session.is_local else 1.0))
    eca = app.get("app_kind") == "external_client_app" and workaround
    consumer_key = PLATFORM_CLI if eca else handoff.consumer_key
    callback = CLI_CALLBACK if eca else app.get("callback_url") or CLI_CALLBACK
    if eca:
        run.proof.workaround = (f"the Dev Hub app is an External Client App, which Proxy Signup cannot install in a "
                                f"scratch org (C-1016, forcedotcom/cli#3515): signed up with ConnectedAppConsumerKey "
                                f"PlatformCLI and {CLI_CALLBACK}, as SF_SCRATCH_SIGNUP_CONNECTED_APP=PlatformCLI does")
    run.proof.signup_consumer_key = consumer_key
    run.proof.fingerprint = f"{handoff.consumer_key} {consumer_key} {user} {key}"
    earlier = _earlier(wd.load("scratch_proof"), run.proof.fingerprint)
    if mode == "auto" and earlier is not None:
        _record(workdir, earlier)
        return earlier
    run.proof.proved_at = datetime.now(UTC).isoformat(timespec="seconds")
    hub = run.step("hub login", lambda: _hub(run, handoff, user, key, passphrase))
    if not session.is_local:
        run.step("limits", lambda: _check_limits(run, hub))
    body = signup_body(consumer_key, callback, definition)
    info_id = run.step("insert ScratchOrgInfo", lambda: _insert(run, hub, body, user))
    record = run.step("signup (poll until Active)", lambda: _wait_active(run, hub, info_id, wait, eca))
    run.proof.scratch_org_id, run.proof.scratch_username = record["ScratchOrg"] or "", record["SignupUsername"]
    try:
        scratch = run.step("scratch org login", lambda: _scratch_login(run, record, handoff, key, passphrase))
        run.step("query Organization", lambda: _query_organization(run, scratch, record))
    finally:
        run.step("delete", lambda: _delete(run, hub, record))
    run.proof.result = "created, queried and deleted"
    _record(workdir, run.proof)
    return run.proof


@dataclass
class _Run:
    proof: ScratchProof
    http: requests.Session
    version: str
    poll: float

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return fn()
        finally:
            self.proof.steps[name] = round(time.monotonic() - started, 2)

    def call(self, org: dict, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{org['instance_url']}/services/data/v{self.version}/{path}",
                                 headers={"Authorization": f"Bearer {org['token']}"}, timeout=30, **kwargs)


def signup_body(consumer_key: str, callback: str, definition: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ScratchOrgInfo insert body as the CLI builds it (§1.1–1.2): keys capitalised, settings left out."""
    merged = {"edition": "developer", "hasSampleData": False, "durationDays": 1, "orgName": "Runbook scratch proof",
              **(definition or {})}
    body = {k[:1].upper() + k[1:]: v for k, v in merged.items() if k not in ("settings", "objectSettings", "$schema")}
    if isinstance(body.get("Features"), list):
        body["Features"] = ";".join(body["Features"])
    return {**body, "ConnectedAppCallbackUrl": callback, "ConnectedAppConsumerKey": consumer_key,
            "Package2AncestorIds": ""}


def _hub(run: _Run, handoff: HandOff, user: str, key: Path, passphrase: bytes | None) -> dict:
    result, token = jwt_login(consumer_key=handoff.consumer_key, username=user, key_path=key, passphrase=passphrase,
                              login_url=handoff.login_url, http=run.http)
    return {"instance_url": result.instance_url.rstrip("/"), "token": token}


def _errors(response: requests.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}", response.text[:200]
    first = body[0] if isinstance(body, list) and body else body if isinstance(body, dict) else {}
    return first.get("errorCode", f"HTTP {response.status_code}"), first.get("message", "")


def _check_limits(run: _Run, hub: dict) -> None:
    response = run.call(hub, "GET", "limits")
    if response.status_code != 200:
        code, message = _errors(response)
        raise ScratchOrgProofError("read /limits", code, message,
                                   f"give {run.proof.hub_username} View Setup and Configuration, or rerun with "
                                   "prove_scratch_org = \"off\"")
    limits = response.json()
    run.proof.limits = {name: {"Max": limits[name]["Max"], "Remaining": limits[name]["Remaining"]}
                        for name in ("DailyScratchOrgs", "ActiveScratchOrgs") if name in limits}
    empty = [name for name, v in run.proof.limits.items() if v["Remaining"] <= 0]
    if empty:
        raise ScratchOrgProofError("read /limits", "LIMIT_EXCEEDED", "no scratch org left: " + ", ".join(
            f"{n} {v['Remaining']} of {v['Max']}" for n, v in run.proof.limits.items()), LIMITS_FIX)


def _insert(run: _Run, hub: dict, body: dict, user: str) -> str:
    response = run.call(hub, "POST", "sobjects/ScratchOrgInfo", json=body)
    if response.status_code == 201:
        return response.json()["id"]
    code, message = _errors(response)
    if code == "LIMIT_EXCEEDED":
        fix = LIMITS_FIX
    elif code in ("NOT_FOUND", "INVALID_TYPE", "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "INSUFFICIENT_ACCESS"):
        fix = DEV_HUB_PERMISSION_FIX.format(user=user)
        message = f"{message} ({user} may not create ScratchOrgInfo records)"
    elif "callback" in message.lower():
        fix = f"add {body['ConnectedAppCallbackUrl']} to the app's callback URLs (phase 2), or sign up with PlatformCLI"
    else:
        fix = f"see {ERROR_CODES_DOC}"
    raise ScratchOrgProofError("insert ScratchOrgInfo", code, message, fix)


def _wait_active(run: _Run, hub: dict, info_id: str, wait: float, eca: bool) -> dict:
    deadline = time.monotonic() + wait
    while True:
        response = run.call(hub, "GET", f"sobjects/ScratchOrgInfo/{info_id}")
        record = response.json() if response.status_code == 200 else {}
        status = record.get("Status")
        if status == "Active":
            return record
        if status == "Error":
            code = record.get("ErrorCode") or "unknown"
            fix = C1016_FIX if code == "C-1016" else f"see {ERROR_CODES_DOC} for error code {code}"
            if code == "C-1016" and eca:  # PlatformCLI is in every org: this should not happen
                fix = "the PlatformCLI workaround was refused too: " + fix
            raise ScratchOrgProofError("signup", code, f"ScratchOrgInfo {info_id} ended in Error", fix)
        if status not in ("New", "Creating", None) or time.monotonic() > deadline:
            raise ScratchOrgProofError("signup", status or _errors(response)[0],
                                       f"ScratchOrgInfo {info_id} not Active after {wait:.0f} s",
                                       f"wait longer (wait=), or follow it: sf org resume scratch --job-id {info_id}")
        time.sleep(run.poll)


def _scratch_login(run: _Run, record: dict, handoff: HandOff, key: Path, passphrase: bytes | None) -> dict:
    login_url, user = record["LoginUrl"].rstrip("/"), record.get("Username") or record["SignupUsername"]
    if record["ConnectedAppConsumerKey"] == PLATFORM_CLI or record.get("AuthCode"):
        response = run.http.post(f"{login_url}/services/oauth2/token", timeout=30, data={
            "grant_type": "authorization_code", "code": record["AuthCode"],
            "client_id": record["ConnectedAppConsumerKey"], "redirect_uri": record["ConnectedAppCallbackUrl"]})
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or "access_token" not in body:
            raise ScratchOrgProofError("scratch org login", body.get("error", f"HTTP {response.status_code}"),
                                       body.get("error_description", ""), "rerun; the AuthCode is single use")
        return {"instance_url": body["instance_url"].rstrip("/"), "token": body["access_token"]}
    result, token = jwt_login(consumer_key=handoff.consumer_key, username=user, key_path=key, passphrase=passphrase,
                              login_url=login_url, audience=login_url, http=run.http)
    return {"instance_url": result.instance_url.rstrip("/"), "token": token}


def _query_organization(run: _Run, scratch: dict, record: dict) -> None:
    response = run.call(scratch, "GET", "query", params={"q": "SELECT Id FROM Organization"})
    if response.status_code != 200:
        raise ScratchOrgProofError("query Organization", *_errors(response), "rerun; the scratch org is deleted")
    org_id = response.json()["records"][0]["Id"]
    if record.get("ScratchOrg") and org_id[:15] != record["ScratchOrg"]:
        raise ScratchOrgProofError("query Organization", "WRONG_ORG", f"{org_id} is not {record['ScratchOrg']}",
                                   "check the LoginUrl the Dev Hub reported")
    run.proof.scratch_org_id = org_id


def _delete(run: _Run, hub: dict, record: dict) -> None:
    soql = f"SELECT Id FROM ActiveScratchOrg WHERE SignupUsername = {quote(record['SignupUsername'])}"
    found = run.call(hub, "GET", "query", params={"q": soql})
    rows = found.json().get("records", []) if found.status_code == 200 else []
    if not rows:
        raise ScratchOrgProofError("delete", _errors(found)[0] if found.status_code != 200 else "NOT_FOUND",
                                   f"no ActiveScratchOrg for {record['SignupUsername']}",
                                   DEV_HUB_PERMISSION_FIX.format(user=run.proof.hub_username))
    response = run.call(hub, "DELETE", f"sobjects/ActiveScratchOrg/{rows[0]['Id']}")
    if response.status_code != 204:
        code, message = _errors(response)
        raise ScratchOrgProofError("delete", code, message, f"delete it yourself: sf org delete scratch -o "
                                   f"{record['SignupUsername']}; " + DEV_HUB_PERMISSION_FIX.format(
                                       user=run.proof.hub_username))


def _earlier(record: dict | None, fingerprint: str) -> ScratchProof | None:
    """The recorded proof for the same app, signup key, user and key file, if it succeeded."""
    if not record or record.get("fingerprint") != fingerprint or record.get("result") != "created, queried and deleted":
        return None
    fields = {k: v for k, v in record.items() if k in ScratchProof.__dataclass_fields__}
    return ScratchProof(**{**fields, "reused": True})


def _record(workdir: str | Path, proof: ScratchProof) -> None:
    """The proof in the work folder and in phase 4's record (``verify``'s ``scratch_proof``), never a token."""
    wd = open_workdir(workdir)
    if proof.ran and not proof.reused:
        wd.save("scratch_proof", proof.as_dict())
    verify = wd.load("verify")
    if verify is not None:
        wd.save("verify", {**verify, "scratch_proof": proof.as_dict()})
