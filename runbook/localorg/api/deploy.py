"""The file-based Metadata calls, on mdapi-format zips (package.xml + component files): ``deploy`` and
``checkDeployStatus``, ``retrieve`` and ``checkRetrieveStatus``.

A deploy runs at once, inside one transaction: ``checkOnly`` always rolls back, and so does any
failure when ``rollbackOnError`` is true (simple-salesforce always sends true for production). The
answer is still Salesforce's asynchronous shape [D]: ``deploy`` returns an AsyncResult (Queued) and
``checkDeployStatus`` the finished DeployResult. Files are upserted, so redeploying a ConnectedApp
whose file carries a consumerKey fails with "You cannot provide a Consumer Key", as in a real org [O].
Options arrive as simple-salesforce writes them: ``True``/``False`` and stray ``None`` text [V].

Components are deployed in dependency order whatever the zip's order: settings (the External Client
Apps opt-in) first, then each External Client App before its OAuth settings, those before its global
OAuth settings, and policies last [O: Salesforce refuses global OAuth settings whose app has no OAuth
settings, and satellites whose app does not exist]. Folders and suffixes are source-deploy-retrieve's
[V metadataRegistry.json]: externalClientApps/*.eca, extlClntAppOauthSettings/*.ecaOauth,
extlClntAppGlobalOauthSets/*.ecaGlblOauth, extlClntAppOauthPolicies/*.ecaOauthPlcy,
extlClntAppPolicies/*.ecaPlcy, settings/ExternalClientApp.settings (package.xml type ``Settings``), and
settings/<X>.settings for every other settings type, checked against the Metadata WSDL (``settings``): a scratch
org definition's ``settings``, as the Salesforce CLI deploys them to a new scratch org.
Deploys are declarative: a component's file replaces it, so a global OAuth settings file without
``<certificate>`` clears the certificate and JWT logins then fail "invalid assertion" [V systemprompt].
What the org generates (an app's OAuth policies, see ``external_client_apps``) is made after every
file is in, only for apps the deploy gave none, and not listed among the deploy's components [U].

Deletions [D "Deleting Components from an Organization"]: ``destructiveChangesPre.xml`` is applied before
the files, ``destructiveChangesPost.xml`` after them, and ``destructiveChanges.xml`` before them ([D] for
API versions before 33.0; [U] kept for later ones). Wildcards are not supported [D]. Within a manifest
an External Client App's settings and policies go before the app ([U]; deleting the app takes them
with it anyway). A component the org does not have is a warning, "No <type> named: <name> found" [O], which
fails the deploy unless ``ignoreWarnings`` [D DeployOptions].

A retrieve, likewise, is done at once and answered as an AsyncResult; ``checkRetrieveStatus`` gives
the RetrieveResult with the zip, which it hands out once [D]. The zip holds what readMetadata would
answer (consumer secrets never, scopes normalised), under ``unpackaged/`` unless ``singlePackage``.
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

from runbook.localorg.api.soapxml import (
    SoapFault,
    api_fault,
    child,
    child_text,
    children,
    leaf,
    local,
    metadata_file,
    namespace,
    parse_xml,
    to_node,
)
from runbook.localorg.model import ids, metadata
from runbook.localorg.model.components import as_bool
from runbook.localorg.model.context import OrgContext, Session
from runbook.localorg.model.store import Component, now_text

MAX_FILES = 1000
MAX_UNZIPPED_BYTES = 50 * 1024 * 1024
DEPLOY_PREFIX = ids.KEY_PREFIXES["DeployRequest"]
RETRIEVE_PREFIX = "09S"  # [O] retrieve ids in real `sf project retrieve start --json` output


class _Rollback(Exception):
    """Raised inside the deploy transaction to undo it (checkOnly, or a failure with rollbackOnError)."""


@dataclass(frozen=True)
class Started:
    xml: str
    check_only: bool


@dataclass(frozen=True)
class _File:
    type_name: str  # "" for a settings file of no settings type
    full_name: str
    path: str
    data: bytes
    manifest: str  # the type's name in package.xml ("Settings" for every settings type)
    zip_path: str  # ``path`` with the package's folder: the DeployMessage's fileName [O forcedotcom/cli#1826]


def _options(operation: Element) -> dict[str, bool]:
    options = child(operation, "DeployOptions")
    return {"checkOnly": as_bool(child_text(options, "checkOnly")),
            "rollbackOnError": as_bool(child_text(options, "rollbackOnError"), default=True),
            "ignoreWarnings": as_bool(child_text(options, "ignoreWarnings")),
            "performRetrieve": as_bool(child_text(options, "performRetrieve"))}


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


def _manifest(data: bytes) -> dict[str, list[str]]:
    """The members a package.xml-format manifest lists, per type, in its order."""
    members: dict[str, list[str]] = {}
    for types in children(parse_xml(data), "types"):
        names = [(m.text or "").strip() for m in children(types, "members")]
        members.setdefault(child_text(types, "name") or "", []).extend(n for n in names if n)
    return members


def _package(files: dict[str, bytes]) -> tuple[str, dict[str, set[str]]]:
    """The folder holding package.xml and the members it lists per type."""
    manifests = sorted((name for name in files if posixpath.basename(name) == "package.xml"), key=len)
    if not manifests:
        raise api_fault("INVALID_ZIP", "No package.xml found in the zip file")
    root = posixpath.dirname(manifests[0])
    return root, {type_name: set(names) for type_name, names in _manifest(files[manifests[0]]).items()}


def _components(files: dict[str, bytes], root: str, members: dict[str, set[str]]) -> list[_File]:
    """The component files package.xml lists, in deploy order (see the module docstring).

    A settings file's type is its name's ("settings/LightningExperience.settings": LightningExperienceSettings);
    one listed that names no settings type is kept with no type, to fail as Salesforce fails it (``settings``).
    """
    found = []
    for path, data in files.items():
        relative = posixpath.relpath(path, root) if root else path
        folder, _, file_name = relative.partition("/")
        is_settings = folder == metadata.SETTINGS_FOLDER
        metadata_type = None if is_settings else metadata.TYPE_BY_FOLDER.get(folder)
        suffix = metadata.SETTINGS_FOLDER if is_settings else metadata_type.suffix if metadata_type else ""
        if not suffix or not file_name.endswith("." + suffix) or "/" in file_name:
            continue
        full_name = file_name[: -len(suffix) - 1]
        manifest = metadata.SETTINGS if is_settings else metadata_type.manifest
        listed = members.get(manifest, set())
        if is_settings:
            metadata_type = metadata.manifest_type(manifest, full_name)
        elif metadata.manifest_type(manifest, full_name) is not metadata_type:
            continue
        if full_name in listed or "*" in listed:
            found.append(_File(metadata_type.name if metadata_type else "", full_name, relative, data, manifest,
                               path))
    return sorted(found, key=lambda f: (_rank(f.type_name), f.path))


def _rank(type_name: str) -> int:
    metadata_type = metadata.type_named(type_name) if type_name else None
    return metadata_type.rank if metadata_type else 0


def _message(type_name: str, full_name: str, file_name: str, *, success: bool, created: bool = False,
             deleted: bool = False, problem: str = "", problem_type: str = "") -> dict[str, Any]:
    """A DeployMessage (componentSuccesses / componentFailures entry)."""
    return {"changed": success, "componentType": type_name, "created": created, "createdDate": now_text(),
            "deleted": deleted, "fileName": file_name, "fullName": full_name, "problem": problem,
            "problemType": problem_type or ("" if success else "Error"), "success": success}


def _deploy_file(ctx: OrgContext, file: _File) -> dict[str, Any]:
    """Upsert one component file; its DeployMessage."""
    def failed(problem: str) -> dict[str, Any]:
        return _message(file.type_name, file.full_name, file.zip_path, success=False, problem=problem)

    if not file.type_name:  # [O] sfdx-core#519 (see ``settings``)
        return failed(f"{file.path} is not a valid metadata object. Check the name and casing of the file.")
    try:
        root = parse_xml(file.data)
    except SoapFault as fault:
        return failed(fault.message)
    if local(root.tag) != file.type_name:
        return failed(f"Expected a {file.type_name} root element, found {local(root.tag)}")
    definition = to_node(root)
    check = metadata.type_named(file.type_name).check
    problem = check(definition, namespace(root.tag)) if check else None
    if problem:  # [O] forcedotcom/cli#498 (see ``settings``)
        return failed(f"Error parsing file: {problem}")
    definition["fullName"] = [file.full_name]
    outcome = metadata.save(ctx.store, file.type_name, definition, "upsert")
    if not outcome.success:
        return failed("; ".join(p.message for p in outcome.problems))
    return _message(file.type_name, file.full_name, file.zip_path, success=True, created=outcome.created)


def _missing(members: dict[str, set[str]], found: list[_File]) -> list[dict[str, Any]]:
    """Salesforce's failure for a package.xml member that has no file in the zip."""
    present = {(f.manifest, f.full_name) for f in found}
    out = []
    for type_name, names in members.items():
        for name in sorted(names - {"*"}):
            if (type_name, name) not in present:
                out.append(_message(type_name, name, "package.xml", success=False,
                                    problem=f"An object '{name}' of type {type_name} was named in "
                                            "package.xml, but was not found in zipped directory"))
    return out


def _delete(ctx: OrgContext, manifest: str, type_name: str, member: str, ignore_warnings: bool) -> dict[str, Any]:
    """Delete one component a destructive manifest names; its DeployMessage."""
    metadata_type = metadata.manifest_type(type_name, member)
    if member == "*":  # [D] wildcards are not supported; [U] the wording
        return _message(type_name, member, manifest, success=False,
                        problem=f"Wildcards are not supported in {posixpath.basename(manifest)}")
    if metadata_type is None or metadata_type.current(ctx.store, member) is None:
        return _message(type_name, member, manifest, success=ignore_warnings, problem_type="Warning",
                        problem=f"No {type_name} named: {member} found")
    outcome = metadata.delete(ctx.store, metadata_type.name, member)
    if not outcome.success:
        return _message(type_name, member, manifest, success=False,
                        problem="; ".join(p.message for p in outcome.problems))
    return _message(type_name, member, manifest, success=True, deleted=True)


def _deletions(ctx: OrgContext, files: dict[str, bytes], root: str, names: tuple[str, ...],
               ignore_warnings: bool) -> list[dict[str, Any]]:
    """Apply the destructive manifests ``names`` present in the zip; their DeployMessages."""
    messages = []
    for name in names:
        path = posixpath.join(root, name) if root else name
        if path not in files:
            continue
        wanted = [(type_name, member) for type_name, members in _manifest(files[path]).items() for member in members]
        rank = {pair: (metadata_type.rank if (metadata_type := metadata.manifest_type(*pair)) else 0)
                for pair in wanted}
        for type_name, member in sorted(wanted, key=lambda pair: -rank[pair]):
            messages.append(_delete(ctx, path, type_name, member, ignore_warnings))
    return messages


def _run(ctx: OrgContext, files: dict[str, bytes], options: dict[str, bool]) -> list[dict[str, Any]]:
    root, members = _package(files)
    found = _components(files, root, members)
    messages: list[dict[str, Any]] = []
    try:
        with ctx.store.transaction():
            messages = _deletions(ctx, files, root, ("destructiveChangesPre.xml", "destructiveChanges.xml"),
                                  options["ignoreWarnings"])
            messages += _missing(members, found) + [_deploy_file(ctx, file) for file in found]
            metadata.after_saves(ctx.store, [(m["componentType"], m["fullName"]) for m in messages
                                             if m["success"] and not m["deleted"]])
            messages += _deletions(ctx, files, root, ("destructiveChangesPost.xml",), options["ignoreWarnings"])
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
        "details": {"componentFailures": failures, "componentSuccesses": successes,
                    **({"retrieveResult": _retrieved(ctx, successes)} if options["performRetrieve"]
                       and not rolled_back else {})}, "done": True,
        "id": deploy_id, "ignoreWarnings": options["ignoreWarnings"], "lastModifiedDate": now_text(),
        "numberComponentErrors": len(failures),
        "numberComponentsDeployed": 0 if status == "Failed" or options["checkOnly"] else len(successes),
        "numberComponentsTotal": len(messages), "numberTestErrors": 0, "numberTestsCompleted": 0,
        "numberTestsTotal": 0, "rollbackOnError": options["rollbackOnError"], "runTestsEnabled": False,
        "startDate": started, "status": status, "success": status != "Failed"})
    body = f"{leaf('done', False)}{leaf('id', deploy_id)}{leaf('state', 'Queued')}"
    return Started(f"<deployResponse><result>{body}</result></deployResponse>", options["checkOnly"])


def _retrieved(ctx: OrgContext, successes: list[dict[str, Any]]) -> dict[str, Any]:
    """``performRetrieve``: "a retrieve() call is performed immediately after the deploy() process completes",
    of what was deployed, and its RetrieveResult travels in the DeployResult's details [D DeployOptions,
    DeployDetails.retrieveResult]. Deleted components are not retrieved."""
    wanted: dict[str, list[str]] = {}
    for message in successes:
        if message["componentType"] and not message["deleted"]:
            wanted.setdefault(message["componentType"], []).append(message["fullName"])
    components, messages = _picked(ctx, wanted, "package.xml")
    admin = ctx.admin()
    return {"done": True, "fileProperties": [metadata.file_properties(c, admin, "") for c in components]
            + [_package_properties(admin, "")], "messages": messages, "status": "Succeeded", "success": True,
            "zipFile": _zip(_files(ctx, components, "", ""))}


def _retrieve_result_xml(result: dict[str, Any]) -> str:
    fields = [leaf("done", result["done"])]
    fields += [f"<fileProperties>{_leaves(p)}</fileProperties>" for p in result["fileProperties"]]
    fields += [f"<messages>{_leaves(m)}</messages>" for m in result["messages"]]
    fields += [leaf("status", result["status"]), leaf("success", result["success"]), leaf("zipFile", result["zipFile"])]
    return f"<retrieveResult>{''.join(fields)}</retrieveResult>"


def _deploy_message(message: dict[str, Any]) -> str:
    return "".join(leaf(name, value) for name, value in message.items() if value != "")


def check_status(ctx: OrgContext, operation: Element) -> str:
    """``checkDeployStatus``: the finished DeployResult (component details only if includeDetails)."""
    deploy_id = child_text(operation, "asyncProcessId") or ""
    result = ctx.store.deploy(deploy_id) if deploy_id.startswith(DEPLOY_PREFIX) else None
    if result is None:  # [U] the fault's wording
        raise api_fault("INVALID_ID_FIELD", f"invalid deploy id: {deploy_id}")
    details = result["details"]
    inner = ""
    if as_bool(child_text(operation, "includeDetails")):
        inner = "".join(f"<componentFailures>{_deploy_message(m)}</componentFailures>"
                        for m in details["componentFailures"])
        inner += "".join(f"<componentSuccesses>{_deploy_message(m)}</componentSuccesses>"
                         for m in details["componentSuccesses"])
        inner += _retrieve_result_xml(details["retrieveResult"]) if details.get("retrieveResult") else ""
    fields = "".join(f"<details>{inner}</details>" if name == "details" else leaf(name, value)
                     for name, value in result.items())
    return f"<result>{fields}</result>"


# --- retrieve -------------------------------------------------------------------------------------

def _wanted(request: Element | None) -> dict[str, list[str]]:
    """The members the request's ``unpackaged`` manifest names, per type, in its order."""
    wanted: dict[str, list[str]] = {}
    for types in children(child(request, "unpackaged"), "types"):
        members = [(m.text or "").strip() for m in children(types, "members")]
        wanted.setdefault(child_text(types, "name") or "", []).extend(m for m in members if m)
    return wanted


def _not_found(type_name: str, member: str, manifest: str) -> dict[str, str]:
    """A RetrieveMessage for a member the org does not have: the retrieve still succeeds [O, real CLI
    output]."""
    return {"fileName": manifest, "problem": f"Entity of type '{type_name}' named '{member}' cannot be found"}


def _picked(ctx: OrgContext, wanted: dict[str, list[str]], manifest: str,
            ) -> tuple[list[Component], list[dict[str, str]]]:
    """The components ``wanted`` names (``*``: all of a type), and a message for each one missing.

    Members of types the local org does not emulate are missing too; a ``*`` of such a type finds none.
    """
    found: dict[tuple[str, str], Component] = {}
    messages = []
    for type_name, members in wanted.items():
        if "*" in members:
            for metadata_type in metadata.manifest_types(type_name):
                found |= {(c.type, c.full_name): c for c in metadata_type.all(ctx.store)}
        for member in (m for m in members if m != "*"):
            metadata_type = metadata.manifest_type(type_name, member)
            component = metadata_type.current(ctx.store, member) if metadata_type else None
            if component is None:
                messages.append(_not_found(type_name, member, manifest))
            else:
                found[(component.type, component.full_name)] = component
    return sorted(found.values(), key=lambda c: (c.type, c.full_name)), messages


def _package_xml(components: list[Component], version: str) -> bytes:
    """The package.xml of the zip: the members retrieved, by name, per type."""
    types: dict[str, list[str]] = {}
    for component in components:
        types.setdefault(metadata.type_named(component.type).manifest, []).append(component.full_name)
    return metadata_file("Package", {"types": [{"members": names, "name": [type_name]}
                                               for type_name, names in sorted(types.items())],
                                     "version": [version] if version else []})


def _zip(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


def _package_properties(admin: dict[str, Any], folder: str) -> dict[str, str]:
    """The FileProperties entry of package.xml itself, last: no id, made now by the caller [O, real CLI
    output]."""
    now = now_text()
    return {"createdById": admin["Id"], "createdByName": admin["Name"], "createdDate": now,
            "fileName": f"{folder}package.xml", "fullName": f"{folder}package.xml", "id": "",
            "lastModifiedById": admin["Id"], "lastModifiedByName": admin["Name"], "lastModifiedDate": now,
            "manageableState": "unmanaged", "type": "Package"}


def _package_messages(request: Element | None) -> list[dict[str, str]]:
    """The local org holds no packages: each ``packageNames`` entry is not found ([U] wording)."""
    names = [(p.text or "").strip() for p in children(request, "packageNames")]
    return [{"fileName": f"{name}/package.xml", "problem": f"No package named '{name}' found"}
            for name in names if name]


def _files(ctx: OrgContext, components: list[Component], folder: str, version: str) -> dict[str, bytes]:
    """The zip's files: package.xml and one file per component, as readMetadata would answer it."""
    files = {f"{folder}package.xml": _package_xml(components, version)}
    for component in components:
        metadata_type = metadata.type_named(component.type)
        node = metadata_type.read(ctx.store, component)
        files[folder + metadata_type.file_name(component.full_name)] = metadata_file(component.type, node)
    return files


def retrieve(ctx: OrgContext, operation: Element) -> str:
    """``retrieve``: the RetrieveResult is made now and kept; the answer is its AsyncResult (Queued).

    The request element is ``retrieveRequest`` in the WSDL and from simple-salesforce, ``request`` from
    jsforce (the Salesforce CLI) [V]: the first child is taken, whatever its name.
    """
    request = next(iter(operation), None)
    folder = "" if as_bool(child_text(request, "singlePackage")) else "unpackaged/"
    components, messages = _picked(ctx, _wanted(request), f"{folder}package.xml")
    version = child_text(child(request, "unpackaged"), "version") or child_text(request, "apiVersion") or ""
    admin = ctx.admin()
    retrieve_id = ids.to_18(RETRIEVE_PREFIX + ctx.store.new_id("DeployRequest")[3:15])
    ctx.store.save_deploy(retrieve_id, {
        "done": True, "id": retrieve_id, "status": "Succeeded", "success": True,
        "fileProperties": [metadata.file_properties(c, admin, folder) for c in components]
        + [_package_properties(admin, folder)],
        "messages": messages + _package_messages(request),
        "zipFile": _zip(_files(ctx, components, folder, version))})
    return f"<result>{leaf('done', False)}{leaf('id', retrieve_id)}{leaf('state', 'Queued')}</result>"


def _leaves(values: dict[str, Any]) -> str:
    return "".join(leaf(name, value) for name, value in values.items())


def check_retrieve_status(ctx: OrgContext, operation: Element) -> str:
    """``checkRetrieveStatus``: the RetrieveResult; the zip (``includeZip``, default true [D]) only once.

    [D] "After the zip file is retrieved, it is deleted from the server": asking for it again is a
    fault ([U] wording). Asking with ``includeZip`` false leaves it there. The id comes as
    ``asyncProcessId`` (the WSDL, jsforce, simple-salesforce) or ``id`` (Salesforce Inspector) [V].
    """
    retrieve_id = child_text(operation, "asyncProcessId") or child_text(operation, "id") or ""
    result = ctx.store.deploy(retrieve_id) if retrieve_id.startswith(RETRIEVE_PREFIX) else None
    if result is None:  # [U] wording
        raise api_fault("INVALID_ID_FIELD", f"invalid retrieve id: {retrieve_id}")
    include_zip = as_bool(child_text(operation, "includeZip"), default=True)
    if include_zip and result["zipFile"] is None:
        raise api_fault("INVALID_ID_FIELD", "Retrieve result has been deleted.")
    fields = [leaf("done", result["done"])]
    fields += [f"<fileProperties>{_leaves(p)}</fileProperties>" for p in result["fileProperties"]]
    fields += [leaf("id", result["id"])]
    fields += [f"<messages>{_leaves(m)}</messages>" for m in result["messages"]]
    fields += [leaf("status", result["status"]), leaf("success", result["success"])]
    if include_zip:
        fields.append(leaf("zipFile", result["zipFile"]))
        ctx.store.save_deploy(retrieve_id, {**result, "zipFile": None})
    return f"<result>{''.join(fields)}</result>"
