"""Phase 4: prove the setup works with a real JWT bearer exchange, and hand over what CI needs.

The exchange is done here with requests + PyJWT (simple-salesforce only logs in to
*.salesforce.com hosts), then one REST call with the token proves the session is usable. Each
known refusal becomes a ``LoginError`` naming the cause and the setting to change.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path

import jwt
import requests

from runbook.certificate import fingerprint, load_certificate, load_private_key
from runbook.errors import InputError, LoginError
from runbook.org import OrgSession
from runbook.retry import HTTP_TIMEOUT
from runbook.workdir import open_workdir

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN = "https://login.salesforce.com"
TEST = "https://test.salesforce.com"


def default_audience(login_url: str) -> str:
    """The ``aud`` Salesforce expects for a token endpoint host.

    Production and My Domain hosts take login.salesforce.com, sandboxes test.salesforce.com; any
    other host (the local org) takes its own URL, as the Salesforce CLI sends it.
    """
    host = login_url.removeprefix("https://").rstrip("/")
    if host in ("test.salesforce.com",) or host.endswith(".sandbox.my.salesforce.com"):
        return TEST
    if host.endswith(".salesforce.com"):
        return LOGIN
    return login_url.rstrip("/")


@dataclass
class LoginResult:
    """A successful JWT login, proven by a REST call. Holds no token."""

    username: str
    user_id: str
    org_id: str
    instance_url: str
    login_url: str
    audience: str
    scope: str
    identity_username: str

    def as_dict(self) -> dict:
        return asdict(self)


def _claims(consumer_key: str, username: str, audience: str) -> dict:
    return {"iss": consumer_key, "sub": username, "aud": audience, "exp": int(time.time()) + 180}


def jwt_login(*, consumer_key: str, username: str, key_path: Path, login_url: str, audience: str = "",
              passphrase: bytes | None = None, http: requests.Session | None = None) -> tuple[LoginResult, str]:
    """Exchange a signed JWT for an access token; returns the result and the token (keep it in memory)."""
    key = load_private_key(Path(key_path), passphrase)
    aud = audience or default_audience(login_url)
    assertion = jwt.encode(_claims(consumer_key, username, aud), key, algorithm="RS256")
    http = http or requests.Session()
    token_url = f"{login_url.rstrip('/')}/services/oauth2/token"
    response = http.post(token_url, data={"grant_type": JWT_GRANT, "assertion": assertion}, timeout=HTTP_TIMEOUT)
    body = _json(response)
    if response.status_code != 200 or "access_token" not in body:
        raise explain_refusal(body.get("error", f"HTTP {response.status_code}"),
                              body.get("error_description", response.text[:200]),
                              consumer_key=consumer_key, username=username, audience=aud, login_url=login_url)
    token = body["access_token"]
    identity = _json(http.get(body["id"], headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT))
    org_id, user_id = body["id"].rstrip("/").split("/")[-2:]
    result = LoginResult(username=username, user_id=user_id, org_id=org_id, instance_url=body["instance_url"],
                         login_url=login_url.rstrip("/"), audience=aud, scope=body.get("scope", ""),
                         identity_username=identity.get("username", ""))
    if result.identity_username.lower() != username.lower():
        raise LoginError("identity_mismatch", f"the token belongs to {result.identity_username!r}",
                         "The org answered for another user.", "check the username parameter")
    return result, token


def _json(response: requests.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def explain_refusal(error: str, description: str, *, consumer_key: str, username: str, audience: str,
                    login_url: str, cert_fingerprints: tuple[str, str] | None = None) -> LoginError:
    """Salesforce's OAuth error → a LoginError that names the cause and the setting to change."""
    desc = description.lower()
    if error == "invalid_app_access" or "not admin approved" in desc:
        return LoginError(error, description, f"{username} is not pre-authorized for the app.",
                          "add the user's profile or a permission set assigned to the user in phase 3 "
                          "(profiles / permission_sets), i.e. Manage > Manage Profiles / Permission Sets")
    if "hasn't approved this consumer" in desc:
        return LoginError(error, description, f"{username} may not use the app without approving it "
                          "(or the username does not exist in this org).",
                          'set permitted_users="admin_approved" in phase 3 and pre-authorize the user\'s '
                          "profile or permission set; check the username is right for this org (sandboxes "
                          "append a suffix)")
    if error == "invalid_client_id":
        return LoginError(error, description, f"the org does not know consumer key {consumer_key[:12]}…; "
                          "a new or edited app takes 2–10 minutes to reach every Salesforce server.",
                          "wait and retry (retries=N), or check the consumer key matches the app in phase 2")
    if "invalid assertion" in desc:
        shown = (f" Key's certificate: {cert_fingerprints[0]}; app's certificate: {cert_fingerprints[1]}."
                 if cert_fingerprints else "")
        return LoginError(error, description, "the JWT's signature does not match the certificate uploaded "
                          f"to the app.{shown}", "rerun phase 2 to upload the certificate of this key, or "
                          "use the key_path whose certificate the app has")
    if "audience" in desc:
        return LoginError(error, description, f"aud={audience} is not accepted by {login_url}.",
                          "use https://login.salesforce.com for production/My Domain, https://test.salesforce.com "
                          "for sandboxes (audience parameter)")
    if "expired" in desc:
        return LoginError(error, description, "the JWT had already expired when Salesforce read it: this "
                          "machine's clock is probably off.", "sync the clock (NTP) and retry")
    if "inactive user" in desc:
        return LoginError(error, description, f"{username} is deactivated.", "activate the user in Setup > Users")
    return LoginError(error, description, "the org refused the JWT login.", "check the app, user and key")


def sf_login_command(*, consumer_key: str, key_path: str | Path, username: str, login_url: str,
                     alias: str = "devhub") -> str:
    """The exact `sf org login jwt` command for this setup."""
    parts = ["sf", "org", "login", "jwt", "--client-id", consumer_key, "--jwt-key-file", str(key_path),
             "--username", username, "--instance-url", login_url.rstrip("/"), "--set-default-dev-hub",
             "--alias", alias]
    return shlex.join(parts)


@dataclass
class HandOff:
    """The summary card of a verified setup."""

    app_name: str
    app_kind: str
    consumer_key: str
    logins: list[LoginResult]
    login_url: str
    key_path: str
    certificate_expires: str
    sf_command: str

    def as_dict(self) -> dict:
        return {**asdict(self), "logins": [lr.as_dict() for lr in self.logins]}

    def rows(self) -> list[tuple[str, str]]:
        return [("App", f"{self.app_name} ({self.app_kind})"), ("Consumer key", self.consumer_key),
                ("Verified users", ", ".join(lr.username for lr in self.logins)),
                ("Login URL", self.login_url), ("Org id", self.logins[0].org_id if self.logins else ""),
                ("Private key", self.key_path), ("Certificate expires", self.certificate_expires),
                ("Log in with the CLI", self.sf_command)]

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>"
                       for k, v in self.rows())
        return f"<table>{body}</table>"


def verify_setup(session: OrgSession, *, workdir: str | Path, username: str = "", login_url: str = "",
                 audience: str = "", key_path: str = "") -> HandOff:
    """Phase 4: JWT login as ``username`` with what phases 1–3 recorded; record the hand-off."""
    wd = open_workdir(workdir)
    cert_record, app_record = wd.load("certificate"), wd.load("connected_app")
    if cert_record is None or app_record is None:
        raise InputError("workdir", str(wd.root), "run phases 1 and 2 first (01_certificate, 02_connected_app)")
    key = Path(key_path or cert_record["key_path"])
    user = username or session.username
    if not user:
        raise InputError("username", username, "give the Salesforce username to log in as")
    url = (login_url or session.login_url).rstrip("/")
    try:
        result, _token = jwt_login(consumer_key=app_record["consumer_key"], username=user, key_path=key,
                                   login_url=url, audience=audience)
    except LoginError as exc:
        if "invalid assertion" in exc.description:
            raise _with_fingerprints(exc, cert_record, app_record) from None
        raise
    cert = load_certificate(Path(cert_record["cert_path"]))
    handoff = HandOff(app_name=app_record["full_name"], app_kind=app_record["app_kind"],
                      consumer_key=app_record["consumer_key"], logins=[result], login_url=url, key_path=str(key),
                      certificate_expires=cert.not_valid_after_utc.isoformat(timespec="seconds"),
                      sf_command=sf_login_command(consumer_key=app_record["consumer_key"], key_path=key,
                                                  username=user, login_url=url))
    cert_fp = fingerprint(cert)
    wd.save("verify", {**handoff.as_dict(), "certificate_fingerprint": cert_fp})
    return handoff


def _with_fingerprints(exc: LoginError, cert_record: dict, app_record: dict) -> LoginError:
    return explain_refusal(exc.error, exc.description, consumer_key=app_record["consumer_key"], username="",
                           audience="", login_url="",
                           cert_fingerprints=(cert_record["sha256_fingerprint"],
                                              app_record["certificate_fingerprint"]))
