"""Secrets in files: executed notebooks (outputs, parameters, saved widget state), logs and reports, folders walked
(with the temp files an interrupted atomic write leaves), and the known secrets a file of them names."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from runbook.scan.text import (
    MIN_SECRET_LENGTH,
    Finding,
    is_placeholder,
    looks_secret_name,
    redact,
    scan_text,
    secret_parameter_names,
)
from runbook.work.files import is_write_temp

TEXT_SUFFIXES = {".log", ".txt", ".md", ".html", ".htm", ".json", ".jsonl", ".yaml", ".yml", ".env", ".xml"}
NOTEBOOK_SUFFIX = ".ipynb"
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
SECRET_STORES = {"admin-credentials.json"}
BINARY_MIME = re.compile(r"^(image|audio|video)/|^application/(pdf|octet-stream)$")


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
                if unreported and looks_secret_name(key) and isinstance(item, str) and not is_placeholder(item):
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
