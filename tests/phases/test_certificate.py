"""Phase 1 through the package: generate, reuse, bring your own, rotate, and every bad input."""

from __future__ import annotations

import datetime as dt
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from runbook.errors import InputError
from runbook.phases.certificate import ensure_certificate
from runbook.scan import scan_paths


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _pair(tmp: Path, *, bits: int = 2048, days: int = 30, start_days: int = -1, name: str = "own"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=start_days))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    key_path, cert_path = tmp / f"{name}.key", tmp / f"{name}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_generated_key_is_private_and_certificate_public(tmp_path):
    info = ensure_certificate(workdir=tmp_path / "work", app_name="Runbook_CI")
    assert info.action == "generated"
    assert _mode(info.key_path) == 0o600
    assert _mode(info.cert_path) == 0o644
    assert info.key_size == 2048
    assert info.subject == "CN=Runbook_CI JWT"
    assert len(info.sha256_fingerprint.split(":")) == 32


def test_rerun_reuses_the_key_byte_for_byte(tmp_path):
    first = ensure_certificate(workdir=tmp_path)
    before = Path(first.key_path).read_bytes()
    second = ensure_certificate(workdir=tmp_path)
    assert second.action == "reused"
    assert Path(second.key_path).read_bytes() == before
    assert second.sha256_fingerprint == first.sha256_fingerprint


def test_rotation_keeps_a_backup_and_makes_a_new_key(tmp_path):
    first = ensure_certificate(workdir=tmp_path)
    old_key = Path(first.key_path).read_bytes()
    rotated = ensure_certificate(workdir=tmp_path, rotate=True)
    assert rotated.action == "rotated"
    assert Path(rotated.key_path).read_bytes() != old_key
    backup = Path(rotated.backup)
    assert (backup / "server.key").read_bytes() == old_key
    assert _mode(backup / "server.key") == 0o600
    assert rotated.sha256_fingerprint != first.sha256_fingerprint


def test_own_pair_is_adopted_without_rewriting_it(tmp_path):
    key_path, cert_path = _pair(tmp_path, days=200)
    before = key_path.read_bytes()
    info = ensure_certificate(workdir=tmp_path / "work", key_path=str(key_path), cert_path=str(cert_path))
    assert info.action == "own"
    assert key_path.read_bytes() == before
    assert info.warnings == []


def test_own_certificate_close_to_expiry_warns(tmp_path):
    key_path, cert_path = _pair(tmp_path, days=10)
    info = ensure_certificate(workdir=tmp_path / "w", key_path=str(key_path), cert_path=str(cert_path))
    assert any("expires in" in w for w in info.warnings)


def test_encrypted_key_uses_the_passphrase_from_the_named_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TEST_PASSPHRASE", "correct horse")
    info = ensure_certificate(workdir=tmp_path, passphrase_env="RUNBOOK_TEST_PASSPHRASE")
    assert b"ENCRYPTED PRIVATE KEY" in Path(info.key_path).read_bytes()
    assert ensure_certificate(workdir=tmp_path, passphrase_env="RUNBOOK_TEST_PASSPHRASE").action == "reused"
    monkeypatch.setenv("RUNBOOK_TEST_PASSPHRASE", "wrong")
    with pytest.raises(InputError, match="passphrase does not decrypt"):
        ensure_certificate(workdir=tmp_path, passphrase_env="RUNBOOK_TEST_PASSPHRASE")
    with pytest.raises(InputError, match="the key is encrypted"):
        ensure_certificate(workdir=tmp_path)


def _bad_inputs(tmp: Path) -> list[tuple[dict, str]]:
    small_key, small_cert = _pair(tmp, bits=1024, name="small")
    key_a, _ = _pair(tmp, name="a")
    _, cert_b = _pair(tmp, name="b")
    exp_key, exp_cert = _pair(tmp, days=-1, start_days=-10, name="expired")
    fut_key, fut_cert = _pair(tmp, days=50, start_days=5, name="future")
    garbage = tmp / "garbage.pem"
    label = "PRIVATE " + "KEY"  # split so the repository holds no private-key header
    garbage.write_text(f"-----BEGIN {label}-----\nnot base64\n-----END {label}-----\n")
    ec_key = tmp / "ec.key"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    own_cert = cert_b
    return [
        ({"key_path": str(tmp / "missing.key"), "cert_path": str(own_cert)}, "does not exist"),
        ({"key_path": str(tmp), "cert_path": str(own_cert)}, "not a folder"),
        ({"key_path": str(garbage), "cert_path": str(own_cert)}, "not a readable private key"),
        ({"key_path": str(small_key), "cert_path": str(small_cert)}, "at least 2048 bits"),
        ({"key_path": str(key_a), "cert_path": str(cert_b)}, "does not match the key"),
        ({"key_path": str(exp_key), "cert_path": str(exp_cert)}, "expired on"),
        ({"key_path": str(fut_key), "cert_path": str(fut_cert)}, "not valid until"),
        ({"key_path": str(cert_b), "cert_path": str(cert_b)}, "is a certificate, not a private key"),
        ({"key_path": str(key_a), "cert_path": str(key_a)}, "is a private key, not a certificate"),
        ({"key_path": str(ec_key), "cert_path": str(cert_b)}, "needs an RSA key"),
        ({"valid_days": 0}, "greater than 0"),
        ({"valid_days": -5}, "greater than 0"),
        ({"valid_days": 100000}, "at most 3650"),
        ({"key_size": 1024}, "2048, 3072, 4096"),
        ({"passphrase_env": "my secret!"}, "NAME of an environment variable"),
        ({"passphrase_env": "RUNBOOK_UNSET_VARIABLE"}, "export RUNBOOK_UNSET_VARIABLE"),
    ]


def test_bad_inputs_are_refused_and_nothing_is_written(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for params, message in _bad_inputs(inputs):
        workdir = tmp_path / "work"
        before = sorted(p.name for p in inputs.iterdir())
        with pytest.raises(InputError, match=message) as err:
            ensure_certificate(workdir=workdir, **params)
        field = next(iter(params))
        assert str(err.value).startswith(f"{err.value.field}=")
        assert err.value.field in (field, "passphrase_env", "cert_path", "key_path")
        assert not workdir.exists(), params
        assert sorted(p.name for p in inputs.iterdir()) == before


def test_unwritable_target_folder_is_refused(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the work folder should go")
    with pytest.raises(InputError, match="not writable"):
        ensure_certificate(workdir=blocker / "work")
    assert blocker.read_text() == "a file where the work folder should go"


def test_reused_key_readable_by_others_is_refused_with_the_chmod_fix(tmp_path):
    key = Path(ensure_certificate(workdir=tmp_path).key_path)
    key.chmod(0o644)
    with pytest.raises(InputError) as err:
        ensure_certificate(workdir=tmp_path)
    assert str(err.value) == (
        f"key_path='{key}' is not valid: the private key is readable by group or others (mode 0644). "
        f"Fix: chmod 600 {key} (as ssh requires of a private key); if others may have read it, also set "
        "rotate=True for a new pair")
    assert ensure_certificate(workdir=tmp_path, rotate=True).action == "rotated"  # the other way out
    assert _mode(key) == 0o600


def test_own_key_readable_by_group_is_refused(tmp_path):
    key_path, cert_path = _pair(tmp_path)
    key_path.chmod(0o640)
    with pytest.raises(InputError, match=r"readable by group or others \(mode 0640\)\. Fix: chmod 600 "):
        ensure_certificate(workdir=tmp_path / "work", key_path=str(key_path), cert_path=str(cert_path))


def test_world_writable_keys_folder_is_refused(tmp_path):
    keys = tmp_path / "work" / "keys"
    keys.mkdir(parents=True)
    keys.chmod(0o777)
    with pytest.raises(InputError) as err:
        ensure_certificate(workdir=tmp_path / "work")
    assert f"its folder {keys} is writable by everyone (mode 0777). Fix: chmod 700 {keys}" in str(err.value)
    assert list(keys.iterdir()) == []


def test_work_folder_keys_and_phases_are_0700_under_umask_000(tmp_path):
    previous = os.umask(0)
    try:
        info = ensure_certificate(workdir=tmp_path / "work")
    finally:
        os.umask(previous)
    work = tmp_path / "work"
    assert {name: _mode(work / name) for name in ("", "keys", "phases")} == {"": 0o700, "keys": 0o700,
                                                                             "phases": 0o700}
    assert (_mode(info.key_path), _mode(info.cert_path), _mode(work / "phases" / "certificate.json")) == (
        0o600, 0o644, 0o644)


_CRASH_BEFORE_LINK = """
import os, signal, sys
from runbook.phases.certificate import ensure_certificate
os.link = lambda *_: os.kill(os.getpid(), signal.SIGKILL)  # killed after the temp key is written, before the link
ensure_certificate(workdir=sys.argv[1])
"""


def test_temp_key_left_by_a_crash_is_seen_by_scan_and_removed_by_the_rerun(tmp_path):
    work = tmp_path / "work"
    crashed = subprocess.run([sys.executable, "-c", _CRASH_BEFORE_LINK, str(work)], timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    [leftover] = (work / "keys").glob(".server.key.*.tmp")
    findings = scan_paths([work])
    assert [(f.path, f.kind) for f in findings] == [(leftover, "private-key")]
    info = ensure_certificate(workdir=work)
    assert not leftover.exists()
    assert f"removed {leftover}: an interrupted run left this temp copy behind" in info.warnings
    assert sorted(p.name for p in (work / "keys").iterdir()) == ["server.crt", "server.key"]
    assert scan_paths([work]) == []
