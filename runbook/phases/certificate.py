"""Phase 1: the key pair and X.509 certificate the connected app trusts for JWT logins.

Three real cases: generate a self-signed pair (the default), reuse the pair already in the work
folder (a rerun must never replace a key), or bring your own (a CA-signed certificate, PEM or
DER). Replacing a key is only ever an explicit rotation, which keeps the old pair as a backup.
Everything is validated before the first byte is written.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from runbook.errors import InputError
from runbook.fingerprints import fingerprint
from runbook.work.files import PRIVATE, PUBLIC, make_private_dir, remove_stale_temps, write_atomic, write_new_atomic
from runbook.work.workdir import open_workdir

KEY_SIZES = (2048, 3072, 4096)
MIN_KEY_SIZE = 2048  # Salesforce refuses smaller RSA keys
MAX_VALID_DAYS = 3650
EXPIRY_WARNING_DAYS = 30


# what phase 1 did: made a pair, kept the work folder's, took the user's own, rotated, or certified an existing key
CertificateAction = Literal["generated", "reused", "own", "rotated", "generated certificate for existing key"]


@dataclass
class CertificateInfo:
    """What the user has after phase 1: paths and the facts an admin checks on a certificate."""

    key_path: str
    cert_path: str
    action: CertificateAction
    subject: str
    serial: str
    not_before: str
    not_after: str
    key_size: int
    sha256_fingerprint: str
    self_signed: bool
    backup: str | None = None
    warnings: list[str] = field(default_factory=list)
    passphrase_env: str = ""  # the NAME of the variable holding the key's passphrase (never the value)

    def as_dict(self) -> dict:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The table shown in the notebook and the batch summary."""
        rows = [
            ("Action", self.action),
            ("Private key", self.key_path),
            ("Certificate", self.cert_path),
            ("Subject", self.subject),
            ("Serial", self.serial),
            ("Valid from", self.not_before),
            ("Valid until", self.not_after),
            ("Key size", f"RSA {self.key_size}"),
            ("SHA-256 fingerprint", self.sha256_fingerprint),
        ]
        if self.backup:
            rows.append(("Backup of the old pair", self.backup))
        rows.extend(("Warning", w) for w in self.warnings)
        return rows

    def _repr_html_(self) -> str:
        from html import escape

        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in self.rows())
        return f"<table>{body}</table>"

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in self.rows())


@dataclass(frozen=True)
class CertificateRequest:
    """The validated parameters of phase 1."""

    key_path: Path
    cert_path: Path
    key_size: int
    valid_days: int
    common_name: str
    passphrase: bytes | None
    rotate: bool


def plan_certificate_request(
    *,
    workdir: str | Path,
    key_path: str = "",
    cert_path: str = "",
    key_size: int = 2048,
    valid_days: int = 365,
    common_name: str = "",
    app_name: str = "",
    passphrase_env: str = "",
    rotate: bool = False,
) -> CertificateRequest:
    """Validate phase 1's parameters into a request; raises InputError before anything is written."""
    wd = open_workdir(workdir)
    key = Path(key_path).expanduser() if key_path else wd.keys / "server.key"
    cert = Path(cert_path).expanduser() if cert_path else wd.keys / "server.crt"
    if key_size not in KEY_SIZES:
        raise InputError("key_size", key_size, f"use one of {', '.join(map(str, KEY_SIZES))} (RSA bits)")
    if not isinstance(valid_days, int) or isinstance(valid_days, bool) or valid_days <= 0:
        raise InputError("valid_days", valid_days, "give a whole number of days greater than 0, e.g. 365")
    if valid_days > MAX_VALID_DAYS:
        raise InputError("valid_days", valid_days, f"use at most {MAX_VALID_DAYS} days (10 years); "
                         "rotate the certificate instead of making it live forever")
    for name, given, path in (("key_path", key_path, key), ("cert_path", cert_path, cert)):
        if path.is_dir():
            raise InputError(name, str(path), "give the path of a file, not a folder")
        if given and not path.exists():
            raise InputError(name, str(path), "the file does not exist: check the path, or leave it empty "
                             "to generate a pair in the work folder")
    if bool(key_path) != bool(cert_path) and not (key.exists() and cert.exists()):
        raise InputError("cert_path" if key_path else "key_path", cert_path or key_path,
                         "bring your own pair with both key_path and cert_path, or leave both empty")
    for name, path in (("key_path", key), ("cert_path", cert)):
        _check_folder_not_world_writable(path, name)
    passphrase = read_passphrase(passphrase_env)
    cn = common_name or (f"{app_name} JWT" if app_name else "Salesforce JWT runbook")
    if len(cn) > 64:
        raise InputError("common_name", cn, "use at most 64 characters (X.509 CN limit)")
    return CertificateRequest(key, cert, key_size, valid_days, cn, passphrase, bool(rotate))


def _check_key_file_private(path: Path) -> None:
    """Refuse a private key group or others can read, as ssh does: whoever read it can log in as the app.

    Not on rotation: a new pair is the way out for a key others may have read.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError("key_path", str(path), f"chmod 600 {path} (as ssh requires of a private key); if others "
                         "may have read it, also set rotate=True for a new pair",
                         problem=f"the private key is readable by group or others (mode {mode:04o})")


def _nearest_folder(path: Path) -> Path:
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    return folder


def _check_folder_not_world_writable(path: Path, name: str) -> None:
    """Refuse a key or certificate folder anyone can write to: anyone could swap the pair in it.

    A sticky folder such as /tmp is accepted: there only a file's owner may rename or delete it.
    """
    folder = _nearest_folder(path)
    mode = folder.stat().st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise InputError(name, str(path), f"chmod 700 {folder}, or keep the pair in a folder only you can write",
                         problem=f"its folder {folder} is writable by everyone (mode {stat.S_IMODE(mode):04o})")


def read_passphrase(passphrase_env: str) -> bytes | None:
    """The key passphrase from the environment variable *named* by the parameter, never the value."""
    if not passphrase_env:
        return None
    if not passphrase_env.replace("_", "").isalnum():
        raise InputError("passphrase_env", passphrase_env,
                         "give the NAME of an environment variable (e.g. RUNBOOK_KEY_PASSPHRASE), not the passphrase")
    value = os.environ.get(passphrase_env)
    if not value:
        raise InputError("passphrase_env", passphrase_env,
                         f"export {passphrase_env}=<passphrase> before running, or leave passphrase_env empty")
    return value.encode()


def ensure_certificate(**params) -> CertificateInfo:
    """Phase 1: reuse, adopt, generate or rotate the key pair, and record it in the work folder."""
    workdir = params.get("workdir", "work")
    req = plan_certificate_request(**params)
    leftovers = [*remove_stale_temps(req.key_path), *remove_stale_temps(req.cert_path)]
    key_exists, cert_exists = req.key_path.exists(), req.cert_path.exists()
    if req.rotate:
        info = _rotate(req)
    elif key_exists and cert_exists:
        key, cert = load_pair(req)
        _check_key_file_private(req.key_path)
        info = _describe(req, key, cert, action=_reuse_action(req, workdir))
    elif key_exists:
        key = load_private_key(req.key_path, req.passphrase)
        _check_key(key)
        _check_key_file_private(req.key_path)
        cert = _self_signed(key, req)
        write_new_atomic(req.cert_path, cert.public_bytes(serialization.Encoding.PEM), PUBLIC)
        info = _describe(req, key, cert, action="generated certificate for existing key")
    elif cert_exists:
        raise InputError("key_path", str(req.key_path), f"the certificate {req.cert_path} exists but its "
                         "private key does not: give key_path of the matching key, or remove cert_path")
    else:
        info = _generate(req, action="generated")
    info.warnings += [f"removed {path}: an interrupted run left this temp copy behind" for path in leftovers]
    info.passphrase_env = str(params.get("passphrase_env") or "")
    open_workdir(workdir).save("certificate", info.as_dict())
    return info


def _reuse_action(req: CertificateRequest, workdir: str | Path) -> CertificateAction:
    inside = req.key_path.resolve().is_relative_to(open_workdir(workdir).root)
    return "reused" if inside else "own"


def _generate(req: CertificateRequest, action: CertificateAction) -> CertificateInfo:
    _check_writable(req.key_path, "key_path")
    _check_writable(req.cert_path, "cert_path")
    key = rsa.generate_private_key(public_exponent=65537, key_size=req.key_size)
    cert = _self_signed(key, req)
    write_new_atomic(req.key_path, _key_pem(key, req.passphrase), PRIVATE)
    write_atomic(req.cert_path, cert.public_bytes(serialization.Encoding.PEM), PUBLIC)
    return _describe(req, key, cert, action=action)


def _rotate(req: CertificateRequest) -> CertificateInfo:
    """Move the old pair to a timestamped backup folder, then generate a new pair in its place."""
    backup = None
    if req.key_path.exists() or req.cert_path.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        backup_dir = make_private_dir(req.key_path.parent / "backup" / stamp, exist_ok=False)
        for path in (req.key_path, req.cert_path):
            if path.exists():
                shutil.copy2(path, backup_dir / path.name)
        req.key_path.unlink(missing_ok=True)
        backup = str(backup_dir)
    info = _generate(req, action="rotated")
    info.backup = backup
    return info


def _check_writable(path: Path, name: str) -> None:
    folder = _nearest_folder(path)
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(name, str(path), f"the folder {folder} is not writable: choose a writable folder "
                         "or fix its permissions")


def _self_signed(key: rsa.RSAPrivateKey, req: CertificateRequest) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, req.common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=req.valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _key_pem(key: rsa.RSAPrivateKey, passphrase: bytes | None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _read(path: Path, name: str) -> bytes:
    if not path.exists():
        raise InputError(name, str(path), "the file does not exist: check the path")
    if path.is_dir():
        raise InputError(name, str(path), "give the path of a file, not a folder")
    try:
        return path.read_bytes()
    except PermissionError:
        raise InputError(name, str(path), "the file is not readable: fix its permissions") from None


def load_private_key(path: Path, passphrase: bytes | None = None) -> rsa.RSAPrivateKey:
    """Load an RSA private key (PEM or DER), naming the mistake when the file is something else."""
    data = _read(path, "key_path")
    if b"BEGIN CERTIFICATE" in data:
        raise InputError("key_path", str(path), "this file is a certificate, not a private key: "
                         "swap key_path and cert_path")
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    try:
        key = loader(data, password=passphrase)
    except TypeError as exc:
        if passphrase is None:
            raise InputError("passphrase_env", "", "the key is encrypted: set passphrase_env to the name of "
                             "an environment variable holding its passphrase") from None
        raise InputError("passphrase_env", "", "the key is not encrypted: leave passphrase_env empty") from exc
    except ValueError:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise InputError("passphrase_env", "", "the passphrase does not decrypt this key: check the "
                             "environment variable's value") from None
        raise InputError("key_path", str(path), "not a readable private key (PEM or DER): regenerate it "
                         "or point key_path at the right file") from None
    except UnsupportedAlgorithm:
        raise InputError("key_path", str(path), "unsupported key type: use an RSA key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError("key_path", str(path), "Salesforce JWT needs an RSA key (RS256): generate an RSA key")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """Load an X.509 certificate (PEM or DER), naming a private key pasted in its place."""
    data = _read(path, "cert_path")
    if b"PRIVATE KEY" in data:
        raise InputError("cert_path", str(path), "this file is a private key, not a certificate: "
                         "swap key_path and cert_path")
    try:
        if b"-----BEGIN CERTIFICATE" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InputError("cert_path", str(path), "not a readable X.509 certificate (PEM or DER): "
                         "export the certificate again") from None


def _check_key(key: rsa.RSAPrivateKey) -> None:
    if key.key_size < MIN_KEY_SIZE:
        raise InputError("key_path", f"RSA {key.key_size}", f"Salesforce needs RSA keys of at least "
                         f"{MIN_KEY_SIZE} bits: generate a new pair (leave key_path empty)")


def load_pair(req: CertificateRequest) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """Load and check a key + certificate pair: matching, big enough, currently valid."""
    key = load_private_key(req.key_path, req.passphrase)
    cert = load_certificate(req.cert_path)
    _check_key(key)
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise InputError("cert_path", str(req.cert_path), f"this certificate does not match the key "
                         f"{req.key_path}: give the certificate issued for that key, or rotate=True")
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc < now:
        raise InputError("cert_path", str(req.cert_path),
                         f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
                         "set rotate=True for a new pair, or bring a renewed certificate")
    if cert.not_valid_before_utc > now + dt.timedelta(minutes=5):
        raise InputError("cert_path", str(req.cert_path),
                         f"the certificate is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: "
                         "check the machine's clock or the certificate's dates")
    return key, cert


def certificate_pem(cert_path: Path) -> str:
    """The certificate as PEM text for upload (DER input is converted)."""
    return load_certificate(Path(cert_path)).public_bytes(serialization.Encoding.PEM).decode()


def _describe(req: CertificateRequest, key: rsa.RSAPrivateKey, cert: x509.Certificate,
              action: CertificateAction) -> CertificateInfo:
    warnings = []
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        warnings.append(f"the certificate expires in {left.days} days: plan a rotation (rotate=True)")
    return CertificateInfo(
        key_path=str(req.key_path),
        cert_path=str(req.cert_path),
        action=action,
        subject=cert.subject.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.isoformat(timespec="seconds"),
        not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"),
        key_size=key.key_size,
        sha256_fingerprint=fingerprint(cert),
        self_signed=cert.issuer == cert.subject,
        warnings=warnings,
    )
