"""The project's ``sfdx-project.json``: ``oauthLocalPort`` kept in step with the app's callback port.

The Salesforce CLI's web login listens on ``oauthLocalPort`` (default 1717) and sends
``http://localhost:<port>/OauthRedirect`` as the redirect, which must equal the app's callback URL.
Only that one key is touched: the rest of the file, its key order and its indentation stay as they were.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runbook.errors import InputError
from runbook.work.files import PUBLIC, write_atomic

DEFAULT_PORT = 1717
MINIMAL = {"packageDirectories": [{"path": "force-app", "default": True}], "sourceApiVersion": "62.0"}


@dataclass(frozen=True)
class ProjectChange:
    """What writing the port would do to the file: create it, change the key, or nothing."""

    path: Path
    action: Literal["create", "update", "none"]  # what is done to the file
    old: int | None
    new: int | None

    def __str__(self) -> str:
        if self.action == "none":
            return f"{self.path}: oauthLocalPort already right"
        return f"{self.path}: oauthLocalPort {self.old or '(unset)'} -> {self.new}" + \
            (" (new file)" if self.action == "create" else "")


def read_project(path: str | Path) -> dict | None:
    """The file's JSON object, None if it does not exist; InputError if it is not a JSON object."""
    path = Path(path).expanduser()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError("sfdx_project", str(path), "fix the JSON (or point sfdx_project at the right file)",
                         problem=f"it is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError("sfdx_project", str(path), "an sfdx-project.json holds one JSON object",
                         problem="it is not a JSON object")
    return data


def plan_project_port(path: str | Path, port: int, *, create: bool = False) -> ProjectChange | None:
    """Check the file now (nothing written) and say what keeping ``oauthLocalPort`` = ``port`` needs."""
    if not path:
        return None
    path = Path(path).expanduser().resolve()
    data = read_project(path)
    if data is None:
        if not create:
            raise InputError("sfdx_project", str(path), "give the path of your project's sfdx-project.json, "
                             "or set create_sfdx_project=True to create a minimal one", problem="no such file")
        return ProjectChange(path, "create", None, port)
    old = data.get("oauthLocalPort")
    # 1717 is the CLI's default: write it only to correct a file that names another port
    if old == port or (old is None and port == DEFAULT_PORT):
        return ProjectChange(path, "none", old, old)
    return ProjectChange(path, "update", old, port)


def _indent(text: str) -> int | str:
    match = re.search(r"^[{\[]\s*\n([ \t]+)\S", text, re.M)
    if not match:
        return 2
    return len(match[1]) if set(match[1]) == {" "} else match[1]


def apply_project_port(change: ProjectChange | None) -> None:
    """Write the planned ``oauthLocalPort`` (atomically), keeping everything else in the file."""
    if change is None or change.action == "none":
        return
    if change.action == "create":
        text, data = "", {**MINIMAL}
    else:
        text = change.path.read_text()
        data = json.loads(text)
    data["oauthLocalPort"] = change.new
    indent = _indent(text) if text else 2
    newline = "\n" if not text or text.endswith("\n") else ""
    change.path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(change.path, json.dumps(data, indent=indent, ensure_ascii=False) + newline, PUBLIC)
