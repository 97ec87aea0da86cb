"""Salesforce-style record ids: 15 case-sensitive characters, or 18 with a case-checksum suffix.

An id is a 3-character key prefix naming the sObject type, 2 characters of pod, a reserved ``0`` and
a 9-character base-62 number. The 18-character form adds 3 characters that encode which of the first
15 are upper case, so the id survives case-insensitive systems; Salesforce accepts both forms on
input and answers with the 18-character one, and so does the local org.
"""

from __future__ import annotations

import secrets
import string

KEY_PREFIXES: dict[str, str] = {
    "Organization": "00D",
    "User": "005",
    "Profile": "00e",
    "PermissionSet": "0PS",
    "PermissionSetAssignment": "0Pa",
    "SetupEntityAccess": "0J0",
    "ConnectedApplication": "0H4",
    # 0xI: seen in a real org's Setup URL (…/ManageExternalClientApplication/0xIfj…), not documented.
    "ExternalClientApplication": "0xI",
    # 888: an External Client App's OAuth consumer, as Setup Audit Trail ("with a consumer ID of 888…") and
    # a retrieved ``oauthLink`` ("<orgId>:888…") show it [O]; no sObject, only Connect REST names it.
    "OauthConsumer": "888",
    "ScratchOrgInfo": "2SR",
    # [U] ActiveScratchOrg's prefix is in no source (the CLI only uses the Id it queried); 110 is the one
    # ObjectPermissions ids carry in public query output [U].
    "ActiveScratchOrg": "2AS",
    "ObjectPermissions": "110",
    "SandboxProcess": "0GR",
    "SourceMember": "0MZ",  # [U]
    "DeployRequest": "0Af",
}
SOBJECT_BY_PREFIX = {prefix: name for name, prefix in KEY_PREFIXES.items()}

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_CHARS = string.ascii_uppercase + "012345"
_POD = "LC"  # "local": a real org has its instance's two characters here


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError(f"id number {number} does not fit in {width} base-62 characters")
    return text.rjust(width, "0")


def _checksum(id15: str) -> str:
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, char in enumerate(id15[start:start + 5]) if char.isupper())
        suffix += _CHECKSUM_CHARS[bits]
    return suffix


def to_18(id15: str) -> str:
    """The 18-character form of a 15-character id."""
    return id15 + _checksum(id15)


def make_id(sobject: str, number: int) -> str:
    """The 18-character id of record ``number`` of ``sobject`` in this org."""
    return to_18(KEY_PREFIXES[sobject] + _POD + "0" + _base62(number, 9))


def random_org_id() -> str:
    """A fresh 18-character organization id, random so two local orgs never share one."""
    number = "".join(secrets.choice(_BASE62) for _ in range(9))
    return to_18(KEY_PREFIXES["Organization"] + _POD + "0" + number)


def normalize(value: object) -> str | None:
    """The canonical 18-character id for a 15- or 18-character id (any case for 18), else None."""
    if not isinstance(value, str) or len(value) not in (15, 18) or not value.isalnum() or not value.isascii():
        return None
    if len(value) == 15:
        return to_18(value)
    suffix = value[15:].upper()
    if any(char not in _CHECKSUM_CHARS for char in suffix):
        return None
    chars = list(value[:15])
    for block, code in enumerate(suffix):
        bits = _CHECKSUM_CHARS.index(code)
        for i in range(5):
            pos = block * 5 + i
            chars[pos] = chars[pos].upper() if bits & (1 << i) else chars[pos].lower()
    id15 = "".join(chars)
    return id15 + _checksum(id15) if _checksum(id15) == suffix else None


def sobject_of(record_id: str) -> str | None:
    """The sObject type an id belongs to, from its key prefix."""
    return SOBJECT_BY_PREFIX.get(record_id[:3])
