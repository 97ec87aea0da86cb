"""The local org's state folder and CA under attack (issue 17, row 10): state files only its owner reads,
and a CA that vouches for 127.0.0.1 and localhost only."""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runbook.localorg import LocalOrg
from runbook.localorg.tls import TlsFiles, ensure_tls


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(ca_key, ca_cert: x509.Certificate, *names: x509.GeneralName) -> tuple[bytes, bytes]:
    """A server certificate for ``names`` signed by the CA: what someone holding the CA's key could make."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _handshake(tmp_path: Path, key_pem: bytes, cert_pem: bytes, ca_cert: Path, hostname: str) -> None:
    """A TLS handshake in memory, the client trusting only ``ca_cert`` as requests would; raises if refused."""
    (tmp_path / "leaf-key.pem").write_bytes(key_pem)
    (tmp_path / "leaf-cert.pem").write_bytes(cert_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "leaf-cert.pem", tmp_path / "leaf-key.pem")
    (tmp_path / "leaf-key.pem").unlink()
    client_context = ssl.create_default_context(cafile=str(ca_cert))
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client = client_context.wrap_bio(pipes[0], pipes[1], server_hostname=hostname)
    server = server_context.wrap_bio(pipes[2], pipes[3], server_side=True)
    done = {client: False, server: False}
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
        pipes[2].write(pipes[1].read())
        pipes[0].write(pipes[3].read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish in 10 rounds")


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[TlsFiles]:
    files = ensure_tls(tmp_path_factory.mktemp("tls"))
    yield files
    files.ca_key.unlink()
    files.server_key.unlink()


def _ca(files: TlsFiles):
    return (serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None),
            x509.load_pem_x509_certificate(files.ca_cert.read_bytes()))


def test_state_folder_and_files_are_private_even_in_an_existing_0755_folder(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    secret = ("org.sqlite3", "admin-credentials.json", "ca-key.pem", "server-key.pem")
    with LocalOrg(state):
        assert _mode(state) == 0o700
        assert {name: _mode(state / name) for name in secret} == dict.fromkeys(secret, 0o600)


def test_an_older_state_database_readable_by_others_is_made_private(tmp_path):
    state = tmp_path / "state"
    with LocalOrg(state):
        pass
    (state / "org.sqlite3").chmod(0o644)
    with LocalOrg(state):
        assert _mode(state / "org.sqlite3") == 0o600


def test_the_ca_vouches_for_the_local_org_but_not_for_another_host(tmp_path, tls):
    ca_key, ca_cert = _ca(tls)
    constraints = ca_cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    _handshake(tmp_path, tls.server_key.read_bytes(), tls.server_cert.read_bytes(), tls.ca_cert, "127.0.0.1")
    for hostname, name in (("login.salesforce.com", x509.DNSName("login.salesforce.com")),
                           ("10.0.0.1", x509.IPAddress(ipaddress.ip_address("10.0.0.1")))):
        key_pem, cert_pem = _issue(ca_key, ca_cert, name)
        with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
            _handshake(tmp_path, key_pem, cert_pem, tls.ca_cert, hostname)


def test_an_unconstrained_ca_of_an_older_state_folder_is_replaced_and_the_org_still_verifies(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runbook local org CA")])
    now = datetime.now(UTC)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
           .not_valid_after(now + timedelta(days=3650))
           .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    (state / "ca-key.pem").write_bytes(_key_pem(key))
    (state / "ca-cert.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    with LocalOrg(state) as org:
        _, ca_cert = _ca(TlsFiles.in_folder(state))
        assert ca_cert.serial_number != old.serial_number
        assert ca_cert.extensions.get_extension_for_class(x509.NameConstraints).critical
        assert requests.get(f"{org.url}/services/data", verify=org.ca_bundle, timeout=10).status_code == 200
