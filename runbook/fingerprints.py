"""Fingerprints, in the one format the runbook shows and compares them in: SHA-256 as colon-separated upper-case
hex, as Setup and openssl show a certificate's. Used by every layer that compares a key or a certificate (phase 1,
the app kinds, phase 4, the overview, the CI export), so it sits below them all."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def sha256_fingerprint(der: bytes) -> str:
    """SHA-256 of ``der`` as colon-separated upper-case hex, as Setup and openssl show fingerprints: the one
    format every fingerprint the runbook shows or compares is written in."""
    return hashlib.sha256(der).digest().hex(":").upper()


def fingerprint(cert: x509.Certificate) -> str:
    """A certificate's SHA-256 fingerprint (of its DER), as Setup shows it."""
    return sha256_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def public_key_fingerprint(public_key) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo: the same for a key and the certificate made from it."""
    return sha256_fingerprint(public_key.public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))


def pem_fingerprint(pem: str | None) -> str:
    """The SHA-256 fingerprint of a PEM certificate as an org holds it (header lines optional); "" for none."""
    if not pem:
        return ""
    text = pem if "BEGIN CERTIFICATE" in pem else f"-----BEGIN CERTIFICATE-----\n{pem}\n-----END CERTIFICATE-----\n"
    try:
        return fingerprint(x509.load_pem_x509_certificate(text.encode()))
    except ValueError:
        return ""
