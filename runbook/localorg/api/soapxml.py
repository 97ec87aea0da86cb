"""SOAP envelopes in and out: safe parsing, component trees, responses and faults.

Requests are parsed with defusedxml with DTDs forbidden, so an entity-expansion bomb is refused at
its DOCTYPE, before any expansion. Before parsing, a body with more than ``MAX_TAGS`` markup characters
(``<``) is refused at once with 413 (a 31 MB body of empty elements cost 11 s of CPU to parse, with no
session needed); after it, one nested deeper than ``MAX_DEPTH`` is refused as malformed, before the
recursive readers below meet it. Real requests are far inside both: a deploy carries its zip as one
base64 element, a CRUD call a few hundred elements 10 deep [U Salesforce's own limits].

Element names are matched by local name, so any prefix works
(zeep's ``soap-env``/``ns0``, simple-salesforce's ``soapenv``/``met``/``env``/``n1``). Responses
use unprefixed elements in a default namespace: simple-salesforce's login reads ``sessionId`` by
literal tag name, and zeep resolves ``xsi:type="ConnectedApp"`` against the default namespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree
from defusedxml import DefusedXmlException

from runbook.localorg.model.store import Node

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
METADATA_NS = "http://soap.sforce.com/2006/04/metadata"
PARTNER_NS = "urn:partner.soap.sforce.com"
PARTNER_FAULT_NS = "urn:fault.partner.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_TYPE = f"{{{XSI}}}type"
_XSI_NIL = f"{{{XSI}}}nil"
# Booleans by name (isAdminApproved, shouldRotateConsumerKey ...): simple-salesforce's hand-built XML
# writes Python's True/False, which zeep would read back as false.
_BOOLEAN_NAME = re.compile(r"(is|should|has|enable|allow)[A-Z]")
MAX_TAGS = 50_000  # "<" in a request body: start and end tags, comments, processing instructions
MAX_DEPTH = 64  # element nesting, the envelope's included


class SoapFault(Exception):
    """A SOAP fault to answer with (HTTP 500 unless ``status`` says otherwise)."""

    def __init__(self, code: str, message: str, *, detail: str = "", fault_ns: str = METADATA_NS,
                 status: int = 500) -> None:
        super().__init__(message)
        self.code, self.message, self.detail = code, message, detail
        self.fault_ns, self.status = fault_ns, status


@dataclass(frozen=True)
class Envelope:
    header: Element | None
    operation: Element  # the first element inside soap Body

    @property
    def name(self) -> str:
        return local(self.operation.tag)


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def namespace(tag: str) -> str:
    """The namespace of an element's ``tag`` ("" for none)."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def children(element: Element | None, name: str) -> list[Element]:
    return [c for c in (element if element is not None else []) if local(c.tag) == name]


def child(element: Element | None, name: str) -> Element | None:
    found = children(element, name)
    return found[0] if found else None


def child_text(element: Element | None, name: str) -> str | None:
    found = child(element, name)
    return None if found is None else (found.text or "").strip()


def xsi_type(element: Element) -> str:
    """The type named by ``xsi:type``, without its prefix ("ns0:ConnectedApp" -> "ConnectedApp")."""
    return element.get(_XSI_TYPE, "").rsplit(":", 1)[-1]


def parse_xml(data: bytes) -> Element:
    """A parsed XML document; raises SoapFault(soapenv:Client) for malformed XML, DTDs and entities, and for
    more than MAX_TAGS tags (413, before parsing) or nesting deeper than MAX_DEPTH."""
    if data.count(b"<") > MAX_TAGS:
        raise SoapFault("soapenv:Client", f"The request has more than {MAX_TAGS} XML tags; this org reads at most "
                        f"{MAX_TAGS}.", status=413)
    try:
        root = defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
    except (DefusedXmlException, ParseError, ValueError) as exc:
        raise SoapFault("soapenv:Client",
                        f"Could not parse the request: {type(exc).__name__}: {exc}") from None
    if _depth(root) > MAX_DEPTH:
        raise SoapFault("soapenv:Client", f"Could not parse the request: elements nested deeper than {MAX_DEPTH}")
    return root


def _depth(root: Element) -> int:
    """How deep ``root``'s elements nest (1 for a lone element), without recursion."""
    deepest, level = 0, [(root, 1)]
    while level:
        element, depth = level.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:  # no need to walk further down a tree already too deep
            level.extend((child, depth + 1) for child in element)
    return deepest


def parse_envelope(data: bytes) -> Envelope:
    root = parse_xml(data)
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapFault("soapenv:Client", "The request is not a SOAP 1.1 Envelope")
    body = child(root, "Body")
    operation = next(iter(body), None) if body is not None else None
    if operation is None:
        raise SoapFault("soapenv:Client", "The SOAP Body is empty")
    return Envelope(child(root, "Header"), operation)


def to_node(element: Element) -> Node:
    """The element's children as a component tree; mixed-in text such as a stray ``None`` is ignored."""
    node: Node = {}
    for item in element:
        if not isinstance(item.tag, str) or item.get(_XSI_NIL) == "true":
            continue
        name = local(item.tag)
        if len(item):
            value: object = to_node(item)
        else:
            value = (item.text or "").strip()
            if _BOOLEAN_NAME.match(name) and value in ("True", "False"):
                value = value.lower()
        node.setdefault(name, []).append(value)
    return node


def _order(name: str) -> tuple[bool, str]:
    return (name != "fullName", name.lower())


def node_xml(tag: str, node: Node, attributes: str = "") -> str:
    """``node`` as ``<tag>``, children in XSD order (fullName first, then alphabetical)."""
    inner = []
    for name in sorted(node, key=_order):
        for value in node[name]:
            inner.append(node_xml(name, value) if isinstance(value, dict) else leaf(name, value))
    return f"<{tag}{attributes}>{''.join(inner)}</{tag}>"


def metadata_file(root: str, node: Node) -> bytes:
    """``node`` as a file in a retrieve zip: ``<root xmlns=...>``, no fullName (the file is named after it),
    children in XSD order, indented four spaces as Salesforce's files are [O]."""
    body = _file_lines({name: values for name, values in node.items() if name != "fullName"}, 1)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<{root} xmlns="{METADATA_NS}">', *body, f"</{root}>"]
    return ("\n".join(lines) + "\n").encode()


def _file_lines(node: Node, depth: int) -> list[str]:
    pad, out = "    " * depth, []
    for name in sorted(node, key=_order):
        for value in node[name]:
            if isinstance(value, dict):
                out += [f"{pad}<{name}>", *_file_lines(value, depth + 1), f"{pad}</{name}>"]
            else:
                out.append(pad + leaf(name, value))
    return out


def leaf(name: str, value: object) -> str:
    if value is None:
        return f'<{name} xsi:nil="true"/>'
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def type_attribute(type_name: str) -> str:
    return f" xsi:type={quoteattr(type_name)}"


def envelope(body: str, default_ns: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns="{default_ns}" xmlns:xsi="{XSI}">'
            f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>").encode()


def fault_body(fault: SoapFault) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:sf="{fault.fault_ns}" xmlns:xsi="{XSI}">'
            f"<soapenv:Body><soapenv:Fault><faultcode>{escape(fault.code)}</faultcode>"
            f"<faultstring>{escape(fault.message)}</faultstring>{fault.detail}</soapenv:Fault>"
            "</soapenv:Body></soapenv:Envelope>").encode()


def api_fault(code: str, message: str, *, fault_ns: str = METADATA_NS, kind: str = "UnexpectedErrorFault",
              prefixed: bool = True) -> SoapFault:
    """Salesforce's API fault: faultcode ``sf:CODE``, faultstring ``CODE: message``, exceptionCode detail."""
    detail = (f'<detail><sf:{kind} xsi:type="sf:{kind}"><sf:exceptionCode>{escape(code)}</sf:exceptionCode>'
              f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:{kind}></detail>")
    return SoapFault(f"sf:{code}" if prefixed else code, f"{code}: {message}", detail=detail,
                     fault_ns=fault_ns)
