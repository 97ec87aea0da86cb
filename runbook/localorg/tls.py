"""A private CA and a 127.0.0.1 server certificate, made once per state folder and reused.

simple-salesforce only speaks https, so the local org needs a certificate clients can verify. The
CA is kept across restarts so a trust bundle handed out earlier (REQUESTS_CA_BUNDLE, a notebook
kernel's environment, NODE_EXTRA_CA_CERTS) stays valid; the server certificate is renewed when it
nears expiry. ``ca-bundle.pem`` is certifi's CAs plus the local CA, so real Salesforce still verifies
with the same bundle.

The CA is name-constrained (critical) to 127.0.0.1 and localhost: a kernel or Lab that trusts it
trusts it for the local org only, so its key, if it leaked, could not sign a certificate for
login.salesforce.com or any other host. A state folder made before that has an unconstrained CA; it
is replaced at the next start (with a new server certificate and bundle), the one time a bundle
handed out earlier stops verifying until its reader reloads it.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runbook.work.files import PRIVATE, PUBLIC, write_atomic

_CA_DAYS = 3650
_SERVER_DAYS = 397
_RENEW_BEFORE = timedelta(days=14)
_LOCAL_NAMES = x509.NameConstraints(
    permitted_subtrees=[x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")), x509.DNSName("localhost")],
    excluded_subtrees=None)


@dataclass(frozen=True)
class TlsFiles:
    """Where the org's TLS material lives inside its state folder."""

    ca_key: Path
    ca_cert: Path
    server_key: Path
    server_cert: Path
    bundle: Path

    @classmethod
    def in_folder(cls, state_dir: Path) -> TlsFiles:
        return cls(state_dir / "ca-key.pem", state_dir / "ca-cert.pem", state_dir / "server-key.pem",
                   state_dir / "server-cert.pem", state_dir / "ca-bundle.pem")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "runbook local org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(files: TlsFiles) -> None:
    key = _new_key()
    now = datetime.now(UTC)
    name = _name("runbook local org CA")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(_LOCAL_NAMES, critical=True)
            .sign(key, hashes.SHA256()))
    write_atomic(files.ca_key, _key_pem(key), PRIVATE)
    write_atomic(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM), PUBLIC)


def _make_server_cert(files: TlsFiles) -> None:
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = _new_key()
    now = datetime.now(UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.DNSName("localhost")])
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=_SERVER_DAYS))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_atomic(files.server_key, _key_pem(key), PRIVATE)
    write_atomic(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), PUBLIC)


def _ca_usable(files: TlsFiles) -> bool:
    """Whether the state folder has a CA, constrained to the local names (older state folders' are not)."""
    if not (files.ca_key.is_file() and files.ca_cert.is_file()):
        return False
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.critical and constraints.value == _LOCAL_NAMES


def _server_cert_usable(files: TlsFiles) -> bool:
    if not (files.server_cert.is_file() and files.server_key.is_file()):
        return False
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return cert.not_valid_after_utc - datetime.now(UTC) > _RENEW_BEFORE


def ensure_tls(state_dir: Path) -> TlsFiles:
    """The CA (made on first use, or to replace an unconstrained one), a valid server certificate, a fresh bundle."""
    files = TlsFiles.in_folder(state_dir)
    if not _ca_usable(files):
        _make_ca(files)
    if not _server_cert_usable(files):
        _make_server_cert(files)
    write_atomic(files.bundle, Path(certifi.where()).read_text() + "\n" + files.ca_cert.read_text(), PUBLIC)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    return context
