"""Certificate rotation as a cut-over that can be undone, for every app kind.

An app (a connected app or an External Client App) trusts one certificate, so phase 1's rotation
(``rotate=True``: the old pair is backed up, a new one made) reaches the org in phase 2, which uploads
the new certificate and then, at once, proves it with a JWT login signed by the new key, as the user
phase 4 verified (only an app phase 4 verified with the old pair has a working setup to protect). If that login
fails, the old certificate goes back on the app and the old key back in place, so CI keeps working with
what it has; the error says why. If it succeeds, the backup stays (0600) until the user removes it, and
the hand-off says that CI needs the new key (``runbook export-ci``).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from runbook.apps import AppSpec, AppState, kind_named
from runbook.errors import LoginError, RunbookError
from runbook.fingerprints import fingerprint
from runbook.phases.certificate import certificate_pem, load_certificate, read_passphrase
from runbook.phases.jwt_bearer import PROPAGATION_TIMEOUT, jwt_login
from runbook.salesforce import OrgSession
from runbook.work.workdir import open_workdir

NEW_KEY_NOTE = ("the certificate was rotated: CI must get the new key (runbook export-ci writes it); the old "
                "pair stays in {backup} until you remove it")


class RotationRolledBack(RunbookError):
    """The new certificate did not log in, so the app and the key were put back as they were."""


def pending_rotation(workdir: str | Path, spec: AppSpec, current: AppState | None) -> Path | None:
    """The backup folder of the pair phase 1 just replaced, when this save puts its successor on an app that
    phase 4 verified with the old pair (a setup CI may rely on); None otherwise: nothing to protect."""
    wd = open_workdir(workdir)
    record, verified = wd.load("certificate") or {}, wd.load("verify") or {}
    backup = Path(record["backup"]) if record.get("action") == "rotated" and record.get("backup") else None
    if backup is None or current is None or not current.certificate or not spec.certificate:
        return None
    old = backup / Path(record["cert_path"]).name
    if not old.is_file() or certificate_pem(old) == spec.certificate:
        return None
    worked = verified.get("consumer_key") == current.consumer_key and \
        verified.get("certificate_fingerprint") == fingerprint(load_certificate(old))
    return backup if worked and verified.get("logins") else None


def cut_over(session: OrgSession, spec: AppSpec, after: AppState, *, workdir: str | Path, backup: Path,
             login_url: str = "", propagation_timeout: float = PROPAGATION_TIMEOUT) -> str:
    """Prove the new certificate with a JWT login as the user phase 4 verified; put the old pair back if it fails.

    Returns the note for the hand-off; raises RotationRolledBack (naming the login's error) after undoing.
    """
    wd = open_workdir(workdir)
    record, verified = wd.load("certificate") or {}, wd.load("verify") or {}
    key_path, cert_path = Path(record["key_path"]), Path(record["cert_path"])
    try:
        jwt_login(consumer_key=after.consumer_key, username=verified["logins"][0]["username"], key_path=key_path,
                  login_url=login_url or verified.get("login_url") or session.login_url,
                  passphrase=read_passphrase(record.get("passphrase_env") or ""),
                  propagation_timeout=propagation_timeout, http=session.http(retrying=False))
    except LoginError as refusal:
        _restore(session, spec, after, backup, key_path, cert_path, record, wd)
        raise RotationRolledBack(
            f"the new certificate did not log in ({refusal.error}: {refusal.description}), so the app has its old "
            f"certificate again and {key_path} is the old key again: CI keeps working. The new pair was not kept. "
            "Fix: check the app and the user (phase 3), then rotate again (phase 1 rotate=True)") from None
    return NEW_KEY_NOTE.format(backup=backup)


def _restore(session: OrgSession, spec: AppSpec, after: AppState, backup: Path, key_path: Path,
             cert_path: Path, record: dict, wd) -> None:
    """The old certificate back on the app, the old pair back in its files, phase 1's record as before."""
    old_cert = backup / cert_path.name
    kind_named(spec.app_kind).save(session, replace(spec, certificate=certificate_pem(old_cert)), after, None)
    shutil.copy2(backup / key_path.name, key_path)
    shutil.copy2(old_cert, cert_path)
    restored = load_certificate(cert_path)
    wd.save("certificate", {**record, "action": "reused", "backup": None, "sha256_fingerprint": fingerprint(restored),
                            "not_after": restored.not_valid_after_utc.isoformat(timespec="seconds")})
