"""Phase 4: prove the setup works with a real JWT bearer exchange, and hand over what CI needs.

The exchange is done here with requests + PyJWT (simple-salesforce only logs in to
*.salesforce.com hosts), then one REST call with the token proves the session is usable. Each
known refusal becomes a ``LoginError`` naming the cause and the setting to change:

- ``invalid_client_id`` is waited out (``propagation_timeout``, 15 minutes by default, polled every few
  seconds with a progress bar): a new or changed app takes 2–10 minutes to reach every Salesforce server,
  so a first run against a real org passes; the message says how long it waited.
- ``invalid assertion`` shows the key's certificate fingerprint and the app's, read from the org.
- ``expired authorization code`` (an ``exp`` already past) shows the clock offset between this machine
  and the org, read from the token response's ``Date`` header.

The web server flow is in ``runbook.phases.webflow``; the CI export in ``runbook.export_ci``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import shlex
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from email.utils import parsedate_to_datetime
from html import escape
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from runbook.apps import kind_named
from runbook.errors import InputError, LoginError, RunbookError
from runbook.phases.certificate import fingerprint, load_certificate, load_private_key, read_passphrase
from runbook.salesforce import OrgSession, process_connector
from runbook.salesforce.rest import query, quote
from runbook.salesforce.retry import DEFAULT_POLICY, http_timeout, is_transient, no_answer, timeout_fix
from runbook.salesforce.urls import without_userinfo
from runbook.ui.cards import RowsCard
from runbook.work.workdir import Workdir, open_workdir

if TYPE_CHECKING:
    from runbook.phases.scratch_proof import ScratchProof

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN = "https://login.salesforce.com"
TEST = "https://test.salesforce.com"


def default_audience(login_url: str) -> str:
    """The ``aud`` Salesforce expects for a token endpoint host.

    Production and My Domain hosts take login.salesforce.com, sandboxes (test.salesforce.com or a
    ``--sandbox`` My Domain: ``*.sandbox.my.salesforce.com``, ``*--<sandbox>.my.salesforce.com``) take
    test.salesforce.com; any other host (the local org) takes its own URL, as the Salesforce CLI sends it.
    """
    host = login_url.removeprefix("https://").rstrip("/").split("/")[0].lower()
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com") or (
            host.endswith(".my.salesforce.com") and "--" in host):
        return TEST
    if host.endswith(".salesforce.com"):
        return LOGIN
    return login_url.rstrip("/")


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # the local org binds 127.0.0.1 only
# The hosts the Salesforce CLI takes for Salesforce's own [V sfdx-core SfdcUrl.isSalesforceDomain], less the
# Lightning UI host, which `sf org login jwt` refuses as a login URL [V plugin-auth resolveLoginUrl].
SALESFORCE_DOMAINS = ("salesforce.com", "force.com", "cloudforce.com")
LIGHTNING = "lightning.force.com"
LOGIN_URL_FIX = ("use https://login.salesforce.com (production, Developer Edition), https://test.salesforce.com "
                 "(sandbox), your My Domain as Setup > My Domain shows it (https://NAME.my.salesforce.com), or the "
                 "local org's https://127.0.0.1:PORT; or leave login_url empty for the org's own")


def check_login_url(login_url: str) -> str:
    """``login_url`` without a trailing slash, once it is https to a Salesforce login host or the local org.

    Checked before any call: a typo such as login.salesforce.con would otherwise end in a raw connection
    error, and a JWT sent elsewhere hands that host a signed login. A ``user:password@`` in it is refused and
    never shown: Salesforce reads no credentials from a URL (the JWT is the login). "" stays "" (the org's).
    """
    if login_url == "":
        return ""
    if not isinstance(login_url, str):
        raise InputError("login_url", login_url, LOGIN_URL_FIX, problem="not a URL")
    shown = without_userinfo(login_url.strip())
    try:
        parts = urlsplit(login_url.strip())
        _port = parts.port  # urlsplit checks the port only when asked
    except ValueError as exc:
        raise InputError("login_url", shown, LOGIN_URL_FIX, problem=f"not a URL ({exc})") from None
    if "@" in parts.netloc:
        raise InputError("login_url", shown, "remove the user:password@ part: a JWT login sends no password (the "
                         "key signs it)", problem="it holds credentials (user:password@, not shown)")
    if parts.scheme.lower() != "https":
        raise InputError("login_url", shown, LOGIN_URL_FIX, problem=f"the scheme is {parts.scheme or 'missing'}: "
                         "Salesforce takes logins over https only")
    host = (parts.hostname or "").lower()
    if host.endswith(f".{LIGHTNING}"):
        raise InputError("login_url", shown, "use the org's My Domain login URL, https://NAME.my.salesforce.com "
                         "(Setup > My Domain); the Salesforce CLI refuses lightning.force.com too",
                         problem="a Lightning Experience host, where no login is served")
    if host not in LOCAL_HOSTS and not any(host.endswith(f".{domain}") for domain in SALESFORCE_DOMAINS):
        raise InputError("login_url", shown, LOGIN_URL_FIX,
                         problem=f"{host or 'no host'} is not a Salesforce login host{_did_you_mean(host)}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise InputError("login_url", shown, f"give the login URL alone, e.g. https://{parts.netloc}: the runbook "
                         "adds /services/oauth2/token", problem="it has a path, query or fragment")
    return f"https://{parts.netloc}"


def _did_you_mean(host: str) -> str:
    """`` (did you mean https://login.salesforce.com?)`` for a host whose domain is a near miss of Salesforce's."""
    for domain in SALESFORCE_DOMAINS:
        labels = host.split(".")
        tail = ".".join(labels[-(domain.count(".") + 1):])
        if len(labels) > domain.count(".") + 1 and difflib.SequenceMatcher(None, tail, domain).ratio() >= 0.8:
            return f" (did you mean https://{host[:-len(tail)]}{domain}?)"
    return ""


@dataclass
class LoginResult:
    """A successful JWT login: the org issued a token for ``username``. Holds no token.

    The ids come from the token answer's identity URL (``…/id/<org id>/<user id>``); a call to that
    URL would only repeat them (Salesforce issues a JWT bearer token for the ``sub`` user or none).
    """

    username: str
    user_id: str
    org_id: str
    instance_url: str
    login_url: str
    audience: str
    scope: str
    waited: float = 0.0  # seconds spent waiting for the app to propagate (invalid_client_id)

    def as_dict(self) -> dict:
        return asdict(self)


def _claims(consumer_key: str, username: str, audience: str, now: float) -> dict:
    return {"iss": consumer_key, "sub": username, "aud": audience, "exp": int(now) + 180}


def server_clock_offset(response: requests.Response, local_time: float) -> float | None:
    """Seconds the org's clock (its ``Date`` header) is ahead of ``local_time``; None without a Date."""
    try:
        return parsedate_to_datetime(response.headers["Date"]).timestamp() - local_time
    except (KeyError, TypeError, ValueError):
        return None


PROPAGATION_TIMEOUT = 900.0  # seconds: Salesforce says a new or changed app takes 2–10 minutes [O wire facts §1.6]
POLL_FIRST, POLL_GROWTH, POLL_MAX = 1.0, 1.5, 4.0  # so a login lands within ~4 s of the app becoming usable


@dataclass
class PropagationWait:
    """Shows a wait for a new or changed app to propagate: a progress bar in a notebook, lines elsewhere.

    In a kernel the bar is one HTML output updated in place (no widget library needed, and an executed
    notebook keeps its last state); in a terminal a line every 30 s says how long, the limit and why.
    """

    limit: float
    what: str
    _handle: object = field(default=None, repr=False)
    _printed: float = field(default=-30.0, repr=False)

    def update(self, elapsed: float) -> None:
        text = f"Waiting for {self.what}: {elapsed:.0f} s of at most {self.limit:.0f} s"
        if _in_kernel():
            from IPython.display import HTML, display

            html = HTML(f"<progress value='{elapsed:.0f}' max='{self.limit:.0f}'></progress> {escape(text)}")
            if self._handle is None:
                self._handle = display(html, display_id=True)
            else:
                self._handle.update(html)
        elif elapsed - self._printed >= 30:
            self._printed = elapsed
            print(text, flush=True)

    def done(self, elapsed: float) -> None:
        """Say the wait is over (only when there was one)."""
        if self._handle is not None or self._printed >= 0:
            text = f"{self.what}: usable after {elapsed:.0f} s"
            if self._handle is not None:
                from IPython.display import HTML

                self._handle.update(HTML(escape(text)))
            else:
                print(text, flush=True)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def jwt_login(*, consumer_key: str, username: str, key_path: Path, login_url: str, audience: str = "",
              passphrase: bytes | None = None, http: requests.Session | None = None,
              propagation_timeout: float = 0.0, progress: PropagationWait | None = None,
              clock: Callable[[], float] = time.time,
              sleep: Callable[[float], None] = time.sleep) -> tuple[LoginResult, str]:
    """Exchange a signed JWT for an access token; returns the result and the token (keep it in memory).

    ``invalid_client_id`` is polled for up to ``propagation_timeout`` seconds: a new or changed app
    answers it for about 2–10 minutes on a real org. Polls start 1 s apart and grow to 4 s, so the
    login lands within seconds of the app becoming usable; ``progress`` shows the wait. ``clock`` is
    this machine's clock (the JWT's ``exp`` is computed from it); each attempt signs a fresh JWT. An org that
    answers 5xx, 429 or REQUEST_LIMIT_EXCEEDED, or not at all, is asked again as a read would be, and then
    named as what it is (``_token_answer``).
    """
    login_url = check_login_url(login_url)  # before the key is read or anything is sent
    if not login_url:
        raise InputError("login_url", login_url, LOGIN_URL_FIX, problem="the token endpoint's host is needed")
    key = load_private_key(Path(key_path), passphrase)
    aud = audience or default_audience(login_url)
    http = http or process_connector().http()  # trusting the local orgs this process knows, and the usual CAs
    token_url = f"{login_url.rstrip('/')}/services/oauth2/token"
    started, attempts, wait = time.monotonic(), 0, POLL_FIRST
    while True:
        response, now = _token_answer(http, token_url, clock=clock, sleep=sleep, sign=lambda at: jwt.encode(
            _claims(consumer_key, username, aud, at), key, algorithm="RS256"))
        body = _json(response)
        elapsed = time.monotonic() - started
        if response.status_code == 200 and "access_token" in body:
            break
        error = body.get("error", f"HTTP {response.status_code}")
        if error == "invalid_client_id" and elapsed + wait <= propagation_timeout:
            attempts += 1
            if progress is not None:
                progress.update(elapsed)
            sleep(wait)
            wait = min(wait * POLL_GROWTH, POLL_MAX)
            continue
        raise explain_refusal(error, body.get("error_description", response.text[:200]),
                              consumer_key=consumer_key, username=username, audience=aud, login_url=login_url,
                              clock_offset=server_clock_offset(response, now), retried=attempts,
                              waited=elapsed, limit=propagation_timeout)
    if progress is not None and attempts:
        progress.done(elapsed)
    org_id, user_id = body["id"].rstrip("/").split("/")[-2:]
    result = LoginResult(username=username, user_id=user_id, org_id=org_id, instance_url=body["instance_url"],
                         login_url=login_url.rstrip("/"), audience=aud, scope=body.get("scope", ""),
                         waited=round(elapsed, 1) if attempts else 0.0)
    return result, body["access_token"]


def _token_answer(http: requests.Session, token_url: str, *, sign: Callable[[float], str],
                  clock: Callable[[], float], sleep: Callable[[float], None]) -> tuple[requests.Response, float]:
    """The token endpoint's answer to a JWT signed at ``clock()``, and that time.

    A JWT exchange changes nothing in the org, so it is asked again like a read (``runbook.salesforce.retry``'s policy,
    a freshly signed JWT each time) while the org answers 5xx, 429 or REQUEST_LIMIT_EXCEEDED, or does not
    answer within the timeout; after the last try a LoginError names that fault, never the app or the key.
    """
    delays, statuses = DEFAULT_POLICY.delays(), []
    while True:
        now, failure, response = clock(), None, None
        try:
            response = http.post(token_url, data={"grant_type": JWT_GRANT, "assertion": sign(now)},
                                 timeout=http_timeout().as_requests())
        except (requests.ConnectionError, requests.Timeout) as exc:
            failure = exc
        else:
            if not is_transient(response):
                return response, now
            statuses.append(response.status_code)
        delay = next(delays, None)
        if delay is None:
            raise _token_endpoint_unavailable(token_url, response, statuses, failure, DEFAULT_POLICY.attempts) \
                from failure  # phase 4 names a DNS or TLS failure as the login_url problem it is
        sleep(delay)


def _token_endpoint_unavailable(token_url: str, response: requests.Response | None, statuses: list[int],
                                failure: BaseException | None, tries: int) -> LoginError:
    """The LoginError for a token endpoint that stayed down, rate-limited or silent for every try."""
    where = without_userinfo(token_url)
    if response is None:
        return LoginError("no answer", f"{no_answer(failure)} from {where}" if failure else where,
                          f"the token endpoint was asked {tries} times; the app, user and key were not checked.",
                          f"check the login URL and the network, then rerun phase 4; {timeout_fix()}")
    status, times = response.status_code, f" {len(statuses)} times" if len(set(statuses)) == 1 else ""
    if status == 429 or b"REQUEST_LIMIT_EXCEEDED" in response.content[:4000]:
        code = "REQUEST_LIMIT_EXCEEDED" if b"REQUEST_LIMIT_EXCEEDED" in response.content[:4000] else f"HTTP {status}"
        return LoginError(code, f"the org answered {status}{times} ({_phrase(status, 'rate limited')})",
                          "The org's request limit was reached; the app, user and key were not checked.",
                          "wait a few minutes and rerun phase 4 (Setup > System Overview shows the API requests of "
                          "the last 24 hours)")
    return LoginError(f"HTTP {status}", f"the org answered {status}{times} ({_phrase(status, 'server error')})",
                      "The token endpoint is down or in maintenance (no OAuth error came back); the app, user and "
                      "key were not checked.", f"check status.salesforce.com for the org's instance ({where}) and "
                      "rerun phase 4 in a few minutes")


def _phrase(status: int, default: str) -> str:
    """The standard reason phrase of ``status`` ("Service Unavailable"), whatever case the server sent."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return default


def _json(response: requests.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def explain_refusal(error: str, description: str, *, consumer_key: str, username: str, audience: str,
                    login_url: str, cert_fingerprints: tuple[str, str] | None = None,
                    clock_offset: float | None = None, retried: int = 0, waited: float = 0.0,
                    limit: float = 0.0, user_exists: bool | None = None) -> LoginError:
    """Salesforce's OAuth error → a LoginError that names the cause and the setting to change.

    Salesforce refuses an unknown ``sub`` with the same "user hasn't approved this consumer" as an existing
    user who never approved the app, so ``user_exists`` (looked up in the org after such a refusal) says
    which it is; None when it is not known.
    """
    desc = description.lower()
    if error == "invalid_app_access" or "not admin approved" in desc:
        return LoginError(error, description, f"{username} is not pre-authorized for the app.",
                          "add the user's profile or a permission set assigned to the user in phase 3 "
                          "(profiles / permission_sets), i.e. Manage > Manage Profiles / Permission Sets")
    if "hasn't approved this consumer" in desc:
        return _not_approved(error, description, username, user_exists)
    if error == "invalid_client_id":
        tried = (f" Waited {waited:.0f} s of propagation_timeout={limit:.0f} ({retried} tries)." if retried else
                 f" Not waited (propagation_timeout={limit:.0f}).")
        return LoginError(error, description, f"the org does not know consumer key {consumer_key[:12]}…; "
                          f"a new or edited app takes 2–10 minutes to reach every Salesforce server.{tried}",
                          "rerun phase 4 in a few minutes, or raise propagation_timeout (seconds); if it persists, "
                          "check the consumer key matches the app (phase 2)")
    if "invalid assertion" in desc:
        shown = (f" Signing key: {cert_fingerprints[0]}; the app's: {cert_fingerprints[1]}."
                 if cert_fingerprints else "")
        return LoginError(error, description, "the JWT's signature does not match the certificate uploaded "
                          f"to the app.{shown}", "rerun phase 2 to upload the certificate of this key, or "
                          "use the key_path whose certificate the app has")
    if "audience" in desc:
        return LoginError(error, description, f"aud={audience} is not accepted by {login_url}.",
                          "use https://login.salesforce.com for production/My Domain, https://test.salesforce.com "
                          "for sandboxes (audience parameter)")
    if "expired" in desc:
        offset = (f" The org's clock is {abs(clock_offset):.0f} s {'ahead of' if clock_offset > 0 else 'behind'}"
                  " this machine's (Salesforce allows about 3 minutes of exp)." if clock_offset is not None else "")
        return LoginError(error, description, "the JWT had already expired when Salesforce read it: this "
                          f"machine's clock is off.{offset}", "sync this machine's clock (NTP: timedatectl "
                          "set-ntp true / chronyc makestep) and retry")
    if "inactive user" in desc:
        return LoginError(error, description, f"{username} is deactivated.", "activate the user in Setup > Users")
    return LoginError(error, description, "the org refused the JWT login.", "check the app, user and key")


def _not_approved(error: str, description: str, username: str, user_exists: bool | None) -> LoginError:
    """Salesforce's "user hasn't approved this consumer": no such user, a user who never approved, or either."""
    check_name = f"check the username (usernames / username in phase 4); a sandbox appends its name: {username}.uat"
    if user_exists is False:
        return LoginError(error, description, f"no such user: this org has no user {username}.", check_name)
    approve = ('set permitted_users="admin_approved" in phase 3 and pre-authorize the user\'s profile or permission '
               "set")
    if user_exists:
        return LoginError(error, description, f"{username} may not use the app without approving it: the app lets "
                          "users self-authorize, and a JWT login cannot ask.", approve)
    return LoginError(error, description, f"{username} may not use the app without approving it (or the username "
                      "does not exist in this org).", f"{approve}; {check_name}")


def sf_login_command(*, consumer_key: str, key_path: str | Path, username: str, login_url: str,
                     alias: str = "devhub") -> str:
    """The exact `sf org login jwt` command for this setup."""
    parts = ["sf", "org", "login", "jwt", "--client-id", consumer_key, "--jwt-key-file", str(key_path),
             "--username", username, "--instance-url", login_url.rstrip("/"), "--set-default-dev-hub",
             "--alias", alias]
    return shlex.join(parts)


@dataclass
class HandOff(RowsCard):
    """The summary card of a verified setup."""

    app_name: str
    app_kind: str
    consumer_key: str
    logins: list[LoginResult]
    login_url: str
    key_path: str
    certificate_expires: str
    sf_command: str
    sf_commands: list[str] = field(default_factory=list)  # one per verified user
    web_flow: dict | None = None  # the web server flow's result (runbook.phases.webflow), when it ran
    notes: list[str] = field(default_factory=list)  # what the user must know before using the login
    decrypt_command: str = ""  # an encrypted key: the command making the decrypted copy the sf commands use
    scratch_org_proof: str = ""  # the scratch-org proof's outcome and time, once it ran (``with_scratch_proof``)

    def as_dict(self) -> dict:
        return {**asdict(self), "logins": [lr.as_dict() for lr in self.logins]}

    def with_scratch_proof(self, proof: ScratchProof) -> HandOff:
        """This card with the scratch-org proof's one line (outcome, who, total and per-step seconds)."""
        who = f" as {proof.hub_username}" if proof.ran and proof.hub_username else ""
        return replace(self, scratch_org_proof=f"{proof.summary()}{who}")

    def rows(self) -> list[tuple[str, str]]:
        from runbook.phases.webflow import WebFlowResult

        return [("App", f"{self.app_name} ({self.app_kind})"), ("Consumer key", self.consumer_key),
                ("Verified users", ", ".join(lr.username for lr in self.logins)),
                ("Login URL", self.login_url), ("Org id", self.logins[0].org_id if self.logins else ""),
                ("Private key", self.key_path), ("Certificate expires", self.certificate_expires),
                *((("Web server flow", f"works for {self.web_flow['username']} (callback "
                    f"{self.web_flow['callback_url']})"),
                   ("Refresh token", WebFlowResult(**self.web_flow).refresh_summary())) if self.web_flow else ()),
                *((("Scratch org proof", self.scratch_org_proof),) if self.scratch_org_proof else ()),
                *((("Decrypt the key first", self.decrypt_command),) if self.decrypt_command else ()),
                ("Log in with the CLI", self.sf_command),
                *((f"… as {lr.username}", cmd) for lr, cmd in zip(self.logins[1:], self.sf_commands[1:],
                                                                    strict=False)),
                *(("Note", note) for note in self.notes)]



def public_key_fingerprint(public_key) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo: the same for a key and the certificate made from it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest().hex(":").upper()


def app_certificate(session: OrgSession, app_record: dict) -> tuple[x509.Certificate | None, str]:
    """The certificate on the app, read from the org through its kind, and a note on where it came from.

    None when the org cannot be read (e.g. no access): then phase 2's recorded fingerprint is all there is.
    """
    try:
        current = kind_named(app_record.get("app_kind", "")).read(session, app_record["full_name"])
        pem = current.certificate if current else ""
        if not pem:
            return None, "the app has no certificate in the org"
        text = pem if "BEGIN CERTIFICATE" in pem else \
            f"-----BEGIN CERTIFICATE-----\n{pem}\n-----END CERTIFICATE-----\n"
        return x509.load_pem_x509_certificate(text.encode()), "read from the org"
    except (RunbookError, ValueError):
        return None, "as recorded by phase 2 (the org could not be read)"


def _usernames(usernames, username: str, session: OrgSession) -> list[str]:
    if isinstance(usernames, str):
        usernames = [u.strip() for u in usernames.split(",")]
    users = [u for u in (usernames or []) if u] or [username or session.username]
    if not all(users):
        raise InputError("usernames", usernames, "give the Salesforce username(s) to log in as")
    return list(dict.fromkeys(users))


def current_ci_user(wd: Workdir) -> str:
    """Phase 3's CI user (its ``ci_user``) while the setup has one, else ""."""
    record = wd.load("ci_user") or {}
    return record.get("username", "") if record.get("in_use", True) and record.get("applied", True) else ""


def verify_setup(session: OrgSession, *, workdir: str | Path, username: str = "", login_url: str = "",
                 audience: str = "", key_path: str = "", usernames: list[str] | str | None = None,
                 propagation_timeout: float = PROPAGATION_TIMEOUT, passphrase_env: str = "",
                 clock: Callable[[], float] = time.time) -> HandOff:
    """Phase 4: JWT login as each of ``usernames`` (or ``username``), and phase 3's CI user, with what phases
    1–3 recorded.

    Everything is checked before the first call: the login URL (``check_login_url``), the users, and that the
    key opens (an encrypted one with the passphrase in the variable ``passphrase_env`` names). A new or changed
    app is waited for (``propagation_timeout`` seconds, with a progress bar), so a first run against a real org
    passes. Records the hand-off (no token) as the ``verify`` phase record; raises LoginError at the first
    refusal, and InputError naming ``login_url`` when its host cannot be reached (DNS, TLS).
    """
    _check_wait(propagation_timeout)
    wd = open_workdir(workdir)
    cert_record, app_record = wd.load("certificate"), wd.load("connected_app")
    if cert_record is None or app_record is None:
        raise InputError("workdir", str(wd.root), "run phases 1 and 2 first (01_certificate, 02_connected_app)")
    key = Path(key_path or cert_record["key_path"])
    passphrase = key_passphrase(key, passphrase_env)
    users = _usernames(usernames, username, session)
    ci_user = current_ci_user(wd)
    if ci_user and ci_user.lower() not in {u.lower() for u in users}:
        users.append(ci_user)  # phase 3's least-privilege CI user: the user CI will log in as
    url = check_login_url(login_url) or without_userinfo(session.login_url).rstrip("/")
    signer = Signer(key, passphrase, passphrase_env)
    results = [_login_as(session, user, app_record, signer=signer, login_url=url, audience=audience,
                         propagation_timeout=propagation_timeout, clock=clock) for user in users]
    cert = load_certificate(Path(cert_record["cert_path"]))
    handoff = _handoff(app_record, results, signer=signer, login_url=url,
                       certificate_expires=cert.not_valid_after_utc.isoformat(timespec="seconds"))
    wd.save("verify", {**handoff.as_dict(), "certificate_fingerprint": fingerprint(cert),
                       "passphrase_env": passphrase_env})
    return handoff


@dataclass(frozen=True)
class Signer:
    """The key phase 4 signs with, its passphrase (from the environment, never recorded) and the variable's name."""

    key_path: Path
    passphrase: bytes | None = field(default=None, repr=False)
    passphrase_env: str = ""

    @property
    def decrypted_copy(self) -> Path:
        """Where the hand-off's command puts a decrypted copy of an encrypted key for `sf org login jwt`."""
        return self.key_path.with_name(f"{self.key_path.stem}.unencrypted.key")

    def decrypt_command(self) -> str:
        """The shell command that writes the decrypted copy, mode 0600 ("" for an unencrypted key).

        ``rm -f`` first: openssl keeps the mode of a file it overwrites, and the umask only applies to a new one.
        """
        if self.passphrase is None:
            return ""
        copy, key = shlex.quote(str(self.decrypted_copy)), shlex.quote(str(self.key_path))
        return f"(umask 077 && rm -f {copy} && openssl pkey -in {key} -passin env:{self.passphrase_env} -out {copy})"

    def notes(self) -> list[str]:
        """What the hand-off must say about an encrypted key: the CLI reads only unencrypted key files."""
        if self.passphrase is None:
            return []
        return [f"the key is encrypted (passphrase_env {self.passphrase_env}) and `sf org login jwt` reads only an "
                "unencrypted key file: make a copy only you can read (mode 0600) with the command under \"Decrypt the "
                f"key first\", log in with it, then delete it (rm {shlex.quote(str(self.decrypted_copy))}); for CI, "
                f"`runbook export-ci --passphrase-env {self.passphrase_env}` exports the key decrypted"]


def key_passphrase(key: Path, passphrase_env: str) -> bytes | None:
    """The passphrase the variable ``passphrase_env`` names, once the key opens with it (None: unencrypted key)."""
    passphrase = read_passphrase(passphrase_env)
    try:
        load_private_key(key, passphrase)
    except InputError as exc:
        if exc.field != "passphrase_env":
            raise
        raise InputError("passphrase_env", passphrase_env, f"{exc.fix} (as for phase 1)") from None
    return passphrase


def _login_as(session: OrgSession, user: str, app_record: dict, *, signer: Signer, login_url: str, audience: str,
              propagation_timeout: float, clock: Callable[[], float]) -> LoginResult:
    """One user's JWT login; a refusal is explained with what the org adds (fingerprints, whether the user exists)."""
    wait = PropagationWait(propagation_timeout, f"app {app_record['full_name']} to reach the org's "
                                                f"login servers (invalid_client_id) as {user}")
    try:
        result, _token = jwt_login(consumer_key=app_record["consumer_key"], username=user, key_path=signer.key_path,
                                   passphrase=signer.passphrase, login_url=login_url, audience=audience,
                                   propagation_timeout=propagation_timeout, progress=wait, clock=clock,
                                   http=session.http(retrying=False))
    except LoginError as exc:
        if "invalid assertion" in exc.description:
            raise _with_fingerprints(exc, signer, session, app_record) from None
        if "hasn't approved this consumer" in exc.description.lower():
            raise explain_refusal(exc.error, exc.description, consumer_key=app_record["consumer_key"], username=user,
                                  audience=audience, login_url=login_url,
                                  user_exists=_user_exists(session, user)) from None
        if isinstance(exc.__cause__, requests.ConnectionError):  # every try failed to connect
            raise _unreachable(exc.__cause__, login_url) from None
        raise
    except requests.ConnectionError as exc:
        raise _unreachable(exc, login_url) from None
    return result


def _user_exists(session: OrgSession, username: str) -> bool | None:
    """Whether the org has a user ``username`` (one REST query); None when the org cannot be asked."""
    try:
        return bool(query(session, f"SELECT Id FROM User WHERE Username = {quote(username)}"))
    except RunbookError:
        return None


DNS_FIX = ("check the spelling: https://login.salesforce.com, https://test.salesforce.com, or your My Domain exactly "
           "as Setup > My Domain shows it (or leave login_url empty for the org's own); else this machine's DNS or "
           "proxy (HTTPS_PROXY)")
TLS_FIX = ("check that login_url is the org's own host (another host, or a proxy, shows another certificate); behind a "
           "TLS-inspecting proxy, export REQUESTS_CA_BUNDLE=<a bundle with its CA>; for the local org, export "
           "REQUESTS_CA_BUNDLE=<state>/ca-bundle.pem (runbook org serve prints it)")
CONNECT_FIX = ("check the host and port and that this machine reaches it (firewall, HTTPS_PROXY); for the local org, "
               "that it is running (runbook org serve)")


def _unreachable(exc: requests.ConnectionError, login_url: str) -> InputError:
    """A token request that never reached the org (DNS, TLS, TCP), as the login_url problem it is."""
    host = urlsplit(login_url).hostname or login_url
    tls = _cause(exc, ssl.SSLError)
    if tls is not None:
        reason = getattr(tls, "verify_message", "") or getattr(tls, "reason", "") or type(tls).__name__
        return InputError("login_url", login_url, TLS_FIX, problem=f"the TLS handshake with {host} failed ({reason})")
    if _cause(exc, socket.gaierror) is not None:
        return InputError("login_url", login_url, DNS_FIX, problem=f"{host} does not resolve (DNS)")
    return InputError("login_url", login_url, CONNECT_FIX,
                      problem=f"{host} did not take the connection ({type(_cause(exc, OSError) or exc).__name__})")


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` behind ``exc``: requests wraps urllib3's errors, which wrap the socket's."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind) and current is not exc:
            return current
        todo += [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
    return None


def _handoff(app_record: dict, results: list[LoginResult], *, signer: Signer, login_url: str,
             certificate_expires: str) -> HandOff:
    """The hand-off card: the `sf org login jwt` commands (with a decrypted copy of an encrypted key) and notes."""
    consumer_key, users = app_record["consumer_key"], [lr.username for lr in results]
    key_file = signer.decrypted_copy if signer.passphrase is not None else signer.key_path
    commands = [sf_login_command(consumer_key=consumer_key, key_path=key_file, username=u, login_url=login_url,
                                 alias=_alias(u, i)) for i, u in enumerate(users)]
    return HandOff(app_name=app_record["full_name"], app_kind=app_record["app_kind"], consumer_key=consumer_key,
                   logins=results, login_url=login_url, key_path=str(signer.key_path),
                   certificate_expires=certificate_expires, sf_command=commands[0], sf_commands=commands,
                   notes=[*kind_named(app_record["app_kind"]).handoff_notes(), *signer.notes()],
                   decrypt_command=signer.decrypt_command())


def _alias(username: str, index: int) -> str:
    return "devhub" if index == 0 else username.split("@")[0]


def _with_fingerprints(exc: LoginError, signer: Signer, session: OrgSession, app_record: dict) -> LoginError:
    """The invalid-assertion error with the signing key's fingerprint and the app certificate's."""
    key_fp = public_key_fingerprint(load_private_key(signer.key_path, signer.passphrase).public_key())
    cert, source = app_certificate(session, app_record)
    if cert is None:
        app_side = f"certificate {app_record.get('certificate_fingerprint', '?')} ({source})"
    else:
        app_side = (f"certificate {fingerprint(cert)} with public key {public_key_fingerprint(cert.public_key())} "
                    f"({source})")
    return explain_refusal(exc.error, exc.description, consumer_key=app_record["consumer_key"], username="",
                           audience="", login_url="",
                           cert_fingerprints=(f"public key {key_fp} ({signer.key_path})", app_side))


WEB_FLOW_MODES = ("auto", "on", "off")


def check_inputs(*, login_url: str = "", usernames=(), propagation_timeout: float = PROPAGATION_TIMEOUT,
                 web_flow: str = "auto", web_flow_timeout: float = 120.0) -> None:
    """Refuse phase 4's parameters that cannot work, before anything is sent (``runbook run`` checks them
    for the whole run up front)."""
    check_login_url(login_url)
    names = [usernames] if isinstance(usernames, str) else list(usernames or [])
    if not all(isinstance(u, str) for u in names):
        raise InputError("usernames", usernames, 'give Salesforce usernames, e.g. ["ci@example.com"]')
    _check_wait(propagation_timeout)
    if web_flow not in WEB_FLOW_MODES:
        raise InputError("web_flow", web_flow, f"use one of {', '.join(WEB_FLOW_MODES)}")
    if isinstance(web_flow_timeout, bool) or not isinstance(web_flow_timeout, int | float) or web_flow_timeout <= 0:
        raise InputError("web_flow_timeout", web_flow_timeout, "give the seconds to wait for the browser, e.g. 120")


def _check_wait(propagation_timeout) -> None:
    if isinstance(propagation_timeout, bool) or not isinstance(propagation_timeout, int | float) or \
            not 0 <= propagation_timeout <= 3600:
        raise InputError("propagation_timeout", propagation_timeout,
                         "give the seconds to wait for a new app to propagate, 0 to 3600 (default 900)")


def verify_web_flow(session: OrgSession, handoff: HandOff, *, workdir: str | Path, web_flow: str = "auto",
                    consumer_secret_file: str = "", timeout: float = 120.0, login_hint: str = "") -> HandOff:
    """Phase 4's web server flow check, when the app has the flow; adds its result to the hand-off record.

    ``web_flow``: ``"auto"`` runs it when phase 2 enabled the flow and the org is the local org (whose
    login page the runbook fills in with the local admin's credentials file, so batch runs stay
    unattended); ``"on"`` runs it anyway and waits up to ``timeout`` seconds for someone to open the link
    and log in; ``"off"`` skips it.

    A refresh token that comes back is checked once and revoked (never kept or shown), and the card says
    what the app's refresh token policy, read through its kind, makes of it ("valid until revoked",
    "expires after 3 hours", "refused at once (zero)").
    """
    from runbook.phases.webflow import describe_refresh_policy, follow_redirects, run_web_flow

    if web_flow not in WEB_FLOW_MODES:
        raise InputError("web_flow", web_flow, f"use one of {', '.join(WEB_FLOW_MODES)}")
    wd = open_workdir(workdir)
    app = wd.load("connected_app") or {}
    has_flow = "web" in app.get("flows", [])
    if web_flow == "off" or (web_flow == "auto" and not (has_flow and session.is_local)):
        why = ("web_flow is off" if web_flow == "off" else "the app has no web server flow (phase 2 flows)"
               if not has_flow else 'a real org needs someone to log in: set web_flow="on" to wait for it')
        print(f"Web server flow not checked: {why}.")
        return handoff
    secret_file = consumer_secret_file or app.get("consumer_secret_file", "")
    result = run_web_flow(consumer_key=app["consumer_key"], callback_url=app["callback_url"],
                          login_url=handoff.login_url, login_hint=login_hint or handoff.logins[0].username,
                          consumer_secret_file=secret_file, timeout=timeout,
                          browser=functools.partial(follow_redirects, state_dir=session.local_state)
                          if session.is_local else None, http=session.http(retrying=False))
    if result.refresh_token_issued:
        access = kind_named(app["app_kind"]).read_access(session, app["full_name"], hint=app.get("access_hint", ""))
        result.refresh_token_policy = access.policies["refresh_token_policy"]
        result.refresh_token_outcome = describe_refresh_policy(result.refresh_token_policy)
    handoff.web_flow = result.as_dict()
    record = wd.load("verify") or {}
    wd.save("verify", {**record, "web_flow": handoff.web_flow})
    return handoff
