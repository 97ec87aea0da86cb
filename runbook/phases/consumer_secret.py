"""The web flow's consumer secret on this machine: made here, kept in a 0600 file, never shown.

The secret is written before the create that sends it, with a ``.pending`` marker beside it, because a
create whose answer is lost may still have happened: the org would then hold a secret that only this
file knows. The marker goes when the org's answer settles it: removed once the app is known to exist
(the create answered, or a rerun finds the app and adopts the secret), and the file with it when the org
refused the create. A rerun that finds the app but no secret says so, with how to rotate it.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from runbook.work.files import PRIVATE, write_atomic
from runbook.work.workdir import open_workdir

SUFFIX = ".consumer_secret"
PENDING = ".pending"


def new_consumer_secret() -> str:
    """64 random alphanumerics: Salesforce takes 8–256 of them [D ConnectedApp consumerSecret]."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(64))


def secret_file(workdir: str | Path, full_name: str) -> Path:
    """Where the consumer secret of app ``full_name`` is kept."""
    return open_workdir(workdir).root / "secrets" / f"{full_name}{SUFFIX}"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + PENDING)


@dataclass(frozen=True)
class PendingSecret:
    """A secret written for a create that has not been confirmed; ``value`` never leaves this process."""

    path: Path
    value: str


def pending_secret(workdir: str | Path, full_name: str) -> PendingSecret | None:
    """The secret an earlier create wrote and never confirmed (its answer was lost), if any."""
    path = secret_file(workdir, full_name)
    if not (_marker(path).is_file() and path.is_file()):
        return None
    value = path.read_text().strip()
    return PendingSecret(path, value) if value else None


def write_pending(workdir: str | Path, full_name: str) -> PendingSecret:
    """A new secret, written (file 0600, folder 0700) and marked pending before the create sends it."""
    path = secret_file(workdir, full_name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = new_consumer_secret()
    write_atomic(_marker(path), "the create that sends this secret has not answered yet\n", PRIVATE)
    write_atomic(path, value + "\n", PRIVATE)
    return PendingSecret(path, value)


def confirm(secret: PendingSecret) -> None:
    """The org holds the secret: the file is the real one now."""
    _marker(secret.path).unlink(missing_ok=True)


def discard(secret: PendingSecret) -> None:
    """The org refused the create, so it holds no such secret: remove the file and its marker."""
    secret.path.unlink(missing_ok=True)
    _marker(secret.path).unlink(missing_ok=True)


def unknown_secret_warning(path: Path, app_name: str) -> str:
    """What to tell a user whose app exists but whose secret this machine does not have."""
    return (f"the consumer secret of {app_name} is not known here (no {path}): a confidential client needs it. "
            "Read it in Setup > App Manager > View > Manage Consumer Details, or rotate it there (Generate "
            f"new consumer secret), then write it to {path} with mode 0600")
