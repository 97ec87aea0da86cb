"""The variables CI needs to run `sf org login jwt`: set in CI by its own CLI, or written to a mode-0600 file.

Variables (names as the Salesforce CLI's CI guides use them)::

    SF_CONSUMER_KEY      the app's consumer key (phase 2)
    SF_USERNAME          the verified user (phase 4)
    SF_INSTANCE_URL      the login URL the JWT was verified against (``--instance-url``)
    SF_JWT_KEY_BASE64    the private key (phase 1), base64 of the PEM file, one line

Formats: ``env`` (shell-quoted ``NAME=value`` lines, for ``set -a; . file``), ``github`` (dotenv, for
``gh secret set --env-file FILE``), ``gitlab`` (a JSON list of CI/CD variables for the project variables
API, masked and protected). In CI: ``echo "$SF_JWT_KEY_BASE64" | base64 -d > server.key``.

``sfdx-url`` (``export_sfdx_auth_url``) writes one line instead, ``force://<consumer key>:<secret>:<refresh
token>@<host>`` for ``sf org login sfdx-url --sfdx-url-file FILE``: it runs the web server flow (the app
needs ``web`` in phase 2's flows) to get a refresh token the app's policy governs, and keeps it live.

Pushed (``push_ci``), no file is written: ``gh secret set NAME`` or ``glab variable set NAME`` runs once per
variable with the value on its stdin, never on a command line (where ``ps`` and shell history would show it).
The tool must be on PATH and logged in (``gh auth status``) before a value is sent. Only names are printed.

The key exported is the file the work folder's records name, so before a byte of it goes out it is
checked to be what phase 1 made: a private key whose public key is the certificate's on record, and that
certificate the one the app trusts. A record pointing anywhere else (``/etc/hostname``, someone's
``~/.ssh/id_rsa``) is refused, never exported. ``sf org login jwt`` reads only unencrypted key files, so a key
phase 1 encrypted is exported decrypted (PKCS#8 PEM), opened with the passphrase in the variable
``passphrase_env`` names; the passphrase itself never reaches CI.
"""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from runbook.errors import InputError, RunbookError
from runbook.fingerprints import fingerprint
from runbook.phases.certificate import load_certificate, load_private_key, read_passphrase
from runbook.salesforce.urls import without_userinfo
from runbook.work.files import PRIVATE, write_atomic
from runbook.work.workdir import Workdir, open_workdir

if TYPE_CHECKING:
    import requests

FORMATS = ("github", "gitlab", "env")
NAMES = ("SF_CONSUMER_KEY", "SF_USERNAME", "SF_INSTANCE_URL", "SF_JWT_KEY_BASE64")
_SECRET = {"SF_JWT_KEY_BASE64"}
MAX_KEY_BYTES = 64 * 1024  # an RSA 4096 key is 3.3 KB as PEM: a bigger file is not one
_RERUN = "rerun phase 1 (01_certificate) so the work folder's record names the key it made, then phase 4"
PUSH_TIMEOUT = 60  # seconds for one gh/glab call: it is one HTTPS request


@dataclass(frozen=True)
class Export:
    """Where the variables went; holds their names only, never their values."""

    path: Path
    format: str
    names: tuple[str, ...]

    def __str__(self) -> str:
        return f"wrote {', '.join(self.names)} ({self.format}) to {self.path} (mode 0600)"


def ci_variables(workdir: str | Path, *, username: str = "", instance_url: str = "",
                 passphrase_env: str = "") -> dict[str, str]:
    """The variables from the work folder's records (phase 4 must have verified the login)."""
    wd = open_workdir(workdir)
    verify, cert = wd.load("verify"), wd.load("certificate")
    if verify is None or cert is None:
        raise InputError("workdir", str(wd.root), "run phase 4 (04_verify) first: only a verified setup is exported")
    users = [login["username"] for login in verify.get("logins", [])]
    user = username or (users[0] if users else "")
    if username and username not in users:
        raise InputError("username", username, f"phase 4 verified {', '.join(users) or 'nobody'}: verify this "
                         "user first (usernames parameter of 04_verify)")
    key = _checked_key(wd, Path(verify.get("key_path") or cert["key_path"]), Path(cert["cert_path"]),
                       passphrase_env=passphrase_env, recorded_env=str(verify.get("passphrase_env") or ""))
    return {"SF_CONSUMER_KEY": verify["consumer_key"], "SF_USERNAME": user,
            "SF_INSTANCE_URL": without_userinfo(instance_url or verify["login_url"]).rstrip("/"),
            "SF_JWT_KEY_BASE64": base64.b64encode(key).decode()}


def _checked_key(wd: Workdir, key_path: Path, cert_path: Path, *, passphrase_env: str = "",
                 recorded_env: str = "") -> bytes:
    """The key as CI needs it (unencrypted PEM), once it is a private key for the certificate the app trusts."""
    data = _key_bytes(key_path)
    if b"ENCRYPTED" in data and not passphrase_env:
        name = recorded_env or "NAME"
        raise InputError("key_path", str(key_path), f"add --passphrase-env {name} (the variable holding the key's "
                         "passphrase, as for phases 1 and 4): the export then holds the key decrypted",
                         problem="the key is encrypted, and sf org login jwt in CI reads only unencrypted keys")
    key = _opened_key(key_path, passphrase_env)
    cert = load_certificate(cert_path)
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise InputError("key_path", str(key_path), _RERUN,
                         problem=f"this key does not match the certificate on record, {cert_path}")
    app = wd.load("connected_app") or {}
    trusted = app.get("certificate_fingerprint")
    if trusted and trusted != fingerprint(cert):
        raise InputError("cert_path", str(cert_path), "rerun phases 2 and 4 so the app trusts this certificate, or "
                         "put back the pair the app was set up with",
                         problem=f"the app {app.get('full_name', '')} trusts the certificate {trusted}, "
                                 f"not this one ({fingerprint(cert)})")
    if not passphrase_env:
        return data
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _opened_key(key_path: Path, passphrase_env: str) -> rsa.RSAPrivateKey:
    """The private key, decrypted with the passphrase ``passphrase_env`` names where it is given."""
    passphrase = read_passphrase(passphrase_env)
    try:
        return load_private_key(key_path, passphrase)
    except InputError as exc:
        if exc.field == "passphrase_env":
            raise InputError("passphrase_env", passphrase_env, exc.fix) from None
        raise InputError("key_path", str(key_path), _RERUN,
                         problem="the phase 1 record names this file as the private key, but it is not one") from None


def _key_bytes(path: Path) -> bytes:
    """The file's bytes, refusing a device, folder or big file before reading it (``/dev/zero`` never ends)."""
    if not path.is_file():
        raise InputError("key_path", str(path), _RERUN,
                         problem="the phase 1 record names it as the private key, but it is not a regular file")
    if path.stat().st_size > MAX_KEY_BYTES:
        raise InputError("key_path", str(path), _RERUN, problem=f"the file is over {MAX_KEY_BYTES // 1024} KiB: "
                         "not a private key")
    return path.read_bytes()


def _public_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def render(variables: dict[str, str], fmt: str) -> str:
    """The file's text in ``fmt``."""
    if fmt == "env":
        return "".join(f"{name}={shlex.quote(value)}\n" for name, value in variables.items())
    if fmt == "github":
        return ("# gh secret set --env-file THIS_FILE   (then delete this file)\n"
                + "".join(f'{name}="{value}"\n' for name, value in variables.items()))
    if fmt == "gitlab":
        rows = [{"key": name, "value": value, "variable_type": "env_var", "protected": True,
                 "masked": name in _SECRET, "raw": True} for name, value in variables.items()]
        return json.dumps(rows, indent=2) + "\n"
    raise InputError("format", fmt, f"use one of {', '.join(FORMATS)}")


def export_ci(workdir: str | Path, *, fmt: str = "env", output: str | Path = "", username: str = "",
              instance_url: str = "", passphrase_env: str = "") -> Export:
    """Write the CI variables to ``output`` (default ``<workdir>/ci/sf-jwt.<fmt>``) with mode 0600."""
    if fmt not in FORMATS:
        raise InputError("format", fmt, f"use one of {', '.join(FORMATS)}")
    variables = ci_variables(workdir, username=username, instance_url=instance_url, passphrase_env=passphrase_env)
    suffix = {"env": "env", "github": "github.env", "gitlab": "gitlab.json"}[fmt]
    path = Path(output) if output else open_workdir(workdir).root / "ci" / f"sf-jwt.{suffix}"
    write_atomic(path, render(variables, fmt), PRIVATE)
    return Export(path=path.resolve(), format=fmt, names=tuple(variables))


# --- an sfdx auth URL: `sf org login sfdx-url` ------------------------------------------------------

SFDX_URL = "sfdx-url"  # the --format that writes one; it runs the web server flow for its refresh token
SFDX_URL_FILE = "sf-auth-url.txt"


@dataclass(frozen=True)
class AuthUrlExport:
    """Where the sfdx auth URL went; holds no part of it."""

    path: Path
    username: str
    note: str = ""

    def __str__(self) -> str:
        lines = [f"wrote an sfdx auth URL for {self.username} (consumer key, secret and refresh token) to {self.path} "
                 "(mode 0600)",
                 f"Log in with: sf org login sfdx-url --sfdx-url-file {self.path} --alias devhub; then delete the "
                 "file (or store it as one CI secret)"]
        return "\n".join([*lines, *([self.note] if self.note else [])])


def sfdx_auth_url(*, consumer_key: str, consumer_secret: str, refresh_token: str, instance_url: str) -> str:
    """``force://<clientId>:<clientSecret>:<refreshToken>@<host[:port]>``, as sfdx-core writes one
    (AuthInfo.getSfdxAuthUrl [V]; parseSfdxAuthUrl adds https:// back); an empty secret stays empty."""
    host = urlsplit(without_userinfo(instance_url)).netloc
    return f"force://{consumer_key}:{consumer_secret}:{refresh_token}@{host}"


def export_sfdx_auth_url(workdir: str | Path, *, output: str | Path = "", username: str = "",
                         instance_url: str = "", timeout: float = 120.0,
                         show: Callable[[str], None] | None = None) -> AuthUrlExport:
    """Log in by the web server flow and write the sfdx auth URL its refresh token makes, mode 0600.

    Default file ``<workdir>/ci/sf-auth-url.txt``. The app must have the web server flow (phase 2 ``flows``)
    and phase 4 must have verified it; the local org's login page is filled in as phase 4 does, a real
    org's link is shown for a person to open (within ``timeout`` seconds). The refresh token is left live:
    that is the export's point. It goes into the file only, never to the screen.
    """
    from runbook.phases.webflow import read_secret_file, run_web_flow, show_link

    wd = open_workdir(workdir)
    verify, app = wd.load("verify"), wd.load("connected_app")
    if verify is None or app is None:
        raise InputError("workdir", str(wd.root), "run phase 4 (04_verify) first: only a verified setup is exported")
    if "web" not in app.get("flows", []):
        raise InputError("format", SFDX_URL, "add \"web\" to phase 2's flows and rerun phases 2 to 4",
                         problem="an sfdx auth URL holds a refresh token, which only the web server flow gives")
    if (verify.get("web_flow") or {}).get("refresh_token_policy") == "zero":
        raise InputError("format", SFDX_URL, "set refresh_token_policy in phase 3 (e.g. infinite or "
                         "specific_lifetime:90:DAYS) and rerun phases 3 and 4",
                         problem="the app's refresh token policy is zero: the org would refuse the URL at once")
    secret_file = str(app.get("consumer_secret_file") or "")
    login_url, browser, note, http = _web_login(wd, instance_url or verify["login_url"])
    handed: list[str] = []
    result = run_web_flow(consumer_key=app["consumer_key"], callback_url=app["callback_url"], login_url=login_url,
                          login_hint=username or next(iter(u["username"] for u in verify.get("logins", [])), ""),
                          consumer_secret_file=secret_file, timeout=timeout, show=show or show_link,
                          browser=browser, refresh_token_to=handed.append, http=http)
    if not handed:
        raise InputError("scopes", app.get("scopes", ""), "add \"refresh_token offline_access\" to phase 2's scopes "
                         "and rerun phases 2 to 4", problem="the org gave the web server flow no refresh token")
    url = sfdx_auth_url(consumer_key=app["consumer_key"], refresh_token=handed[0], instance_url=result.instance_url,
                        consumer_secret=read_secret_file(secret_file) if secret_file else "")
    path = Path(output) if output else wd.root / "ci" / SFDX_URL_FILE
    write_atomic(path, url + "\n", PRIVATE)
    return AuthUrlExport(path=path.resolve(), username=result.username, note=note)


def _web_login(wd: Workdir, login_url: str,
               ) -> tuple[str, Callable[[str], None] | None, str, requests.Session | None]:
    """Where the web server flow logs in, who plays the browser (the local org's page is filled in), a note, and
    the HTTP session trusting the local org (None: the default CAs).

    A local org is reached through its state folder, since a restarted one listens on another port than
    phase 4's record says; one this process had to start stops with it, and the note says so.
    """
    import functools

    from runbook.phases.webflow import follow_redirects
    from runbook.salesforce import connect, local_state_dir

    local = urlsplit(login_url).hostname in ("127.0.0.1", "localhost")
    if not (local and (local_state_dir(wd.root) / "org.sqlite3").is_file()):
        return without_userinfo(login_url).rstrip("/"), None, "", None
    session = connect("local", workdir=wd.root)
    note = ("Note: the local org was started for this export and stops with it; the URL names its port, so serve "
            "the org (runbook org serve) before exporting for the URL to stay usable") if session.local_org else ""
    return (session.login_url, functools.partial(follow_redirects, state_dir=session.local_state), note,
            session.http(retrying=False))


class PushError(RunbookError):
    """Setting the CI variables with gh or glab failed or could not start; names the command and the fix."""

    def __init__(self, command: str, problem: str, fix: str):
        self.command = command
        self.problem = problem
        self.fix = fix
        super().__init__(f"Could not set the CI variables with {command}: {problem}. Fix: {fix}")


def _option(flag: str, value: str) -> list[str]:
    return [flag, value] if value else []


def _gh_args(verb: str, name: str, *, repo: str, env: str, secret: bool) -> list[str]:
    """``gh secret set`` creates or replaces; GitHub masks every secret in logs, so ``secret`` changes nothing."""
    return ["secret", verb, name, *_option("--repo", repo), *_option("--env", env)]


def _glab_args(verb: str, name: str, *, repo: str, env: str, secret: bool) -> list[str]:
    """``glab variable set`` creates (``update`` replaces): protected, raw (no ``$`` expansion), the key masked."""
    return ["variable", verb, name, *_option("--repo", repo), *_option("--scope", env), "--protected", "--raw",
            *(["--masked"] if secret else [])]


@dataclass(frozen=True)
class CITool:
    """A CI's command-line tool: how to set one variable from stdin, and what to tell a user without it."""

    command: str
    title: str
    install: str
    stored_as: str
    args: Callable[..., list[str]]
    exists_marker: str = ""  # in its error when a create meets an existing variable: then update it instead


CI_TOOLS = {
    "github": CITool("gh", "GitHub CLI", "https://cli.github.com", "GitHub Actions secrets", _gh_args),
    "gitlab": CITool("glab", "GitLab CLI", "https://gitlab.com/gitlab-org/cli",
                     f"GitLab CI/CD variables (protected; {', '.join(sorted(_SECRET))} masked)", _glab_args,
                     exists_marker="has already been taken"),
}


@dataclass(frozen=True)
class Pushed:
    """Which variables were set in CI, and where; holds their names only, never their values."""

    command: str
    stored_as: str
    names: tuple[str, ...]
    repo: str = ""
    env: str = ""

    def __str__(self) -> str:
        where = f"repo {self.repo}" if self.repo else "the current repository"
        scope = f", environment {self.env}" if self.env else ""
        return (f"set {', '.join(self.names)} as {self.stored_as} with {self.command} ({where}{scope}); "
                "values went on stdin, none printed or written to a file")


def push_ci(workdir: str | Path, *, target: str, repo: str = "", env: str = "", username: str = "",
            instance_url: str = "", passphrase_env: str = "") -> Pushed:
    """Set the CI variables in GitHub or GitLab with ``gh``/``glab``, each value on stdin.

    The tool is checked (on PATH, logged in) before any value is sent; a failure names what was set so far.
    """
    tool = CI_TOOLS.get(target)
    if tool is None:
        raise InputError("push", target, f"use one of {', '.join(CI_TOOLS)}")
    variables = ci_variables(workdir, username=username, instance_url=instance_url, passphrase_env=passphrase_env)
    executable = _logged_in(tool)
    sent: list[str] = []
    for name, value in variables.items():
        _set_variable(executable, tool, name, value, repo=repo, env=env, sent=sent, hidden=list(variables.values()))
        sent.append(name)
    return Pushed(command=tool.command, stored_as=tool.stored_as, names=tuple(variables), repo=repo, env=env)


def _logged_in(tool: CITool) -> str:
    """The tool's path, once ``TOOL auth status`` says it is logged in."""
    executable = shutil.which(tool.command)
    if executable is None:
        raise PushError(tool.command, f"the `{tool.command}` command is not on PATH",
                        f"install the {tool.title} ({tool.install}), run `{tool.command} auth login`, then rerun")
    status = _run(executable, tool, ["auth", "status"], stdin="")
    if status.returncode != 0:
        raise PushError(tool.command, f"`{tool.command} auth status` says it is not logged in "
                                      f"(exit {status.returncode})",
                        f"run `{tool.command} auth login`, then rerun")
    return executable


def _set_variable(executable: str, tool: CITool, name: str, value: str, *, repo: str, env: str, sent: list[str],
                  hidden: list[str]) -> None:
    """One variable, its value on stdin; an existing GitLab variable is updated rather than created."""
    secret = name in _SECRET
    args = tool.args("set", name, repo=repo, env=env, secret=secret)
    answer = _run(executable, tool, args, stdin=value)
    if answer.returncode != 0 and tool.exists_marker and tool.exists_marker in answer.stderr:
        args = tool.args("update", name, repo=repo, env=env, secret=secret)
        answer = _run(executable, tool, args, stdin=value)
    if answer.returncode != 0:
        said = _last_line(answer.stderr or answer.stdout, hidden)
        raise PushError(tool.command, f"`{tool.command} {' '.join(args)}` failed (exit {answer.returncode}): {said}",
                        f"check the repository, environment and your access to them, then rerun (values are "
                        f"replaced); set so far: {', '.join(sent) or 'none'}")


def _run(executable: str, tool: CITool, args: list[str], *, stdin: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([executable, *args], input=stdin, capture_output=True, text=True,
                              timeout=PUSH_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PushError(tool.command, f"`{tool.command} {' '.join(args)}` did not finish ({type(exc).__name__})",
                        "check the network and that the command runs by hand, then rerun") from None


def _last_line(output: str, hidden: list[str]) -> str:
    """The tool's last line of output, with any value it echoed withheld: it goes into an error message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    line = lines[-1] if lines else "no message"
    for value in sorted(hidden, key=len, reverse=True):
        line = line.replace(value, "<hidden>") if value else line
    return line[:300]
