"""The variables CI needs to run `sf org login jwt`, written to a mode-0600 file, never printed.

Variables (names as the Salesforce CLI's CI guides use them)::

    SF_CONSUMER_KEY      the app's consumer key (phase 2)
    SF_USERNAME          the verified user (phase 4)
    SF_INSTANCE_URL      the login URL the JWT was verified against (``--instance-url``)
    SF_JWT_KEY_BASE64    the private key (phase 1), base64 of the PEM file, one line

Formats: ``env`` (shell-quoted ``NAME=value`` lines, for ``set -a; . file``), ``github`` (dotenv, for
``gh secret set --env-file FILE``), ``gitlab`` (a JSON list of CI/CD variables for the project variables
API, masked and protected). In CI: ``echo "$SF_JWT_KEY_BASE64" | base64 -d > server.key``.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from runbook.errors import InputError
from runbook.files import PRIVATE, write_atomic
from runbook.workdir import open_workdir

FORMATS = ("github", "gitlab", "env")
NAMES = ("SF_CONSUMER_KEY", "SF_USERNAME", "SF_INSTANCE_URL", "SF_JWT_KEY_BASE64")
_SECRET = {"SF_JWT_KEY_BASE64"}


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
    key = Path(verify.get("key_path") or cert["key_path"])
    return {"SF_CONSUMER_KEY": verify["consumer_key"], "SF_USERNAME": user,
            "SF_INSTANCE_URL": (instance_url or verify["login_url"]).rstrip("/"),
            "SF_JWT_KEY_BASE64": base64.b64encode(key.read_bytes()).decode()}


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
