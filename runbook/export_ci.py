"""The variables CI needs to run `sf org login jwt`, written to a mode-0600 file, never printed.

Variables (names as the Salesforce CLI's CI guides use them)::

    SF_CONSUMER_KEY      the app's consumer key (phase 2)
    SF_USERNAME          the verified user (phase 4)
    SF_INSTANCE_URL      the login URL the JWT was verified against (``--instance-url``)
    SF_JWT_KEY_BASE64    the private key (phase 1), base64 of the PEM file, one line

Formats: ``env`` (shell-quoted ``NAME=value`` lines, for ``set -a; . file``), ``github`` (dotenv, for
``gh secret set --env-file FILE``), ``gitlab`` (a JSON list of CI/CD variables for the project variables
API, masked and protected). In CI: ``echo "$SF_JWT_KEY_BASE64" | base64 -d > server.key``.

The key exported is the file the work folder's records name, so before a byte of it goes out it is
checked to be what phase 1 made: an unencrypted private key whose public key is the certificate's on
record, and that certificate the one the app trusts. A record pointing anywhere else (``/etc/hostname``,
someone's ``~/.ssh/id_rsa``) is refused, never exported.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from runbook.certificate import fingerprint, load_certificate, load_private_key
from runbook.errors import InputError
from runbook.files import PRIVATE, write_atomic
from runbook.workdir import Workdir, open_workdir

FORMATS = ("github", "gitlab", "env")
NAMES = ("SF_CONSUMER_KEY", "SF_USERNAME", "SF_INSTANCE_URL", "SF_JWT_KEY_BASE64")
_SECRET = {"SF_JWT_KEY_BASE64"}
MAX_KEY_BYTES = 64 * 1024  # an RSA 4096 key is 3.3 KB as PEM: a bigger file is not one
_RERUN = "rerun phase 1 (01_certificate) so the work folder's record names the key it made, then phase 4"


@dataclass(frozen=True)
class Export:
    """Where the variables went; holds their names only, never their values."""

    path: Path
    format: str
    names: tuple[str, ...]

    def __str__(self) -> str:
        return f"wrote {', '.join(self.names)} ({self.format}) to {self.path} (mode 0600)"


def ci_variables(workdir: str | Path, *, username: str = "", instance_url: str = "") -> dict[str, str]:
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
    key = _checked_key(wd, Path(verify.get("key_path") or cert["key_path"]), Path(cert["cert_path"]))
    return {"SF_CONSUMER_KEY": verify["consumer_key"], "SF_USERNAME": user,
            "SF_INSTANCE_URL": (instance_url or verify["login_url"]).rstrip("/"),
            "SF_JWT_KEY_BASE64": base64.b64encode(key).decode()}


def _checked_key(wd: Workdir, key_path: Path, cert_path: Path) -> bytes:
    """The key file's bytes, once they are an unencrypted private key for the certificate the app trusts."""
    data = _key_bytes(key_path)
    if b"ENCRYPTED" in data:
        raise InputError("key_path", str(key_path), "give phase 1 an unencrypted copy (openssl pkey -in KEY -out "
                         "ci.key; then key_path=ci.key), or keep the key out of CI",
                         problem="the key is encrypted, and sf org login jwt in CI reads only unencrypted keys")
    try:
        key = load_private_key(key_path)
    except InputError:
        raise InputError("key_path", str(key_path), _RERUN,
                         problem="the phase 1 record names this file as the private key, but it is not one") from None
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
    return data


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
              instance_url: str = "") -> Export:
    """Write the CI variables to ``output`` (default ``<workdir>/ci/sf-jwt.<fmt>``) with mode 0600."""
    if fmt not in FORMATS:
        raise InputError("format", fmt, f"use one of {', '.join(FORMATS)}")
    variables = ci_variables(workdir, username=username, instance_url=instance_url)
    suffix = {"env": "env", "github": "github.env", "gitlab": "gitlab.json"}[fmt]
    path = Path(output) if output else open_workdir(workdir).root / "ci" / f"sf-jwt.{suffix}"
    write_atomic(path, render(variables, fmt), PRIVATE)
    return Export(path=path.resolve(), format=fmt, names=tuple(variables))
