"""Phase 4: prove the setup works with a real JWT bearer exchange as each user, and hand over what CI needs.

The exchange itself, its waits and its refusals explained, is ``runbook.phases.jwt_bearer``; here the phase
checks its inputs before the first call, logs in as each user (and phase 3's CI user), adds what the org says
to a refusal (``invalid assertion``: the key's certificate fingerprint and the app's, read from the org; a
user that does not exist), and records the hand-off: the ``sf org login jwt`` command, never a token.

The web server flow is in ``runbook.phases.webflow``; the CI export in ``runbook.export_ci``.
"""

from __future__ import annotations

import functools
import shlex
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from cryptography import x509

from runbook.apps import kind_named
from runbook.errors import InputError, LoginError, RunbookError
from runbook.fingerprints import fingerprint, public_key_fingerprint
from runbook.phases.cards import RowsCard
from runbook.phases.certificate import load_certificate, load_private_key, read_passphrase
from runbook.phases.jwt_bearer import (
    PROPAGATION_TIMEOUT,
    LoginResult,
    PropagationWait,
    check_login_url,
    explain_refusal,
    jwt_login,
)
from runbook.salesforce import OrgSession
from runbook.salesforce.rest import query, quote
from runbook.salesforce.urls import without_userinfo
from runbook.work.workdir import Workdir, open_workdir

if TYPE_CHECKING:
    from runbook.phases.scratch_proof import ScratchProof

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
