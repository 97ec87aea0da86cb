"""The JWT bearer exchange (RFC 7523) as Salesforce serves it: the login URL checked, the token asked for, a new
app's propagation waited out, and each known refusal explained with the setting to change.

The exchange is done here with requests + PyJWT (simple-salesforce only logs in to *.salesforce.com hosts):

- ``invalid_client_id`` is waited out (``propagation_timeout``, 15 minutes by default, polled every few
  seconds with a progress bar): a new or changed app takes 2–10 minutes to reach every Salesforce server,
  so a first run against a real org passes; the message says how long it waited.
- ``expired authorization code`` (an ``exp`` already past) shows the clock offset between this machine
  and the org, read from the token response's ``Date`` header.
- an org that answers 5xx, 429 or REQUEST_LIMIT_EXCEEDED, or not at all, is asked again as a read would be.

Phase 4 (``runbook.phases.verify``) and the scratch-org proof log in through ``jwt_login``.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from html import escape
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import requests

from runbook.errors import InputError, LoginError
from runbook.phases.certificate import load_private_key
from runbook.salesforce import process_connector
from runbook.salesforce.retry import DEFAULT_POLICY, http_timeout, is_transient, no_answer, timeout_fix
from runbook.salesforce.urls import without_userinfo

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
