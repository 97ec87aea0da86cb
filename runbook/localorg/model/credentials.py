"""The secrets a local org makes: passwords, access tokens, consumer keys and secrets, signatures.

Passwords are kept as scrypt hashes and access tokens as SHA-256 digests, so the SQLite file alone
never lets anyone log in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

_KEY_CHARS = string.ascii_letters + string.digits + "._"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def new_password() -> str:
    """A random password with the character classes a Salesforce password policy asks for."""
    return secrets.token_urlsafe(18) + "aA1"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches the stored hash; False for users without a password."""
    if not stored or stored.count("$") != 2:
        return False
    _, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    return hmac.compare_digest(candidate.hex(), digest)


def new_access_token(org_id: str) -> str:
    """``<orgId15>!<86 url-safe characters>``, the shape of a Salesforce session id."""
    return f"{org_id[:15]}!{secrets.token_urlsafe(64)}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_consumer_key() -> str:
    """``3MVG9`` + 80 characters of [A-Za-z0-9._], like the keys Salesforce generates."""
    return "3MVG9" + "".join(secrets.choice(_KEY_CHARS) for _ in range(80))


def new_consumer_secret() -> str:
    return secrets.token_hex(32).upper()


def new_org_secret() -> str:
    return secrets.token_hex(32)


def sign(org_secret: str, *parts: str) -> str:
    """Base64 HMAC-SHA256 of the concatenated parts: the token response's ``signature``."""
    mac = hmac.new(bytes.fromhex(org_secret), "".join(parts).encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()
