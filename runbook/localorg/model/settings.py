"""The Settings metadata types besides ExternalClientAppSettings (``org_settings``): LightningExperienceSettings,
SecuritySettings and every other ``<X>Settings``, as a scratch org definition's ``settings`` deploys them.

Which types exist and what each one holds comes from the Metadata API's WSDL [V simple-salesforce's
``metadata.wsdl``, "Metadata API version 63.0"]: a settings type is a complexType named ``<X>Settings`` that
extends ``Metadata``; its fields are its sequence's elements, nested types read the same way. A type added after
63.0 is unknown here [U].

- A deploy lists a settings component under the package.xml type ``Settings`` by member and holds it as
  ``settings/<member>.settings``, its root element the type, with or without the metadata namespace: the
  Salesforce CLI writes ``<LightningExperienceSettings>`` with none, member ``LightningExperience`` (the
  definition's key, first letter upper-cased, "Settings" taken out) [V sfdx-core scratchOrgSettingsGenerator].
  Member names are case-sensitive: ``lightningExperience`` is no type [U; O the error's "casing" hint].
- A listed file of no settings type fails the deploy: "settings/True.settings is not a valid metadata object.
  Check the name and casing of the file." [O sfdx-core#519, quoting a real org's deploy status].
- A field the type does not have fails the file: "Error parsing file: Element {}filetype invalid at this location
  in type FileTypeDispositionAssignmentBean" [O forcedotcom/cli#498; the braces hold the element's namespace,
  empty in the CLI's files; nested types are named by their own type]. A boolean, number or enum field with a
  value its type does not have fails too ([U] the wording). Element order is not checked: definitions list
  fields in any order and deploy [O].
- A save changes only the fields it names [U, as ``org_settings``]; the org keeps what it got, one metadata
  component per type (fullName the member), which readMetadata, listMetadata and retrieve answer. A component
  never saved reads as its fullName alone [U: a real org answers its current values]. createMetadata,
  updateMetadata and upsertMetadata save the same way (an unknown field in them is the same text as a
  soapenv:Client fault [U]); a delete is refused [U].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import defusedxml.ElementTree

from runbook.localorg.model import org_settings
from runbook.localorg.model.components import MetadataType, SaveError
from runbook.localorg.model.store import Component, Node, Store, now_text

SUFFIX = "Settings"
_XSD = "{http://www.w3.org/2001/XMLSchema}"
_BOOLEANS = ("true", "false", "1", "0")  # xsd:boolean, in any letter case as simple-salesforce writes "True" [V]


@dataclass(frozen=True)
class _Schema:
    """The WSDL's complex types (element name -> type, bases included), enums, and which types are settings."""

    fields: dict[str, dict[str, str]]
    enums: dict[str, frozenset[str]]
    settings: frozenset[str]


@cache
def _schema() -> _Schema:
    root = defusedxml.ElementTree.parse(str(resources.files("simple_salesforce") / "metadata.wsdl")).getroot()
    own: dict[str, dict[str, str]] = {}
    bases: dict[str, str] = {}
    for complex_type in root.iter(f"{_XSD}complexType"):
        name = complex_type.get("name")
        if not name:
            continue
        extension = complex_type.find(f"{_XSD}complexContent/{_XSD}extension")
        if extension is not None:
            bases[name] = _local(extension.get("base", ""))
        own[name] = {e.get("name", ""): e.get("type", "xsd:string")
                     for e in (extension if extension is not None else complex_type).iter(f"{_XSD}element")}
    enums = {t.get("name", ""): frozenset(e.get("value", "") for e in t.iter(f"{_XSD}enumeration"))
             for t in root.iter(f"{_XSD}simpleType")}

    def fields(name: str) -> dict[str, str]:
        return {**(fields(bases[name]) if name in bases else {}), **own.get(name, {})}

    settings = frozenset(n for n in own if n.endswith(SUFFIX) and bases.get(n) == "Metadata")
    return _Schema({name: fields(name) for name in own}, {n: v for n, v in enums.items() if v}, settings)


def _local(qualified: str) -> str:
    return qualified.rsplit(":", 1)[-1]


def names() -> list[str]:
    """Every settings type this module serves, by name."""
    return sorted(_schema().settings - {org_settings.TYPE})


# --- checking a component -----------------------------------------------------------------------------

def problem(type_name: str, node: Node, namespace: str) -> str | None:
    """What is wrong with ``node`` as a ``type_name`` (its first problem, in Salesforce's words), or None.

    ``namespace`` is the elements' namespace ("" in the CLI's files), which the message shows.
    """
    schema = _schema()
    fields = schema.fields.get(type_name, {})
    for name, values in node.items():
        field_type = fields.get(name)
        if field_type is None:
            return f"Element {{{namespace}}}{name} invalid at this location in type {type_name}"
        for value in values:
            found = _value_problem(schema, field_type, value, namespace)
            if found:
                return found
    return None


def _value_problem(schema: _Schema, field_type: str, value: str | Node, namespace: str) -> str | None:
    kind = _local(field_type)
    if kind in schema.fields:  # a nested type: its elements, or nothing at all
        return problem(kind, value, namespace) if isinstance(value, dict) else None
    if isinstance(value, dict):  # elements inside a field that holds a value
        return f"Element {{{namespace}}}{next(iter(value), '')} invalid at this location in type {kind}"
    valid = {"boolean": lambda v: v.lower() in _BOOLEANS, "int": _is_int, "long": _is_int, "double": _is_number}
    if field_type.startswith("xsd:") and kind in valid and not valid[kind](value):
        return f"'{value}' is not a valid value for the type {field_type}"
    if kind in schema.enums and value not in schema.enums[kind]:
        return f"'{value}' is not a valid value for the enum '{kind}'"
    return None


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- the types ------------------------------------------------------------------------------------------

@cache
def metadata_type(type_name: str) -> MetadataType | None:
    """The MetadataType of the settings type ``type_name`` ("LightningExperienceSettings"), or None."""
    if type_name not in names():
        return None
    member = type_name.removesuffix(SUFFIX)

    def lookup(store: Store, full_name: str) -> Component | None:
        if full_name != member:
            return None
        stamp = now_text()
        return store.component(type_name, member) or Component(type_name, member, {}, created_date=stamp,
                                                               last_modified_date=stamp)

    def update(store: Store, current: Component, definition: Node) -> None:
        stored = store.component(type_name, member)
        changes = {name: values for name, values in definition.items() if name != "fullName"}
        store.save_component(Component(type_name, member, {**current.definition, **changes},
                                       created_date=stored.created_date if stored else ""))

    def create(store: Store, full_name: str, definition: Node) -> None:  # unused: the component always exists
        update(store, lookup(store, full_name), definition)

    def delete(store: Store, current: Component) -> None:
        raise SaveError("INVALID_OPERATION", f"{type_name} {member} cannot be deleted")  # [U]

    def read(store: Store, current: Component) -> Node:
        return {"fullName": [current.full_name], **current.definition}

    return MetadataType(type_name, "settings", "settings", create, update, delete, read, rank=0,
                        manifest_name="Settings", lookup=lookup, listing=lambda store: store.components(type_name),
                        check=lambda node, namespace: problem(type_name, node, namespace))
