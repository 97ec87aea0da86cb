"""Secrets in a text: each detector of ``runbook.scan``'s table, and the rules that keep what the runbook shows on
purpose (consumer keys, fingerprints, placeholders, code) from being reported."""

from __future__ import annotations

import ast
import base64
import html
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Folders that are tools, not outputs: walking them would scan other projects' test fixtures.
# Files whose job is to hold a secret (mode 0600); they are read for known secrets, not scanned, when walking.
# Mime types that cannot carry readable text; scanning megabytes of PNG base64 finds nothing.
MIN_SECRET_LENGTH = 8  # a shorter "known secret" ("admin", "true") would match ordinary text everywhere
MIN_VALUE_LENGTH = 6  # a secret-named field with a shorter literal is a flag or an example, not a credential

_SECRET_WORD = r"(?:password|passwd|passphrase|secret|token|credential|private_?key|secret_?key|api_?key|" \
               r"access_?key|session_?id|(?:^|_)sid)s?"
# words saying how a value is encoded: the only words that may follow the secret word in a name
_ENCODINGS = ("value", "plain", "plaintext", "text", "raw", "str", "string", "pem", "der", "bytes", "b64", "base64",
              "hex")
# The secret word must be what the name IS (its last word): ``passphrase_env``, ``key_path``, ``token_file``
# and ``refresh_token_policy`` name a variable, a path, a file or a setting about a secret, not the secret.
# Only a word saying how the value is encoded may follow (``private_key_pem``).
_SECRET_NAME = re.compile(_SECRET_WORD + rf"(?:_(?:{'|'.join(_ENCODINGS)}))?$")
# An environment variable named ``…_KEY`` holds a key (``SF_JWT_KEY``, ``STRIPE_KEY``), unless the key is public:
# Salesforce shows the consumer key in App Manager. Lower-case ``sort_key``/``cache_key`` in logs are not keys.
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_PUBLIC_KEY_WORDS = {"consumer", "public", "publishable"}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# the whole block, so that its body lines are one finding, not one more per line
_PEM_PRIVATE = re.compile(r"(?P<header>-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----)"
                          r"(?:[\s\S]*?-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----)?")
# The base64 DER of a private key opens with its version INTEGER: RSA PKCS#8 ("…IBADAN") and PKCS#1 ("…IBAAKC"),
# EC PKCS#8 ("MIG…AgEAMB") and SEC1 P-256/P-384. A certificate or public key opens with a SEQUENCE instead
# ("MIID…CCA", "MIIBIjAN"), so public certificates and their base64 do not match.
_DER_PRIVATE = re.compile(r"(?<![A-Za-z0-9+/])(?:MII[A-Za-z0-9+/]{2}[AQgw]IB(?:ADAN|AAKC)|MIG[A-Za-z0-9+/]AgEAMB|"
                          r"MHcCAQEE|MIGkAgEBBD)[A-Za-z0-9+/]{40,}")
_ACCESS_TOKEN = re.compile(r"(?<![A-Za-z0-9])00D[A-Za-z0-9]{12}![A-Za-z0-9._-]{40,}")
_REFRESH_TOKEN = re.compile(r"(?<![A-Za-z0-9+/._-])5Aep861[A-Za-z0-9._-]{40,}")
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
_AUTH_HEADER = re.compile(r"authorization\\?[\"']?\s*[:=]\s*\\?[\"']?\s*(?:bearer|oauth)\s+"
                          r"(?P<value>[^\s\"'\\<>,;)\]}]+)", re.I)
_XML_FIELD = re.compile(r"<(?:[\w.-]+:)?(?P<name>[A-Za-z_][\w.-]*)(?:\s[^<>]*)?>(?P<value>[^<>]+)</")
_QUOTED_FIELD = re.compile(r"(?P<q1>\\?[\"']?)(?<![\w.-])(?P<name>[A-Za-z_][\w.-]*)(?P=q1)\s*(?::|=>?)\s*"
                           r"\\?(?P<q>[\"'])(?P<value>[^\"'\\\n]*)(?=\\?(?P=q))")
_QUERY_FIELD = re.compile(r"[?&#;](?P<name>[A-Za-z_][\w.-]*)=(?P<value>[^&#\s\"'<>]+)")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<value>.*?)\s*$", re.M)
# NAME=value as a shell, an env dump or a log line prints it: no space around "=", the value up to a delimiter
_ASSIGNMENT = re.compile(r"(?<![\w.$-])(?P<name>[A-Za-z_][\w.-]*)=[\"']?(?P<value>[^\s\"'<>,;&|)\]}]+)")
# a value that reads as code, not as a literal: a lower-case (dotted) name, a call or a subscript
# (``session_id``, ``self.token``, ``bool(secret``, ``creds[``), as a traceback's source lines show them
_CODE_VALUE = re.compile(r"[a-z_][a-z_.]*|[A-Za-z_][\w.]*[(\[].*")
_URL_CREDENTIALS = re.compile(r"(?<![\w+.-])(?P<scheme>[A-Za-z][\w+.-]*)://(?P<user>[^\s/?#@:\"'<>]*):"
                              r"(?P<password>[^\s/?#@\"'<>]+)@(?P<host>[\w.-]+|\[[0-9A-Fa-f:.]+\])")
# "-----" is "LS0t" in base64 at whatever offset it stands; decoded from there, a PEM header reads "BEGIN …"
_PEM_IN_BASE64 = "LS0t"
_BASE64_CHARS = frozenset(string.ascii_letters + string.digits + "+/")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]+(?:[ \t]*\r?\n[ \t]*[A-Za-z0-9+/]+)*")
_DECODED_PEM_HEADER = re.compile(rb"BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----")
_HEADER_CHARS = 64  # base64 characters enough to hold "--BEGIN ENCRYPTED PRIVATE KEY-----"

_PLACEHOLDER_WORDS = {"none", "null", "true", "false", "nil", "undefined", "redacted", "hidden", "secret",
                      "password", "changeme", "example", "placeholder", "token", "xxxxxx"}
_PLACEHOLDER = re.compile(r"^(?:[*xX.•…_ -]+|<[^<>]*>|\$\{?\w+\}?|\{[^{}]*\}(?:\{[^{}]*\})*|%[sr]|%\(\w+\)[sr]|"
                          r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)$")


@dataclass(frozen=True)
class Finding:
    """One secret found: where it is and what kind, with a redacted excerpt (never the secret)."""

    path: Path
    location: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}: {self.location}: {self.kind}: {self.excerpt}"


def looks_secret_name(name: str) -> bool:
    """True if a parameter, field or variable with this name would hold a secret's value.

    ``sf_password``, ``consumerSecret``, ``access_token``, ``private_key`` and ``SF_SECURITY_TOKEN`` do;
    ``passphrase_env``, ``key_path``, ``token_file``, ``refresh_token_policy`` and ``consumer_key`` do not.
    """
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    snake = re.sub(r"[^A-Za-z0-9]+", "_", snake).strip("_").lower()
    return bool(_SECRET_NAME.search(snake))


def _assigned_secret_name(name: str) -> bool:
    """True if ``NAME=value`` assigns a secret: a secret-looking name, or an env-style ``…_KEY`` but a public one."""
    if looks_secret_name(name):
        return True
    if not _ENV_NAME.fullmatch(name):
        return False
    words = [word for word in name.lower().split("_") if word]
    while len(words) > 1 and words[-1] in _ENCODINGS:
        words.pop()
    return words[-1:] == ["key"] and not _PUBLIC_KEY_WORDS & set(words[-2:-1])


def redact(value: str) -> str:
    """At most the first four characters (fewer for a short value) and an ellipsis: enough to tell which."""
    return value[: min(4, len(value) // 4)] + "…"


def is_placeholder(value: str) -> bool:
    """A value that stands for a secret without being one: short, empty, masked, a template, a variable or a path."""
    return len(value.strip()) < MIN_VALUE_LENGTH or _is_mask(value)


def _is_mask(value: str) -> bool:
    """A value of any length that hides or names a secret instead of holding it (``***``, ``${TOKEN}``, a path)."""
    value = value.strip()
    if not value or value.lower() in _PLACEHOLDER_WORDS or _PLACEHOLDER.match(value):
        return True
    lowered = value.lower()
    if any(marker in lowered for marker in ("redacted", "<hidden>", "***", "…", "...")):
        return True
    # a consumer key is public (it is shown in App Manager); a path or file name points at a secret
    return value.startswith(("3MVG9", "/", "~/", "./", "../")) or \
        lowered.endswith((".key", ".pem", ".p12", ".pfx", ".json", ".txt", ".crt"))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _prepare(text: str) -> str:
    """Undo what hides a secret from a regex but not from a reader: terminal colours and HTML escapes."""
    return html.unescape(_ANSI.sub("", text))


Hit = tuple[int, int, str, str]  # (start, end, kind, excerpt)


def _raw_matches(text: str, *, dotenv: bool, code: bool) -> Iterator[Hit]:
    """Every detector hit, most specific detectors first; ``code``: the text is source code (a code cell, a
    traceback), where ``NAME=value`` is an expression."""
    yield from _private_keys(text)
    yield from _tokens(text)
    yield from _url_credentials(text)
    yield from _secret_fields(text, dotenv=dotenv, code=code)


def _private_keys(text: str) -> Iterator[Hit]:
    for match in _PEM_PRIVATE.finditer(text):
        yield match.start(), match.end(), "private-key", match["header"] + "…"
    yield from _base64_pem_keys(text)
    for match in _DER_PRIVATE.finditer(text):
        yield match.start(), match.end(), "private-key", redact(match.group(0))


def _base64_pem_keys(text: str) -> Iterator[Hit]:
    """A PEM private key file in base64 (what CI variables hold), on one line or wrapped at any width.

    Each ``LS0t`` is tried as the start of a quantum: decoded from the right one, the file's ``-----BEGIN …
    PRIVATE KEY-----`` reads back whatever precedes it (a variable name, ``Bag Attributes`` lines). A PEM
    certificate in base64 decodes to ``BEGIN CERTIFICATE`` and is not reported.
    """
    end = 0
    for marker in re.finditer(_PEM_IN_BASE64, text):
        if marker.start() < end:
            continue  # the header's closing dashes or the END line of a key already reported
        blob = _BASE64_RUN.match(text, marker.start())
        head = re.sub(r"\s+", "", blob.group(0))[:_HEADER_CHARS]
        if _DECODED_PEM_HEADER.search(base64.b64decode(head[: len(head) // 4 * 4])):
            start = _run_start(text, marker.start())
            end = blob.end()
            yield start, end, "private-key", f"{redact(text[start:end])} (base64 of a PEM private key)"


def _run_start(text: str, offset: int) -> int:
    """Where the base64 characters around ``offset`` begin on its line."""
    while offset and text[offset - 1] in _BASE64_CHARS:
        offset -= 1
    return offset


def _tokens(text: str) -> Iterator[Hit]:
    for pattern, kind in ((_ACCESS_TOKEN, "access-token"), (_REFRESH_TOKEN, "refresh-token"), (_JWT, "jwt")):
        for match in pattern.finditer(text):
            yield match.start(), match.end(), kind, redact(match.group(0))
    for match in _AUTH_HEADER.finditer(text):
        if not is_placeholder(match["value"]):
            yield match.start("value"), match.end("value"), "authorization-header", redact(match["value"])


def _url_credentials(text: str) -> Iterator[Hit]:
    """``scheme://user:password@host``: any password but a mask, however short (``https://ci:pw@…`` leaks too)."""
    for match in _URL_CREDENTIALS.finditer(text):
        if not _is_mask(match["password"]):
            excerpt = f"{match['scheme']}://{redact(match['user'])}:{redact(match['password'])}@{match['host']}"
            yield match.start("user"), match.end("password"), "url-credentials", excerpt


def _secret_fields(text: str, *, dotenv: bool, code: bool) -> Iterator[Hit]:
    for match in _XML_FIELD.finditer(text):
        value = match["value"].strip()
        if looks_secret_name(match["name"]) and not is_placeholder(value):
            kind = "session-id" if match["name"].lower() == "sessionid" else "secret-field"
            yield match.start("value"), match.end("value"), kind, f"{match['name']}={redact(value)}"
    for pattern in (_QUOTED_FIELD, _QUERY_FIELD):
        for match in pattern.finditer(text):
            value = match["value"].strip().strip("\"'")
            if looks_secret_name(match["name"]) and not is_placeholder(value):
                yield match.start("value"), match.end("value"), "secret-field", f"{match['name']}={redact(value)}"
    # a .env file holds literals only; a printed NAME=value may be a count or a traceback's code
    assignments = [*([(_ENV_LINE, is_placeholder)] if dotenv else []),
                   *([] if code else [(_ASSIGNMENT, _is_harmless_printed_value)])]
    for pattern, is_harmless in assignments:
        for match in pattern.finditer(text):
            value = match["value"].strip().strip("\"'")
            if _assigned_secret_name(match["name"]) and not is_harmless(value):
                yield match.start("value"), match.end("value"), "secret-field", f"{match['name']}={redact(value)}"


def _is_harmless_printed_value(value: str) -> bool:
    """A printed ``NAME=value`` holding no secret: a placeholder, a number (``MAX_TOKENS=4096``) or code."""
    return is_placeholder(value) or value.isdigit() or bool(_CODE_VALUE.fullmatch(value))


def scan_text(text: str, known_secrets: Iterable[str] = (), *, dotenv: bool = False,
              code: bool = False) -> list[tuple[int, str, str]]:
    """(line, kind, excerpt) for each secret in ``text``; overlapping hits are reported once, by the first
    (most specific) detector, so a token in a Bearer header is one finding, not three.

    ``dotenv``: the text is a .env file (every line an assignment); ``code``: it is source code (a code cell,
    a traceback), where an unquoted ``NAME=value`` names a variable rather than holding a literal.
    """
    text = _prepare(text)
    hits = list(_raw_matches(text, dotenv=dotenv, code=code))
    for secret in known_secrets:
        start = text.find(secret)
        while start >= 0:
            hits.append((start, start + len(secret), "known-secret", redact(secret)))
            start = text.find(secret, start + len(secret))
    taken: list[tuple[int, int]] = []
    found = []
    for start, end, kind, excerpt in hits:
        if any(start < t_end and t_start < end for t_start, t_end in taken):
            continue
        taken.append((start, end))
        found.append((_line_of(text, start), kind, excerpt))
    return sorted(found)


def secret_parameter_names(source: str) -> list[str]:
    """The names assigned in a ``parameters`` cell that look like secrets (the rule of ``looks_secret_name``)."""
    try:
        names = [t.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assign | ast.AnnAssign)
                 for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                 if isinstance(t, ast.Name)]
    except SyntaxError:  # IPython magics: fall back to "name =" at the start of a line
        names = re.findall(r"^\s*([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)", source, re.M)
    return [name for name in names if looks_secret_name(name)]


