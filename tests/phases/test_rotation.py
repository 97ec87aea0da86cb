"""Certificate rotation as a cut-over for both app kinds: the new key is proven at once, and a failed proof puts
the old certificate and key back, so the old key still logs in. Against the local org over HTTPS."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import free_callback_port

from runbook.apps import kind_named
from runbook.fingerprints import pem_fingerprint
from runbook.localorg import ADMIN_USERNAME, Fault
from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.certificate import ensure_certificate
from runbook.phases.connected_app import build_spec, ensure_connected_app
from runbook.phases.jwt_bearer import jwt_login
from runbook.phases.rotation import RotationRolledBack
from runbook.phases.verify import verify_setup
from runbook.work.workdir import open_workdir


def _setup(session, workdir: Path, name: str, kind: str):
    cert = ensure_certificate(workdir=workdir)
    port = free_callback_port()

    def spec():
        return build_spec(app_name=name, contact_email="admin@example.com", callback_port=port, app_kind=kind,
                          workdir=workdir)

    _plan, app = ensure_connected_app(session, spec(), workdir=workdir)
    ensure_access(session, build_access_spec(app_name=name, workdir=workdir), workdir=workdir)
    verify_setup(session, workdir=workdir, propagation_timeout=0)  # a verified setup: what CI relies on
    return cert, app, spec


def _logs_in(org, app, key_path) -> bool:
    jwt_login(consumer_key=app.consumer_key, username=ADMIN_USERNAME, key_path=Path(key_path), login_url=org.url)
    return True


@pytest.mark.parametrize("kind", ["connected_app", "external_client_app"])
def test_a_rotation_is_proven_at_once_and_the_backup_is_kept(org, session, tmp_path, kind):
    name = f"Rotate_{kind.title().replace('_', '')}"
    old, app, spec = _setup(session, tmp_path, name, kind)

    new = ensure_certificate(workdir=tmp_path, rotate=True)
    _plan, rotated = ensure_connected_app(session, spec(), workdir=tmp_path)

    assert pem_fingerprint(kind_named(kind).read(session, name).certificate) == new.sha256_fingerprint
    assert rotated.consumer_key == app.consumer_key and _logs_in(org, rotated, new.key_path)
    assert any("CI must get the new key" in w and new.backup in w for w in rotated.warnings)
    assert (Path(new.backup) / "server.key").stat().st_mode & 0o777 == 0o600
    assert new.sha256_fingerprint != old.sha256_fingerprint


def test_a_rotation_before_any_verified_login_is_not_proven_or_undone(org, session, tmp_path):
    """Nothing worked with the old pair yet (phase 4 never ran), so there is nothing to keep working."""
    ensure_certificate(workdir=tmp_path)
    port = free_callback_port()
    spec = build_spec(app_name="Rotate_Early", contact_email="admin@example.com", callback_port=port,
                      workdir=tmp_path)
    ensure_connected_app(session, spec, workdir=tmp_path)
    new = ensure_certificate(workdir=tmp_path, rotate=True)
    spec = build_spec(app_name="Rotate_Early", contact_email="admin@example.com", callback_port=port,
                      workdir=tmp_path)

    _plan, rotated = ensure_connected_app(session, spec, workdir=tmp_path)

    assert rotated.certificate_fingerprint == new.sha256_fingerprint and rotated.warnings == []


@pytest.mark.parametrize("kind", ["connected_app", "external_client_app"])
def test_a_rotation_whose_login_fails_restores_the_old_certificate_and_the_old_key_still_logs_in(
        org, session, tmp_path, kind):
    name = f"Rollback_{kind.title().replace('_', '')}"
    old, app, spec = _setup(session, tmp_path, name, kind)
    old_key = Path(old.key_path).read_bytes()
    ensure_certificate(workdir=tmp_path, rotate=True)

    org.set_faults([Fault("server_error", match="/services/oauth2/token", times=0)])  # the proof cannot pass
    try:
        with pytest.raises(RotationRolledBack) as caught:
            ensure_connected_app(session, spec(), workdir=tmp_path)
    finally:
        org.set_faults(None)

    assert "the app has its old certificate again" in str(caught.value)
    assert pem_fingerprint(kind_named(kind).read(session, name).certificate) == old.sha256_fingerprint
    assert Path(old.key_path).read_bytes() == old_key and _logs_in(org, app, old.key_path)
    assert open_workdir(tmp_path).load("certificate")["sha256_fingerprint"] == old.sha256_fingerprint


def test_a_rotation_of_a_passphrase_protected_key_is_proven_with_the_passphrase(org, session, tmp_path, monkeypatch):
    """Phase 1 records the passphrase's variable NAME; the cut-over reads the new key with it."""
    monkeypatch.setenv("ROTATE_PASSPHRASE", "correct horse battery staple")
    ensure_certificate(workdir=tmp_path, passphrase_env="ROTATE_PASSPHRASE")
    port = free_callback_port()

    def spec():
        return build_spec(app_name="Rotate_Encrypted", contact_email="admin@example.com", callback_port=port,
                          workdir=tmp_path)

    ensure_connected_app(session, spec(), workdir=tmp_path)
    ensure_access(session, build_access_spec(app_name="Rotate_Encrypted", workdir=tmp_path), workdir=tmp_path)
    verify_setup(session, workdir=tmp_path, propagation_timeout=0, passphrase_env="ROTATE_PASSPHRASE")
    new = ensure_certificate(workdir=tmp_path, rotate=True, passphrase_env="ROTATE_PASSPHRASE")

    _plan, rotated = ensure_connected_app(session, spec(), workdir=tmp_path)

    assert rotated.certificate_fingerprint == new.sha256_fingerprint
    assert any("CI must get the new key" in w for w in rotated.warnings)
    assert "correct horse" not in (tmp_path / "phases" / "certificate.json").read_text()
