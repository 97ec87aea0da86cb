"""A scratch org definition's ``settings`` deployed to the new scratch org, as the Salesforce CLI deploys them: a zip
of ``shape_<ms>/package.xml`` and ``shape_<ms>/settings/<X>.settings`` files, through simple-salesforce's deploy
and checkDeployStatus; Salesforce's refusals of an unknown settings type or field; the org keeps what it got."""

from __future__ import annotations

import base64
import io
import os
import zipfile
from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce
from zeep.helpers import serialize_object

from runbook.localorg import LocalOrg
from runbook.localorg.api.soapxml import METADATA_NS
from runbook.localorg.model import ids

from ..conftest import soap_login
from ..scratch_support import DevHub, jwt_token, make_dev_hub
from ..support import bearer

SHAPE = "shape_1796125096155"  # the CLI's folder: shape_<Date.now()>


@pytest.fixture(scope="module")
def hub(tmp_path_factory, keys) -> Iterator[DevHub]:
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("hub")) as org:
        os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
        yield make_dev_hub(org, soap_login(org), keys)
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="module")
def scratch(hub) -> tuple[LocalOrg, Salesforce]:
    """A scratch org the hub signed up, and simple-salesforce logged in to it as its admin (the hub app's JWT)."""
    record = hub.create()
    assert record["Status"] == "Active", record
    token = jwt_token(record["LoginUrl"], hub.org.ca_bundle, hub.keys, iss=hub.consumer_key,
                      sub=record["SignupUsername"]).json()["access_token"]
    org = hub.org.scratch_orgs.running()[ids.to_18(record["ScratchOrg"])]
    return org, Salesforce(instance_url=record["LoginUrl"], session_id=token, version="66.0")


def settings_zip(settings: dict[str, str], *, members: list[str] | None = None) -> io.BytesIO:
    """The CLI's zip: a package.xml with the namespace, settings files without one, and the folders' own entries."""
    listed = "".join(f"<members>{m}</members>" for m in (members if members is not None else list(settings)))
    package = (f'<?xml version="1.0" encoding="UTF-8"?><Package xmlns="{METADATA_NS}"><types>{listed}'
               "<name>Settings</name></types><version>66.0</version></Package>")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{SHAPE}/", "")
        archive.writestr(f"{SHAPE}/settings/", "")
        for member, xml in settings.items():
            archive.writestr(f"{SHAPE}/settings/{member}.settings", xml)
        archive.writestr(f"{SHAPE}/package.xml", package)
    buffer.seek(0)
    return buffer


def settings_file(type_name: str, body: str, *, xmlns: bool = False) -> str:
    namespace = f' xmlns="{METADATA_NS}"' if xmlns else ""
    return f"<?xml version='1.0'?>\n<{type_name}{namespace}>{body}</{type_name}>"


def deployed(sf: Salesforce, archive: io.BytesIO) -> dict:
    started = sf.deploy(archive, sandbox=False)
    assert started["state"] == "Queued"
    return sf.checkDeployStatus(started["asyncId"])


LIGHTNING = {"LightningExperience": settings_file(
    "LightningExperienceSettings", "<enableS1DesktopEnabled>true</enableS1DesktopEnabled>")}


def test_the_clis_settings_zip_deploys_to_the_scratch_org_and_the_org_keeps_the_settings(scratch):
    org, sf = scratch
    security = settings_file("SecuritySettings", "<passwordPolicies><minimumPasswordLength>10</minimumPasswordLength>"
                             "<complexity>SpecialCharacters</complexity></passwordPolicies>"
                             "<sessionSettings><sessionTimeout>TwelveHours</sessionTimeout></sessionSettings>")
    status = deployed(sf, settings_zip({**LIGHTNING, "Security": security}))
    assert status["state"] == "Succeeded", status
    assert status["deployment_detail"]["deployed_count"] == "2"
    read = serialize_object(sf.mdapi.LightningExperienceSettings.read(["LightningExperience"]))
    assert read["fullName"] == "LightningExperience" and read["enableS1DesktopEnabled"] is True
    stored = org.store.component("SecuritySettings", "Security").definition
    assert stored == {"passwordPolicies": [{"minimumPasswordLength": ["10"], "complexity": ["SpecialCharacters"]}],
                      "sessionSettings": [{"sessionTimeout": ["TwelveHours"]}]}


def test_a_later_settings_deploy_changes_only_the_fields_it_names(scratch):
    org, sf = scratch
    first = settings_file("MobileSettings", "<enableS1EncryptedStoragePref2>false</enableS1EncryptedStoragePref2>")
    assert deployed(sf, settings_zip({"Mobile": first}))["state"] == "Succeeded"
    second = settings_file("MobileSettings", "<enableOfflineDraftsEnabled>true</enableOfflineDraftsEnabled>",
                           xmlns=True)
    assert deployed(sf, settings_zip({"Mobile": second}))["state"] == "Succeeded"
    assert org.store.component("MobileSettings", "Mobile").definition == {
        "enableS1EncryptedStoragePref2": ["false"], "enableOfflineDraftsEnabled": ["true"]}


@pytest.mark.parametrize("member", ["True", "lightningExperience", "Nope"])
def test_a_settings_file_of_no_settings_type_fails_the_deploy_and_nothing_is_kept(scratch, member):
    org, sf = scratch
    unknown = {member: settings_file(f"{member}Settings", "<enableX>true</enableX>")}
    status = deployed(sf, settings_zip({**unknown, "Chatter": settings_file(
        "ChatterSettings", "<enableChatter>true</enableChatter>")}))
    assert status["state"] == "Failed"
    assert [e["message"] for e in status["deployment_detail"]["errors"]] == [
        f"settings/{member}.settings is not a valid metadata object. Check the name and casing of the file."]
    assert org.store.component("ChatterSettings", "Chatter") is None  # rolled back with the failure


@pytest.mark.parametrize(("body", "xmlns", "problem"), [
    ("<enableNope>true</enableNope>", False,
     "Element {}enableNope invalid at this location in type LightningExperienceSettings"),
    ("<enableNope>true</enableNope>", True,
     f"Element {{{METADATA_NS}}}enableNope invalid at this location in type LightningExperienceSettings"),
    ("<enableS1DesktopEnabled>yes</enableS1DesktopEnabled>", False,
     "'yes' is not a valid value for the type xsd:boolean"),
])
def test_a_field_the_settings_type_lacks_fails_with_salesforces_parse_error(scratch, body, xmlns, problem):
    _org, sf = scratch
    status = deployed(sf, settings_zip({"LightningExperience": settings_file("LightningExperienceSettings", body,
                                                                             xmlns=xmlns)}))
    assert status["state"] == "Failed"
    [error] = status["deployment_detail"]["errors"]
    assert error["message"] == f"Error parsing file: {problem}"
    assert error["type"] == "LightningExperienceSettings"
    assert error["file"] == f"{SHAPE}/settings/LightningExperience.settings"  # the path in the zip


def test_nested_types_and_enums_are_checked_by_their_own_types(scratch):
    _org, sf = scratch
    nested = settings_file("SecuritySettings", "<passwordPolicies><filetype>x</filetype></passwordPolicies>")
    enum = settings_file("SecuritySettings", "<passwordPolicies><complexity>Hard</complexity></passwordPolicies>")
    messages = [deployed(sf, settings_zip({"Security": xml}))["deployment_detail"]["errors"][0]["message"]
                for xml in (nested, enum)]
    assert messages == ["Error parsing file: Element {}filetype invalid at this location in type PasswordPolicies",
                        "Error parsing file: 'Hard' is not a valid value for the enum 'Complexity'"]


def test_a_listed_settings_member_without_its_file_fails_as_any_missing_component(scratch):
    _org, sf = scratch
    status = deployed(sf, settings_zip(LIGHTNING, members=["LightningExperience", "Chatter"]))
    assert status["state"] == "Failed"
    assert [e["message"] for e in status["deployment_detail"]["errors"]] == [
        "An object 'Chatter' of type Settings was named in package.xml, but was not found in zipped directory"]


def test_settings_crud_saves_the_same_and_refuses_an_unknown_field_as_the_parser_does(scratch):
    org, sf = scratch
    md = sf.mdapi
    md.EmailAdministrationSettings.upsert([md.EmailAdministrationSettings(
        fullName="EmailAdministration", enableEnhancedEmailEnabled=True)])
    assert org.store.component("EmailAdministrationSettings", "EmailAdministration").definition == {
        "enableEnhancedEmailEnabled": ["true"]}
    envelope = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                f'xmlns:met="{METADATA_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Header>'
                f"<met:SessionHeader><met:sessionId>{sf.session_id}</met:sessionId></met:SessionHeader>"
                '</soapenv:Header><soapenv:Body><met:upsertMetadata><met:metadata xsi:type="met:ChatterSettings">'
                "<met:fullName>Chatter</met:fullName><met:enableNope>true</met:enableNope></met:metadata>"
                "</met:upsertMetadata></soapenv:Body></soapenv:Envelope>")
    response = requests.post(f"{sf.base_url.split('/services')[0]}/services/Soap/m/66.0", data=envelope,
                             headers={"Content-Type": "text/xml", "SOAPAction": '""'}, verify=org.ca_bundle,
                             timeout=10)
    assert response.status_code == 500
    assert (f"<faultstring>Element {{{METADATA_NS}}}enableNope invalid at this location in type ChatterSettings"
            "</faultstring>") in response.text
    assert org.store.component("ChatterSettings", "Chatter") is None


def test_the_clis_source_member_query_answers_no_rows_on_the_tooling_api_only(scratch):
    org, sf = scratch
    soql = "SELECT Id FROM SourceMember WHERE RevisionCounter > 0"
    assert sf.restful("tooling/query", params={"q": soql})["records"] == []
    data_api = requests.get(f"{org.url}/services/data/v66.0/query", params={"q": soql}, headers=bearer(sf.session_id),
                            verify=org.ca_bundle, timeout=10)
    assert data_api.status_code == 400 and data_api.json()[0]["errorCode"] == "INVALID_TYPE"


def test_a_retrieve_of_settings_answers_what_the_org_got(scratch):
    org, sf = scratch
    assert deployed(sf, settings_zip(LIGHTNING))["state"] == "Succeeded"
    envelope = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header>'
                f'<SessionHeader xmlns="{METADATA_NS}"><sessionId>{sf.session_id}</sessionId></SessionHeader>'
                f'</soapenv:Header><soapenv:Body xmlns="{METADATA_NS}">{{}}</soapenv:Body></soapenv:Envelope>')

    def call(body: str) -> str:
        response = requests.post(f"{org.url}/services/Soap/m/66.0", data=envelope.format(body), verify=org.ca_bundle,
                                 headers={"Content-Type": "text/xml", "SOAPAction": '""'}, timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    started = call("<retrieve><request><apiVersion>66.0</apiVersion><singlePackage>true</singlePackage><unpackaged>"
                   "<types><members>LightningExperience</members><name>Settings</name></types></unpackaged>"
                   "</request></retrieve>")
    retrieve_id = started.split("<id>")[1].split("</id>")[0]
    answer = call(f"<checkRetrieveStatus><asyncProcessId>{retrieve_id}</asyncProcessId></checkRetrieveStatus>")
    encoded = answer.split("<zipFile>")[1].split("</zipFile>")[0]
    files = zipfile.ZipFile(io.BytesIO(base64.b64decode(encoded)))
    assert sorted(files.namelist()) == ["package.xml", "settings/LightningExperience.settings"]
    text = files.read("settings/LightningExperience.settings").decode()
    assert f'<LightningExperienceSettings xmlns="{METADATA_NS}">' in text
    assert "<enableS1DesktopEnabled>true</enableS1DesktopEnabled>" in text
    assert "<members>LightningExperience</members><name>Settings</name>" in files.read("package.xml").decode() \
        .replace("\n", "").replace(" ", "")
