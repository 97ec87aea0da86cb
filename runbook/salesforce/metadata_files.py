"""File-based Metadata API: deploy components as one zip, retrieve them back as dicts.

Every public tool deploys External Client Apps this way (sfdx-hardis in one deploy, Electivus in
checked stages) [V real-orgs-2026.md §3], so the runbook does too: a deploy is all-or-none and can be
checked first (``check_only``). Deploys are declarative: a component is sent whole, since a field left
out is cleared (a Global OAuth settings file without ``<certificate>`` drops the certificate).

Components are plain dicts, as ``runbook.salesforce.metadata`` reads them; the XML is written in XSD order,
which for these types is alphabetical [V wire facts §1.3], and ``fullName`` is the file's name.

Every call (deploy, checkDeployStatus, retrieve, checkRetrieveStatus) goes through the session's
``RetryingSession`` and so has its timeout (``runbook.salesforce.retry.http_timeout``); checkDeployStatus and the
retrieve's start are reads, asked again on a lost answer; a deploy is not, nor checkRetrieveStatus (a
finished retrieve's zip is handed out once). A call that got no answer raises NO_ANSWER saying how long it
waited.
"""

from __future__ import annotations

import base64
import contextlib
import io
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import requests
from defusedxml.ElementTree import fromstring

from runbook.errors import NO_ANSWER, SalesforceError
from runbook.salesforce import OrgSession
from runbook.salesforce.metadata import metadata_client, no_answer_error
from runbook.salesforce.retry import no_answer

NS = "http://soap.sforce.com/2006/04/metadata"
Layout = dict[str, tuple[str, str]]  # type -> (folder, suffix) of its files in a metadata-format zip


@dataclass(frozen=True)
class Component:
    """One metadata component to deploy: its type, its fullName, its fields (no fullName inside), and its
    file's folder and suffix in a zip (the app kinds know them, from source-deploy-retrieve's registry)."""

    type: str
    full_name: str
    fields: dict[str, Any]
    folder: str
    suffix: str


def _value_xml(name: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_value_xml(name, item) for item in value)
    if isinstance(value, dict):
        inner = "".join(_value_xml(k, v) for k, v in sorted(value.items()) if v is not None)
        return f"<{name}>{inner}</{name}>"
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return f"<{name}>{escape(text)}</{name}>"


def component_xml(component: Component) -> str:
    """The component's file in metadata format."""
    body = "".join(_value_xml(k, v) for k, v in sorted(component.fields.items())
                   if v is not None and k != "fullName")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{component.type} xmlns="{NS}">{body}</{component.type}>\n'


def package_xml(members: dict[str, list[str]], api_version: str) -> str:
    types = "".join(f"<types>{''.join(f'<members>{escape(m)}</members>' for m in names)}<name>{t}</name></types>"
                    for t, names in members.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Package xmlns="{NS}">{types}'
            f"<version>{api_version}</version></Package>\n")


def deploy_zip(components: list[Component], api_version: str) -> bytes:
    """A zip holding package.xml and each component's file."""
    members: dict[str, list[str]] = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for component in components:
            archive.writestr(f"{component.folder}/{component.full_name}.{component.suffix}",
                             component_xml(component))
            members.setdefault(component.type, []).append(component.full_name)
        archive.writestr("package.xml", package_xml(members, api_version))
    return buffer.getvalue()


def destructive_zip(doomed: list[tuple[str, str]], api_version: str) -> bytes:
    """A zip deleting ``doomed`` (type, fullName): an empty package.xml and destructiveChanges.xml [D]."""
    members: dict[str, list[str]] = {}
    for type_name, full_name in doomed:
        members.setdefault(type_name, []).append(full_name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("package.xml", package_xml({}, api_version))
        archive.writestr("destructiveChanges.xml", package_xml(members, api_version))
    return buffer.getvalue()


def deploy(session: OrgSession, components: list[Component], *, check_only: bool = False,
           wait_seconds: float = 300, layout: Layout | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Deploy ``components`` in one all-or-none deploy (``check_only``: validate, save nothing).

    With ``layout``, the deploy also retrieves what it saved (``performRetrieve`` [D DeployOptions]), so the
    components come back as the org keeps them without a retrieve of their own; returns them as
    ``retrieve`` does ({} without ``layout``). Raises SalesforceError naming each refused component's
    problem, or NO_ANSWER when the deploy did not finish within ``wait_seconds``.
    """
    what = f"deploy {', '.join(f'{c.type} {c.full_name}' for c in components)}"
    result = _deploy(session, what, deploy_zip(components, session.api_version), check_only, wait_seconds,
                     perform_retrieve=layout is not None and not check_only)
    retrieved = result.find(f"{{{NS}}}details/{{{NS}}}retrieveResult")
    return _unzipped(retrieved, layout) if retrieved is not None and layout is not None else {}


def destroy(session: OrgSession, doomed: list[tuple[str, str]], *, wait_seconds: float = 300) -> None:
    """Delete ``doomed`` (type, fullName) in one all-or-none destructive deploy."""
    what = f"delete {', '.join(f'{t} {n}' for t, n in doomed)}"
    _deploy(session, what, destructive_zip(doomed, session.api_version), False, wait_seconds)


def _deploy(session: OrgSession, what: str, archive: bytes, check_only: bool, wait_seconds: float, *,
            perform_retrieve: bool = False) -> ET.Element:
    """Start the deploy and poll it to the end; the final DeployResult (with details) as XML."""
    with tempfile.TemporaryDirectory() as tmp, _answered(what):
        path = Path(tmp) / "deploy.zip"
        path.write_bytes(archive)
        started = session.sf.deploy(str(path), sandbox=False, checkOnly=check_only, rollbackOnError=True,
                                    performRetrieve=perform_retrieve)
    async_id = started["asyncId"] or ""
    deadline, pause = time.monotonic() + wait_seconds, 0.2
    result = check_deploy_status(session, async_id)
    while result.findtext(f"{{{NS}}}done") != "true" and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
        result = check_deploy_status(session, async_id)
    state = result.findtext(f"{{{NS}}}status") or ""
    if result.findtext(f"{{{NS}}}done") != "true":
        raise SalesforceError(what, NO_ANSWER, f"the deploy {async_id} is still {state} after {wait_seconds:.0f} s",
                              "check Setup > Deployment Status, then rerun")
    failures = result.findall(f"{{{NS}}}details/{{{NS}}}componentFailures")
    if state != "Succeeded" or failures:
        problems = [{"message": f.findtext(f"{{{NS}}}problem") or "", "file": f.findtext(f"{{{NS}}}fileName") or ""}
                    for f in failures]
        raise SalesforceError(what, "DEPLOY_FAILED", _problems(problems) or result.findtext(
            f"{{{NS}}}errorMessage") or state)
    return result


_CHECK = ('<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv='
          '"http://schemas.xmlsoap.org/soap/envelope/" xmlns:met="{ns}"><soapenv:Header><met:SessionHeader>'
          "<met:sessionId>{sid}</met:sessionId></met:SessionHeader></soapenv:Header><soapenv:Body>"
          "<met:checkDeployStatus><met:asyncProcessId>{id}</met:asyncProcessId>"
          "<met:includeDetails>true</met:includeDetails></met:checkDeployStatus></soapenv:Body></soapenv:Envelope>")


def check_deploy_status(session: OrgSession, async_id: str) -> ET.Element:
    """``checkDeployStatus`` with details, as the DeployResult element (the retrieveResult of a deploy made
    with performRetrieve included); an expired session is renewed once (a status read is safe to repeat)."""
    for attempt in (1, 2):
        body = _CHECK.format(ns=NS, sid=escape(session.access_token), id=escape(async_id))
        with _answered(f"checkDeployStatus {async_id}"):  # the session's timeout; a status read is asked again
            response = session.sf.session.post(f"{session.instance_url}/services/Soap/m/{session.api_version}",
                                               data=body.encode(), headers={"Content-Type": "text/xml",
                                                                            "SOAPAction": "checkDeployStatus"})
        if "INVALID_SESSION_ID" in response.text and attempt == 1:
            session.reauthenticate()
            continue
        try:
            result = fromstring(response.content).find(f".//{{{NS}}}result")
        except Exception:  # not XML: an outage page, a proxy
            result = None
        if response.status_code != 200 or result is None:
            raise SalesforceError(f"checkDeployStatus {async_id}", NO_ANSWER,
                                  f"the org answered HTTP {response.status_code} without a DeployResult")
        return result
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _answered(operation: str) -> Iterator[None]:
    """A call that got no answer (within the session's timeout, after its retries) as NO_ANSWER naming the wait."""
    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise no_answer_error(operation, f"the org did not answer: {no_answer(exc)}",
                              timeout=isinstance(exc, requests.Timeout)) from None


def _problems(errors: list[dict]) -> str:
    """Each distinct problem once, with the files it was reported for (a deploy repeats it per component)."""
    files: dict[str, list[str]] = {}
    for error in errors:
        files.setdefault(str(error.get("message") or "").strip(), []).append(str(error.get("file") or ""))
    return "; ".join(f"{message} ({', '.join(f for f in names if f)})" if any(names) else message
                     for message, names in files.items())


def _element_value(element: ET.Element) -> Any:
    children = list(element)
    if not children:
        text = (element.text or "").strip()
        return {"true": True, "false": False}.get(text, text)
    out: dict[str, Any] = {}
    for child in children:
        name = child.tag.split("}")[-1]
        value = _element_value(child)
        if name in out:
            out[name] = [*(out[name] if isinstance(out[name], list) else [out[name]]), value]
        else:
            out[name] = value
    return out


def parse_component(data: bytes) -> dict[str, Any]:
    """A component file → its fields as a dict (repeated elements as lists, booleans as bool)."""
    value = _element_value(fromstring(data))
    return value if isinstance(value, dict) else {}


def retrieve(session: OrgSession, members: dict[str, list[str]], layout: Layout, *,
             wait_seconds: float = 120) -> dict[tuple[str, str], dict[str, Any]]:
    """Retrieve ``members`` (type -> names or ``*``); each component found as (type, fullName) -> fields.

    ``layout`` says where each type's files are in the zip.

    A consumer secret in a retrieved file is dropped here: it is never kept or shown.
    """
    mdapi = metadata_client(session)
    what = f"retrieve {', '.join(members)}"
    with _answered(what):
        async_id, _state = mdapi.retrieve("", unpackaged=members, single_package=True)
    if not async_id:
        raise SalesforceError(what, NO_ANSWER, "the org gave no retrieve id")
    deadline, pause = time.monotonic() + wait_seconds, 0.2
    while True:
        with _answered(f"checkRetrieveStatus {async_id}"):
            result = mdapi.retrieve_retrieve_result(async_id, "true")
        status = result.findtext(f"{{{NS}}}status") or ""
        if status in ("Succeeded", "Failed") or result.findtext(f"{{{NS}}}done") == "true":
            break
        if time.monotonic() > deadline:
            raise SalesforceError(what, NO_ANSWER, f"the retrieve {async_id} is still {status} after "
                                  f"{wait_seconds:.0f} s", "rerun in a while")
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
    if status != "Succeeded":
        message = result.findtext(f"{{{NS}}}errorMessage") or status
        raise SalesforceError(what, result.findtext(f"{{{NS}}}errorStatusCode") or "RETRIEVE_FAILED", message)
    return _unzipped(result, layout)


def _unzipped(result: ET.Element, layout: Layout) -> dict[tuple[str, str], dict[str, Any]]:
    """The components in a RetrieveResult's zip, as (type, fullName) -> fields; a consumer secret is dropped."""
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(result.findtext(f"{{{NS}}}zipFile") or "")))
    by_layout = {(folder, suffix): type_name for type_name, (folder, suffix) in layout.items()}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in archive.namelist():
        folder, _, file_name = name.rpartition("/")
        full_name, _, suffix = file_name.rpartition(".")
        type_name = by_layout.get((folder.rsplit("/", 1)[-1], suffix))
        if type_name and full_name:
            fields = parse_component(archive.read(name))
            fields.pop("consumerSecret", None)
            found[(type_name, full_name)] = {"fullName": full_name, **fields}
    return found
