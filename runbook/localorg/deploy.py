"""File-based ``deploy`` and ``checkDeployStatus`` of an mdapi-format zip (package.xml + component files).

The deploy runs at once, inside one transaction: ``checkOnly`` always rolls back, and so does any
failure when ``rollbackOnError`` is true (simple-salesforce always sends true for production). The
answer is still Salesforce's asynchronous shape: ``deploy`` returns an AsyncResult (Queued) and
``checkDeployStatus`` the finished DeployResult. Files are upserted, so redeploying a ConnectedApp
whose file carries a consumerKey fails with "You cannot provide a Consumer Key", as in a real org.
Options arrive as simple-salesforce writes them: ``True``/``False`` and stray ``None`` text.
"""

from __future__ import annotations

import base64
import binascii
import io
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from runbook.localorg import metadata
from runbook.localorg.components import as_bool
from runbook.localorg.context import OrgContext, Session
from runbook.localorg.soapxml import (
    SoapFault,
    api_fault,
    child,
    child_text,
    children,
    leaf,
    local,
    parse_xml,
    to_node,
)
from runbook.localorg.store import now_text

MAX_FILES = 1000
MAX_UNZIPPED_BYTES = 50 * 1024 * 1024


class _Rollback(Exception):
    """Raised inside the deploy transaction to undo it (checkOnly, or a failure with rollbackOnError)."""


@dataclass(frozen=True)
class Started:
    xml: str
    check_only: bool


@dataclass(frozen=True)
class _File:
    type_name: str
    full_name: str
    path: str
    data: bytes


def _options(operation: Element) -> dict[str, bool]:
    options = child(operation, "DeployOptions")
    return {"checkOnly": as_bool(child_text(options, "checkOnly")),
            "rollbackOnError": as_bool(child_text(options, "rollbackOnError"), default=True),
            "ignoreWarnings": as_bool(child_text(options, "ignoreWarnings"))}


def _unzip(encoded: str) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(encoded, validate=False)))
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > MAX_FILES or sum(info.file_size for info in infos) > MAX_UNZIPPED_BYTES:
            raise api_fault("LIMIT_EXCEEDED", f"The zip file is larger than {MAX_UNZIPPED_BYTES} bytes "
                            f"unzipped or holds more than {MAX_FILES} files")
        return {info.filename: archive.read(info) for info in infos}
    except (binascii.Error, zipfile.BadZipFile, ValueError) as exc:
        raise api_fault("INVALID_ZIP", f"The ZipFile is not a valid zip archive: {exc}") from None


def _package(files: dict[str, bytes]) -> tuple[str, dict[str, set[str]]]:
    """The folder holding package.xml and the members it lists per type."""
    manifests = sorted((name for name in files if posixpath.basename(name) == "package.xml"), key=len)
    if not manifests:
        raise api_fault("INVALID_ZIP", "No package.xml found in the zip file")
    root = posixpath.dirname(manifests[0])
    members: dict[str, set[str]] = {}
    for types in children(parse_xml(files[manifests[0]]), "types"):
        names = {(m.text or "").strip() for m in children(types, "members")}
        members.setdefault(child_text(types, "name") or "", set()).update(names)
    return root, members


def _components(files: dict[str, bytes], root: str, members: dict[str, set[str]]) -> list[_File]:
    found = []
    for path, data in files.items():
        relative = posixpath.relpath(path, root) if root else path
        folder, _, file_name = relative.partition("/")
        metadata_type = metadata.TYPE_BY_FOLDER.get(folder)
        if metadata_type is None or not file_name.endswith("." + metadata_type.suffix) or "/" in file_name:
            continue
        full_name = file_name[: -len(metadata_type.suffix) - 1]
        listed = members.get(metadata_type.name, set())
        if full_name in listed or "*" in listed:
            found.append(_File(metadata_type.name, full_name, relative, data))
    return sorted(found, key=lambda f: (metadata.TYPES[f.type_name].rank, f.path))


def _message(type_name: str, full_name: str, file_name: str, *, success: bool, created: bool = False,
             problem: str = "") -> dict[str, Any]:
    """A DeployMessage (componentSuccesses / componentFailures entry)."""
    return {"changed": success, "componentType": type_name, "created": created, "createdDate": now_text(),
            "deleted": False, "fileName": file_name, "fullName": full_name, "problem": problem,
            "problemType": "" if success else "Error", "success": success}


def _deploy_file(ctx: OrgContext, file: _File) -> dict[str, Any]:
    """Upsert one component file; its DeployMessage."""
    def failed(problem: str) -> dict[str, Any]:
        return _message(file.type_name, file.full_name, file.path, success=False, problem=problem)

    try:
        root = parse_xml(file.data)
    except SoapFault as fault:
        return failed(fault.message)
    if local(root.tag) != file.type_name:
        return failed(f"Expected a {file.type_name} root element, found {local(root.tag)}")
    definition = to_node(root)
    definition["fullName"] = [file.full_name]
    outcome = metadata.save(ctx.store, file.type_name, definition, "upsert")
    if not outcome.success:
        return failed("; ".join(p.message for p in outcome.problems))
    return _message(file.type_name, file.full_name, file.path, success=True, created=outcome.created)


def _missing(members: dict[str, set[str]], found: list[_File]) -> list[dict[str, Any]]:
    """Salesforce's failure for a package.xml member that has no file in the zip."""
    present = {(f.type_name, f.full_name) for f in found}
    out = []
    for type_name, names in members.items():
        for name in sorted(names - {"*"}):
            if (type_name, name) not in present:
                out.append(_message(type_name, name, "package.xml", success=False,
                                    problem=f"An object '{name}' of type {type_name} was named in "
                                            "package.xml, but was not found in zipped directory"))
    return out


def _run(ctx: OrgContext, files: dict[str, bytes], options: dict[str, bool]) -> list[dict[str, Any]]:
    root, members = _package(files)
    found = _components(files, root, members)
    messages: list[dict[str, Any]] = []
    try:
        with ctx.store.transaction():
            messages = _missing(members, found) + [_deploy_file(ctx, file) for file in found]
            failed = any(not m["success"] for m in messages)
            if options["checkOnly"] or (failed and options["rollbackOnError"]):
                raise _Rollback
    except _Rollback:
        pass
    return messages


def start(ctx: OrgContext, operation: Element, session: Session) -> Started:
    """Run the deploy and answer ``deployResponse`` with its AsyncResult."""
    options = _options(operation)
    started = now_text()
    messages = _run(ctx, _unzip(child_text(operation, "ZipFile") or ""), options)
    failures = [m for m in messages if not m["success"]]
    successes = [m for m in messages if m["success"]]
    rolled_back = options["checkOnly"] or (failures and options["rollbackOnError"])
    status = "Failed" if failures and (rolled_back or not successes) else "SucceededPartial" if failures \
        else "Succeeded"
    deploy_id = ctx.store.new_id("DeployRequest")
    ctx.store.save_deploy(deploy_id, {
        "checkOnly": options["checkOnly"], "completedDate": now_text(), "createdBy": session.user["Id"],
        "createdByName": session.user["Name"], "createdDate": started,
        "details": {"componentFailures": failures, "componentSuccesses": successes}, "done": True,
        "id": deploy_id, "ignoreWarnings": options["ignoreWarnings"], "lastModifiedDate": now_text(),
        "numberComponentErrors": len(failures),
        "numberComponentsDeployed": 0 if status == "Failed" or options["checkOnly"] else len(successes),
        "numberComponentsTotal": len(messages), "numberTestErrors": 0, "numberTestsCompleted": 0,
        "numberTestsTotal": 0, "rollbackOnError": options["rollbackOnError"], "runTestsEnabled": False,
        "startDate": started, "status": status, "success": status != "Failed"})
    body = f"{leaf('done', False)}{leaf('id', deploy_id)}{leaf('state', 'Queued')}"
    return Started(f"<deployResponse><result>{body}</result></deployResponse>", options["checkOnly"])


def _deploy_message(message: dict[str, Any]) -> str:
    return "".join(leaf(name, value) for name, value in message.items() if value != "")


def check_status(ctx: OrgContext, operation: Element) -> str:
    """``checkDeployStatus``: the finished DeployResult (component details only if includeDetails)."""
    deploy_id = child_text(operation, "asyncProcessId") or ""
    result = ctx.store.deploy(deploy_id)
    if result is None:  # the fault's wording is an unverified choice
        raise api_fault("INVALID_ID_FIELD", f"invalid deploy id: {deploy_id}")
    details = result["details"]
    inner = ""
    if as_bool(child_text(operation, "includeDetails")):
        inner = "".join(f"<componentFailures>{_deploy_message(m)}</componentFailures>"
                        for m in details["componentFailures"])
        inner += "".join(f"<componentSuccesses>{_deploy_message(m)}</componentSuccesses>"
                         for m in details["componentSuccesses"])
    fields = "".join(f"<details>{inner}</details>" if name == "details" else leaf(name, value)
                     for name, value in result.items())
    return f"<result>{fields}</result>"
