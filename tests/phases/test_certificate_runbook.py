"""Phase 1 through papermill against the local org: generated, your own pair, and a rotation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from runbook.errors import LoginError
from runbook.localorg import ADMIN_USERNAME
from runbook.phases.jwt_bearer import jwt_login
from runbook.run.batch import run_runbook
from runbook.salesforce import start_local_org


def _quiet(_message: str) -> None:
    pass


def _record(workdir: Path, phase: str) -> dict:
    return json.loads((workdir / "phases" / f"{phase}.json").read_text())


def _ca_signed_pair(folder: Path) -> tuple[Path, Path]:
    """A key and a certificate issued by a (throwaway) CA, as a company PKI would hand out, in DER."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp Issuing CA")])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ci.example.com")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=90))
            .sign(ca_key, hashes.SHA256()))
    key_path, cert_path = folder / "ci.key", folder / "ci.der"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return key_path, cert_path


def test_own_ca_signed_der_certificate_ends_in_a_jwt_login(tmp_path):
    key_path, cert_path = _ca_signed_pair(tmp_path)
    summary = run_runbook(workdir=tmp_path / "work", runs_dir=tmp_path / "runs", progress=_quiet,
                          params={"key_path": str(key_path), "cert_path": str(cert_path)})
    assert summary.ok, summary.lines()
    cert = _record(tmp_path / "work", "certificate")
    assert cert["action"] == "own"
    assert cert["self_signed"] is False
    assert _record(tmp_path / "work", "verify")["logins"][0]["username"] == ADMIN_USERNAME


def test_rotation_uploads_the_new_certificate_and_retires_the_old_key(tmp_path):
    work = tmp_path / "work"
    first = run_runbook(workdir=work, runs_dir=tmp_path / "runs", progress=_quiet)
    assert first.ok, first.lines()
    old_key = Path(_record(work, "certificate")["key_path"]).read_bytes()
    consumer_key = _record(work, "connected_app")["consumer_key"]

    rotated = run_runbook(workdir=work, runs_dir=tmp_path / "runs", progress=_quiet, params={"rotate": True})

    assert rotated.ok, rotated.lines()
    cert = _record(work, "certificate")
    assert cert["action"] == "rotated"
    backup = Path(cert["backup"]) / "server.key"
    assert backup.read_bytes() == old_key
    app = _record(work, "connected_app")
    assert app["action"] == "update"
    assert app["consumer_key"] == consumer_key
    assert app["certificate_fingerprint"] == cert["sha256_fingerprint"]
    assert _record(work, "verify")["logins"][0]["username"] == ADMIN_USERNAME
    org = start_local_org(work / "localorg")
    with pytest.raises(LoginError, match="invalid assertion"):
        jwt_login(consumer_key=consumer_key, username=ADMIN_USERNAME, key_path=backup, login_url=org.url)
