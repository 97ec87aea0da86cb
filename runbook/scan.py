"""The secret scanner: finds private keys, passwords and tokens in what the runbook writes.

Papermill copies parameters into an executed notebook twice, outputs keep whatever a cell printed
or raised, widget state is saved into the notebook's metadata, and logs keep every line. This module
reads those outputs the way a reader of ``runs/`` would and reports each secret it finds, so the
batch, the tests and a user (``runbook scan PATH...``) can fail before a secret leaves the machine.

A finding never holds the secret itself: its excerpt shows at most the first four characters.

Detectors, each chosen so that what the runbook shows on purpose is not one of them:

=====================  ===============================================================================
private-key            a PEM ``-----BEGIN ... PRIVATE KEY-----`` block, the base64 DER of an RSA/EC
                       private key printed without its PEM header, or a whole PEM key file in base64
                       (``SF_JWT_KEY_BASE64=LS0t…``, ``base64 server.key``: one line or wrapped)
access-token           a Salesforce access/session token: ``00D`` + 12 characters + ``!`` + 40 or more
refresh-token          a Salesforce refresh token: ``5Aep861`` + 40 or more characters
jwt                    a signed JWT (a bearer assertion or an id token): ``eyJ….eyJ….signature``
authorization-header   ``Authorization: Bearer <value>`` (or ``OAuth <value>``), in any quoting
session-id             ``<sessionId>value</sessionId>``: a SOAP login's access token
url-credentials        a URL carrying a password: ``https://user:pw@host``
secret-field           a secret-named field with a literal value: ``"password": "…"``,
                       ``client_secret='…'``, ``<consumerSecret>…</consumerSecret>``, ``?access_token=…``,
                       ``SF_PASSWORD=…`` or ``GITHUB_TOKEN=…`` printed anywhere (and in a .env file),
                       an env-style ``…_KEY=…`` (``SF_JWT_KEY``, ``STRIPE_KEY``), a secret-named key in
                       JSON/YAML
secret-parameter       a notebook parameter whose name looks like a secret (even if empty)
password-widget        a saved ``Password`` widget holding a value
known-secret           any exact value the caller knows is secret (e.g. the local org's admin password)
=====================  ===============================================================================

Besides outputs, a folder walk reads the temp files an interrupted atomic write leaves beside its target
(``.server.key.<pid>.<random>.tmp``: a copy of the key that was being written).

Not secrets, and not reported: consumer keys (``3MVG9…``, ``SF_CONSUMER_KEY=…``), certificates and their
base64, SHA-256 fingerprints, org ids, variable names (``passphrase_env``), paths (``key_path=/x/server.key``),
empty values and placeholders (``<hidden>``, ``***``, ``[REDACTED]``, ``${VAR}``), numbers
(``MAX_TOKENS=4096``), and code: a ``NAME=value`` in a code cell or a traceback, or whose value reads as a
variable (``access_token=session_id``), is an expression, not a literal.
"""

from __future__ import annotations

import ast
import base64
import html
import json
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runbook.work.files import is_write_temp

__all__ = ["Finding", "iter_files", "known_secrets_from_file", "looks_secret_name", "scan_paths", "scan_test_outputs",
           "scan_text", "secret_parameter_names"]

TEXT_SUFFIXES = {".log", ".txt", ".md", ".html", ".htm", ".json", ".jsonl", ".yaml", ".yml", ".env", ".xml"}
NOTEBOOK_SUFFIX = ".ipynb"
# Folders that are tools, not outputs: walking them would scan other projects' test fixtures.
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
# Files whose job is to hold a secret (mode 0600); they are read for known secrets, not scanned, when walking.
SECRET_STORES = {"admin-credentials.json"}
# Mime types that cannot carry readable text; scanning megabytes of PNG base64 finds nothing.
BINARY_MIME = re.compile(r"^(image|audio|video)/|^application/(pdf|octet-stream)$")
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


def _is_placeholder(value: str) -> bool:
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
        if not _is_placeholder(match["value"]):
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
        if looks_secret_name(match["name"]) and not _is_placeholder(value):
            kind = "session-id" if match["name"].lower() == "sessionid" else "secret-field"
            yield match.start("value"), match.end("value"), kind, f"{match['name']}={redact(value)}"
    for pattern in (_QUOTED_FIELD, _QUERY_FIELD):
        for match in pattern.finditer(text):
            value = match["value"].strip().strip("\"'")
            if looks_secret_name(match["name"]) and not _is_placeholder(value):
                yield match.start("value"), match.end("value"), "secret-field", f"{match['name']}={redact(value)}"
    # a .env file holds literals only; a printed NAME=value may be a count or a traceback's code
    assignments = [*([(_ENV_LINE, _is_placeholder)] if dotenv else []),
                   *([] if code else [(_ASSIGNMENT, _is_harmless_printed_value)])]
    for pattern, is_harmless in assignments:
        for match in pattern.finditer(text):
            value = match["value"].strip().strip("\"'")
            if _assigned_secret_name(match["name"]) and not is_harmless(value):
                yield match.start("value"), match.end("value"), "secret-field", f"{match['name']}={redact(value)}"


def _is_harmless_printed_value(value: str) -> bool:
    """A printed ``NAME=value`` holding no secret: a placeholder, a number (``MAX_TOKENS=4096``) or code."""
    return _is_placeholder(value) or value.isdigit() or bool(_CODE_VALUE.fullmatch(value))


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


class _Scanner:
    """Collects the findings of one file; ``where`` is a human path into it (``cell 3 output 0 text/plain``)."""

    def __init__(self, path: Path, known_secrets: list[str]):
        self.path = path
        self.known = known_secrets
        self.findings: list[Finding] = []

    def add(self, where: str, kind: str, excerpt: str) -> None:
        self.findings.append(Finding(self.path, where, kind, excerpt))

    def text(self, where: str, text: str, *, dotenv: bool = False, code: bool = False) -> None:
        for line, kind, excerpt in scan_text(text, self.known, dotenv=dotenv, code=code):
            self.add(f"{where} line {line}" if where else f"line {line}", kind, excerpt)

    def value(self, where: str, value: Any, key: str = "") -> None:
        """Scan a parsed JSON/YAML value: every string, and every secret-named key holding a literal.

        A string is scanned after its key (``Authorization: Bearer …``): parsing split the header's name
        from its value, and the detectors need both.
        """
        prefix = f"{key}: " if key else ""
        if isinstance(value, str):
            self.text(where, prefix + value)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            self.text(where, prefix + "".join(value))  # nbformat stores multi-line text as a list of lines
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.value(f"{where}[{index}]", item)
        elif isinstance(value, dict):
            for key, item in value.items():
                key = str(key)
                here = f"{where}.{key}" if where else key
                if BINARY_MIME.match(key):
                    continue
                before = len(self.findings)
                self.value(here, item, key)
                # a recognised token under a secret-named key is reported as that token; any other literal
                # under it (a password has no format) as the field
                unreported = len(self.findings) == before
                if unreported and looks_secret_name(key) and isinstance(item, str) and not _is_placeholder(item):
                    self.add(here, "secret-field", f"{key}={redact(item)}")

    def notebook(self, nb: dict[str, Any]) -> None:
        metadata = nb.get("metadata", {})
        for name in (metadata.get("papermill") or {}).get("parameters") or {}:
            if looks_secret_name(name):
                self.add(f"metadata.papermill.parameters.{name}", "secret-parameter", name)
        self._widgets(metadata.get("widgets") or {})
        self.value("metadata", metadata)
        for index, cell in enumerate(nb.get("cells", [])):
            self._cell(index, cell)

    def _cell(self, index: int, cell: dict[str, Any]) -> None:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        tags = (cell.get("metadata") or {}).get("tags") or []
        if cell.get("cell_type") == "code" and {"parameters", "injected-parameters"} & set(tags):
            for name in secret_parameter_names(source):
                self.add(f"cell {index} ({'/'.join(tags)}) source", "secret-parameter", name)
        self.text(f"cell {index} source", source, code=cell.get("cell_type") == "code")
        self.value(f"cell {index} metadata", cell.get("metadata") or {})
        self.value(f"cell {index} attachments", cell.get("attachments") or {})
        for number, output in enumerate(cell.get("outputs") or []):
            where = f"cell {index} output {number}"
            for key in ("text", "ename", "evalue"):
                if key in output:
                    self.value(f"{where} {key}", output[key])
            if isinstance(output.get("traceback"), list):  # one entry per frame, not lines of one text
                self.text(f"{where} traceback", "\n".join(map(str, output["traceback"])), code=True)
            for mime, data in (output.get("data") or {}).items():
                if not BINARY_MIME.match(mime):
                    self.value(f"{where} {mime}", data)
            self.value(f"{where} metadata", output.get("metadata") or {})

    def _widgets(self, widgets: dict[str, Any]) -> None:
        """A saved Password widget keeps what was typed in it; no other widget type says its value is secret."""
        for mime_state in widgets.values():
            for model_id, model in ((mime_state or {}).get("state") or {}).items():
                state = (model or {}).get("state") or {}
                value = state.get("value")
                kind = (model or {}).get("model_name") or state.get("_model_name")
                if kind == "PasswordModel" and isinstance(value, str) and value:
                    self.add(f"metadata.widgets {model_id}", "password-widget", redact(value))


def _read_file(path: Path, known: list[str]) -> list[Finding]:
    scanner = _Scanner(path, known)
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    parsed: Any = None
    try:
        if suffix in (NOTEBOOK_SUFFIX, ".json"):
            parsed = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            parsed = list(yaml.safe_load_all(text))
    except (ValueError, yaml.YAMLError):
        parsed = None  # a half-written file: scan it as text, a secret in it is still a secret
    if suffix == NOTEBOOK_SUFFIX and isinstance(parsed, dict):
        scanner.notebook(parsed)
    elif parsed is not None:
        scanner.value("", parsed)
    else:
        scanner.text("", text, dotenv=_is_dotenv(path))
    return _unique(scanner.findings)


def _unique(findings: list[Finding]) -> list[Finding]:
    """One finding per place and kind: a parameters cell and the notebook's metadata both name it, once each."""
    return list(dict.fromkeys(findings))


def _is_dotenv(path: Path) -> bool:
    return path.name == ".env" or path.name.endswith(".env") or path.suffix.lower() == ".env"


def _scannable(path: Path) -> bool:
    """Outputs by suffix, and temp files interrupted atomic writes left (``.server.key.<pid>.<random>.tmp``)."""
    return path.suffix.lower() in TEXT_SUFFIXES | {NOTEBOOK_SUFFIX} or _is_dotenv(path) or is_write_temp(path)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The files to scan: each file given, and every scannable file below each folder given.

    A file named explicitly is always scanned; while walking, tool folders (.venv, .git) and secret stores
    (admin-credentials.json) are left out, because a secret there is where it belongs.
    """
    for path in map(Path, paths):
        if path.is_file():
            yield path
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if any(part in SKIPPED_DIRS for part in relative) or child.name in SECRET_STORES:
                    continue
                if child.is_file() and _scannable(child):
                    yield child
        else:
            raise FileNotFoundError(f"{path}: no such file or folder to scan")


def scan_paths(paths: list[Path], known_secrets: Iterable[str] = ()) -> list[Finding]:
    """Every secret in the given files and folders (notebooks, logs, text, JSON, YAML, .env), in file order.

    ``known_secrets`` are exact values to look for as well (shorter than 8 characters are ignored: they
    would match ordinary words); raises FileNotFoundError for a path that does not exist.
    """
    known = sorted({s for s in known_secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH},
                   key=len, reverse=True)
    findings: list[Finding] = []
    for path in iter_files(paths):
        findings += _read_file(path, known)
    return findings


def known_secrets_from_file(path: Path) -> list[str]:
    """The secret values in a credentials JSON file or a PEM private key file.

    JSON: the string values under secret-named keys, at any depth (``admin-credentials.json``'s password,
    not its username: a username or URL is shown on purpose and would be a finding on every summary); a
    JSON list or string counts whole. PEM: the base64 body lines of each PRIVATE KEY block, so a key
    printed without its header is found; certificate blocks are public and skipped.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if "-----BEGIN" in text:
        return _pem_private_lines(text)
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{path}: neither JSON nor a PEM private key; give admin-credentials.json or a .key "
                         "file") from None
    return list(_json_secrets(data, under_secret_key=not isinstance(data, dict)))


def _pem_private_lines(text: str) -> list[str]:
    """The body lines of the PRIVATE KEY blocks, less those that only hold the public key.

    A private key contains its public key (the RSA modulus), which the certificate and its base64 repeat:
    a body line whose bytes are all public would be found in every certificate shown on purpose.
    """
    lines, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN"):
            inside = "PRIVATE KEY" in line
        elif line.startswith("-----END"):
            inside = False
        elif inside and line and ":" not in line:  # skip "Proc-Type:"/"DEK-Info:" headers of legacy keys
            lines.append(line)
    public = _public_key_der(text)
    return [line for line in lines if not (public and _decoded(line) in public)]


def _public_key_der(pem: str) -> bytes:
    """The DER of the key's public half, or b"" for a key that cannot be read without its passphrase."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        return b""
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _decoded(line: str) -> bytes:
    try:
        return base64.b64decode(line, validate=True)
    except ValueError:
        return b"\0not base64"


def _json_secrets(data: Any, *, under_secret_key: bool) -> Iterator[str]:
    if isinstance(data, str) and under_secret_key:
        yield data
    elif isinstance(data, list):
        for item in data:
            yield from _json_secrets(item, under_secret_key=under_secret_key)
    elif isinstance(data, dict):
        for key, item in data.items():
            yield from _json_secrets(item, under_secret_key=under_secret_key or looks_secret_name(str(key)))


def scan_test_outputs(root: Path, known_secrets: Iterable[str] = ()) -> list[Finding]:
    """Every secret left in the outputs below ``root`` (executed notebooks, logs, reports) by a test session.

    Besides ``known_secrets``, the secrets of every local org and key pair the tests created below ``root``
    are looked for: each ``admin-credentials.json`` and each private key file (``*.key``, ``*.pem``) found
    there. Meant for a ``pytest_sessionfinish`` hook with the session's base temp folder as ``root``.
    """
    root = Path(root)
    known = set(known_secrets)
    if root.is_dir():
        for store in root.rglob("*"):
            if store.is_file() and (store.name in SECRET_STORES or store.suffix in (".key", ".pem")):
                try:
                    known.update(known_secrets_from_file(store))
                except (OSError, ValueError):
                    continue  # a half-written or foreign file holds no secret we can read
    return scan_paths([root], known) if root.exists() else []
