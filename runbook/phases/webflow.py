"""The OAuth web server flow with PKCE: what `sf org login web` does with a custom connected app.

``run_web_flow`` starts a one-shot HTTP server on the app's callback (``http://localhost:1717/OauthRedirect``
by default), shows the authorize URL (a link in a notebook), waits for the browser to come back with a
code, exchanges it (``grant_type=authorization_code`` with the PKCE ``code_verifier``, and the consumer
secret read from a 0600 file unless the app does not require it), then proves the token with the
identity URL. The token is never returned or shown.

A refresh token in the answer (the app has the ``refresh_token`` scope, which the flow asks for) is
checked the same way and not kept: one ``grant_type=refresh_token`` call (with the secret when there is one),
then ``/services/oauth2/revoke``, which ends it and every session of its grant, so a check leaves no live
credential behind. The result says whether one came back and what the check saw. Only a caller that asks
for the token (``refresh_token_to``, the sfdx auth URL export) gets it, and it is then left live.

Against the local org nobody needs to be there: ``follow_redirects`` plays the browser and logs in as a
person would, posting the org's admin credentials (``<state>/admin-credentials.json``) to its login page,
then following the redirect to the callback. It sends that password to the local org only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

from runbook.errors import InputError, LoginError
from runbook.salesforce import LOCAL_STATE_ENV, process_connector
from runbook.salesforce.retry import HTTP_TIMEOUT

DEFAULT_SCOPES = "api web refresh_token"


@dataclass
class WebFlowResult:
    """A successful web server flow login, proven by the identity URL. Holds no token or code."""

    username: str
    user_id: str
    org_id: str
    instance_url: str
    scope: str
    callback_url: str
    used_client_secret: bool
    refresh_token_issued: bool = False
    refresh_check: str = ""  # what one refresh grant answered, and whether the token was then revoked
    refresh_token_policy: str = ""  # the app's policy, in phase 3's words (set by phase 4, which reads it)
    refresh_token_outcome: str = ""  # what that policy makes of the token: "valid until revoked" ...

    def as_dict(self) -> dict:
        return asdict(self)

    def refresh_summary(self) -> str:
        """One line for the hand-off: whether a refresh token came back, its policy, and the check."""
        if not self.refresh_token_issued:
            return ("none came back: the app needs the refresh_token scope (phase 2 scopes "
                    '"refresh_token offline_access")')
        policy = f"{self.refresh_token_outcome} (policy {self.refresh_token_policy})" \
            if self.refresh_token_policy else "issued"
        return f"{policy}; {self.refresh_check}" if self.refresh_check else policy


_UNITS = {"HOURS": "hour", "DAYS": "day", "MONTHS": "month"}


def describe_refresh_policy(policy: str) -> str:
    """What a refresh token policy (phase 3's words) makes of a refresh token, for a person to read."""
    kind, _, rest = (policy or "infinite").partition(":")
    count, _, unit = rest.partition(":")
    if kind == "infinite":
        return "valid until revoked"
    if kind == "zero":
        return "refused at once (zero)"
    noun = _UNITS.get(unit.upper(), unit.lower())
    span = f"{count} {noun}{'' if count == '1' else 's'}"
    if kind == "specific_lifetime":
        return f"expires after {span}"
    if kind == "specific_inactivity":
        return f"expires after {span} without use"
    return f"policy {policy}"


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)``, S256."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(*, login_url: str, consumer_key: str, callback_url: str, challenge: str, state: str,
                  login_hint: str = "", scopes: str = DEFAULT_SCOPES) -> str:
    """The URL the user opens to log in and allow the app."""
    params = {"response_type": "code", "client_id": consumer_key, "redirect_uri": callback_url,
              "scope": scopes, "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
    if login_hint:
        params["login_hint"] = login_hint
    return f"{login_url.rstrip('/')}/services/oauth2/authorize?{urlencode(params)}"


def _callback_address(callback_url: str) -> tuple[int, str]:
    parts = urlsplit(callback_url)
    if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1") or not parts.port:
        raise InputError("callback_url", callback_url, "the web server flow here needs a local callback like "
                         "http://localhost:1717/OauthRedirect: set callback_port in phase 2")
    return parts.port, parts.path or "/"


class CallbackServer:
    """A one-shot HTTP server on 127.0.0.1 that keeps the query of the first request to its path."""

    def __init__(self, callback_url: str) -> None:
        port, path = _callback_address(callback_url)
        self.received: dict[str, str] = {}
        self.done = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != path or outer.done.is_set():
                    self.send_error(404)
                    return
                outer.received = {k: v[0] for k, v in parse_qs(parts.query).items()}
                ok = "code" in outer.received
                page = ("Logged in: you can close this tab and go back to the runbook." if ok else
                        f"Login refused: {html.escape(outer.received.get('error_description', 'no code'))}")
                body = f"<html><body><p>{page}</p></body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.done.set()

            def log_message(self, format: str, *args) -> None:  # the query holds the code: never log it
                pass

        try:
            self._server = HTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise InputError("callback_port", port, f"port {port} is busy ({exc.strerror}): another login "
                             "(sf org login web, a previous run) may be waiting on it; stop it, or change "
                             "callback_port in phase 2 (the app's callback URL must use the same port)") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-callback", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> dict[str, str] | None:
        return self.received if self.done.wait(timeout) else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> CallbackServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def show_link(url: str) -> None:
    """Print the URL, and in a notebook also show it as a link."""
    print(f"Open this URL to log in and allow the app:\n{url}")
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(HTML(f'<a href="{html.escape(url)}" target="_blank">Log in and allow the app</a>'))


@dataclass(frozen=True)
class PageLogin:
    """Who ``follow_redirects`` logs in as: a local org's admin, from the file the org wrote when seeded."""

    username: str
    password: str = field(repr=False)
    ca_bundle: Path

    @classmethod
    def from_state(cls, state_dir: str | Path | None) -> PageLogin:
        """The admin of the local org in ``state_dir`` (default: $RUNBOOK_LOCAL_ORG_STATE)."""
        folder = state_dir or os.environ.get(LOCAL_STATE_ENV)
        if not folder:
            raise InputError("state_dir", state_dir, "pass the local org's state folder (session.local_state), "
                             f"or set ${LOCAL_STATE_ENV}: its admin-credentials.json is who logs in")
        path = Path(folder).expanduser() / "admin-credentials.json"
        try:
            creds = json.loads(path.read_text())
            return cls(creds["username"], creds["password"], path.parent / "ca-bundle.pem")
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError("state_dir", str(folder), f"{path} is missing or not the local org's: give the "
                             "folder the local org keeps its state in") from None


@dataclass
class LoginForm:
    """The first form of a page: where it posts, and its inputs (name -> value; the password's name too)."""

    action: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    password_field: str = ""
    error: str = ""


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form: LoginForm | None = None
        self._in_form = self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "form" and self.form is None:
            self.form, self._in_form = LoginForm(action=named.get("action", "")), True
        elif tag == "input" and self._in_form and self.form is not None and named.get("name"):
            if named.get("type") == "password":
                self.form.password_field = named["name"]
            elif named.get("type") != "submit":
                self.form.fields[named["name"]] = named.get("value", "")
        elif self._in_form and named.get("id") == "error":
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        self._in_form = self._in_form and tag != "form"
        self._in_error = self._in_error and tag != "div"

    def handle_data(self, data: str) -> None:
        if self._in_error and self.form is not None:
            self.form.error += data


def login_form(page: str) -> LoginForm | None:
    """The page's login form (a form with a password field), or None when the page has none."""
    parser = _FormParser()
    parser.feed(page)
    return parser.form if parser.form is not None and parser.form.password_field else None


def follow_redirects(url: str, *, state_dir: str | Path | None = None) -> None:
    """Play the browser on the local org: open ``url``, log in on its page, follow the redirect to the callback.

    Logs in as the admin of the local org in ``state_dir`` (default: $RUNBOOK_LOCAL_ORG_STATE), so
    ``url`` must be the local org's (https on 127.0.0.1 or localhost): the password goes nowhere else.
    An error page from the org (unknown client, mismatched redirect_uri) raises its LoginError at once;
    a refused login raises one naming the credentials file.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname not in ("127.0.0.1", "localhost"):
        raise InputError("url", url, "follow_redirects logs in with the local org's admin password, so it only "
                         "opens the local org's pages: on a real org, open the link and log in yourself")
    who = PageLogin.from_state(state_dir)
    callback_url = parse_qs(parts.query).get("redirect_uri", [""])[0]
    with requests.Session() as browser:
        page = browser.get(url, timeout=HTTP_TIMEOUT, verify=str(who.ca_bundle))
        _raise_error_page(page, callback_url)
        form = login_form(page.text)
        if form is None:  # a session already logged in: the org redirected to the callback
            return
        fields = {**form.fields, "username": who.username, form.password_field: who.password}
        answer = browser.post(urljoin(page.url, form.action), data=fields, timeout=HTTP_TIMEOUT,
                              verify=str(who.ca_bundle))
    _raise_error_page(answer, callback_url)
    refused = login_form(answer.text)
    if refused is not None:
        raise LoginError("login_refused", refused.error.strip().rstrip(".") or "the login page came back",
                         f"The local org refused the login as {who.username}.",
                         "use the state folder the org was seeded in (its admin-credentials.json), or start "
                         "the local org from a fresh state")


def _raise_error_page(response: requests.Response, callback_url: str) -> None:
    """The org's own error page (``error=...&error_description=...``, HTTP 400) as a LoginError."""
    if response.status_code >= 400 and "error=" in response.text:
        page = {k: v[0] for k, v in parse_qs(response.text.strip()).items()}
        raise explain_web_refusal(page.get("error", ""), page.get("error_description", ""), login_hint="",
                                  callback_url=callback_url)


def read_secret_file(path: str | Path) -> str:
    """The consumer secret from a file only its owner can read."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError("consumer_secret_file", str(path), "the file does not exist: give the path of the file "
                         "phase 2 wrote, or copy the secret from App Manager > View > Consumer Secret into a "
                         "file with mode 0600")
    if path.stat().st_mode & 0o077:
        raise InputError("consumer_secret_file", str(path), f"the file is readable by others: chmod 600 {path}")
    return path.read_text().strip()


def run_web_flow(*, consumer_key: str, callback_url: str, login_url: str, login_hint: str = "",
                 consumer_secret_file: str | Path = "", timeout: float = 120.0, scopes: str = DEFAULT_SCOPES,
                 show: Callable[[str], None] = show_link, browser: Callable[[str], None] | None = None,
                 http: requests.Session | None = None,
                 refresh_token_to: Callable[[str], None] | None = None) -> WebFlowResult:
    """Log in through the authorize page and the callback; raises LoginError / InputError with the fix.

    ``browser``, when given, is called with the authorize URL (``follow_redirects`` for the local org);
    otherwise a person opens the link that ``show`` displays, within ``timeout`` seconds. A refresh token
    that comes back is checked and revoked, unless ``refresh_token_to`` is given: then it is handed to that
    (and only that) and left live.
    """
    secret = read_secret_file(consumer_secret_file) if consumer_secret_file else ""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    url = authorize_url(login_url=login_url, consumer_key=consumer_key, callback_url=callback_url,
                        challenge=challenge, state=state, login_hint=login_hint, scopes=scopes)
    with CallbackServer(callback_url) as server:
        show(url)
        if browser is not None:
            browser(url)
        received = server.wait(timeout)
    if received is None:
        raise LoginError("timeout", f"no redirect to {callback_url} within {timeout:.0f} s",
                         "Nobody completed the login and Allow in the browser in time.",
                         "open the link in a browser on this machine (the callback goes to localhost) and "
                         "log in; raise web_flow_timeout if you need longer")
    if received.get("state") != state:
        raise LoginError("state_mismatch", "the callback's state is not this login's",
                         "Another login's redirect reached the callback.", "rerun the web server flow")
    if "code" not in received:
        raise explain_web_refusal(received.get("error", "no_code"), received.get("error_description", ""),
                                  login_hint=login_hint, callback_url=callback_url)
    http = http or process_connector().http()
    tokens: list[str] = []
    result = _exchange(received["code"], verifier, secret=secret, consumer_key=consumer_key,
                       callback_url=callback_url, login_url=login_url, http=http, refresh_tokens=tokens)
    if tokens and refresh_token_to is not None:
        refresh_token_to(tokens[0])
    elif tokens:
        result.refresh_check = check_refresh_token(tokens[0], secret=secret, consumer_key=consumer_key,
                                                   login_url=login_url, http=http)
    return result


def check_refresh_token(refresh_token: str, *, secret: str, consumer_key: str, login_url: str,
                        http: requests.Session) -> str:
    """One refresh grant with ``refresh_token``, then its revocation; what happened, for a person to read.

    Revoking it ends the token and every session of its grant, so the check leaves no live refresh token;
    a refused one is dead already.
    """
    base = login_url.rstrip("/")
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": consumer_key}
    if secret:
        form["client_secret"] = secret
    answer, body = _token_post(http, base, form)
    if answer.status_code != 200 or "access_token" not in body:
        refused = f"a refresh was refused: {body.get('error', f'HTTP {answer.status_code}')}: " \
                  f"{body.get('error_description', '')}".rstrip(": ")
        if body.get("error") == "invalid_client" and not secret:
            refused += (' (the app requires its consumer secret for refresh: pass consumer_secret_file, or clear '
                        '"Require Secret for Refresh Token Flow", isSecretRequiredForRefreshToken)')
        return refused
    seen = "a refresh worked" + (" and rotated the token" if "refresh_token" in body else "")
    latest = body.get("refresh_token") or refresh_token
    revoked = http.post(f"{base}/services/oauth2/revoke", data={"token": latest}, timeout=HTTP_TIMEOUT)
    if revoked.status_code == 200:
        return f"{seen}; then revoked"
    return (f"{seen}; revoking it failed (HTTP {revoked.status_code}): revoke it in Setup > Connected Apps OAuth "
            "Usage")


def _token_post(http: requests.Session, login_url: str, form: dict[str, str]) -> tuple[requests.Response, dict]:
    """POST ``form`` to the token endpoint; the answer and its JSON body ({} when it is not JSON)."""
    response = http.post(f"{login_url.rstrip('/')}/services/oauth2/token", data=form, timeout=HTTP_TIMEOUT)
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response, body if isinstance(body, dict) else {}


def _exchange(code: str, verifier: str, *, secret: str, consumer_key: str, callback_url: str, login_url: str,
              http: requests.Session, refresh_tokens: list[str] | None = None) -> WebFlowResult:
    """The code exchange, proven by the identity URL; a refresh token in the answer goes to ``refresh_tokens``."""
    form = {"grant_type": "authorization_code", "code": code, "client_id": consumer_key,
            "redirect_uri": callback_url, "code_verifier": verifier}
    if secret:
        form["client_secret"] = secret
    response, body = _token_post(http, login_url, form)
    if response.status_code != 200 or "access_token" not in body:
        raise explain_web_refusal(body.get("error", f"HTTP {response.status_code}"),
                                  body.get("error_description", ""), login_hint="", callback_url=callback_url,
                                  sent_secret=bool(secret))
    token = body["access_token"]
    identity = http.get(body["id"], headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT).json()
    org_id, user_id = body["id"].rstrip("/").split("/")[-2:]
    if body.get("refresh_token") and refresh_tokens is not None:
        refresh_tokens.append(body["refresh_token"])
    return WebFlowResult(username=identity.get("username", ""), user_id=user_id, org_id=org_id,
                         instance_url=body["instance_url"], scope=body.get("scope", ""), callback_url=callback_url,
                         used_client_secret=bool(secret), refresh_token_issued=bool(body.get("refresh_token")))


def explain_web_refusal(error: str, description: str, *, login_hint: str, callback_url: str,
                        sent_secret: bool = False) -> LoginError:
    """An authorize or token refusal in the web server flow → a LoginError with the setting to change."""
    if error == "invalid_client" and not sent_secret:
        return LoginError(error, description, "the app requires its consumer secret for the web server flow.",
                          "pass consumer_secret_file (a mode-0600 file with the secret), or turn off "
                          '"Require Secret for Web Server Flow" (isConsumerSecretOptional) in phase 2')
    if error == "invalid_client":
        return LoginError(error, description, "the consumer secret does not match the app's.",
                          "copy the secret again from App Manager > View > Consumer Secret into the file")
    if error == "invalid_client_id":
        return LoginError(error, description, "the org does not know this consumer key (a new app takes 2–10 "
                          "minutes to propagate).", "wait and retry, or check the consumer key from phase 2")
    if error == "redirect_uri_mismatch":
        return LoginError(error, description, f"the app's callback URL is not {callback_url}.",
                          "set callback_port in phase 2 so the app's callback URL matches, and rerun phase 2")
    if error == "access_denied":
        return LoginError(error, description, f"{login_hint or 'the user'} may not use the app.",
                          "pre-authorize the user's profile or permission set in phase 3")
    if "code verifier" in description:
        return LoginError(error, description, "the PKCE code_verifier does not match the code_challenge.",
                          "rerun the web server flow (each run makes a new pair)")
    if "authorization code" in description:
        return LoginError(error, description, "the code was already used, expired (15 min) or is for another "
                          "app.", "rerun the web server flow")
    return LoginError(error, description, "the org refused the web server flow.", "check the app and the user")
