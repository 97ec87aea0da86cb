"""File-based retrieve and checkRetrieveStatus, sent as the Salesforce CLI and simple-salesforce send them.

The CLI's envelopes are the ones `sf project retrieve start -m ConnectedApp:<name>` (CLI 2.146.3,
jsforce 3) put on the wire against a served local org: ``<retrieve><request>`` without
``singlePackage``, then ``checkRetrieveStatus`` with only ``asyncProcessId``.
"""

from __future__ import annotations

import base64
import io
import zipfile
from xml.etree import ElementTree

import pytest
import requests

from ..support import create_connected_app, create_external_client_app, unique

MD = "{http://soap.sforce.com/2006/04/metadata}"
HEADER = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
          'soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/'
          'XMLSchema-instance"><soapenv:Header xmlns="http://soap.sforce.com/2006/04/metadata"><SessionHeader>'
          "<sessionId>{token}</sessionId></SessionHeader><CallOptions><client>sfdx toolbelt:</client>"
          '</CallOptions></soapenv:Header><soapenv:Body xmlns="http://soap.sforce.com/2006/04/metadata">')
FOOTER = "</soapenv:Body></soapenv:Envelope>"


def _call(org, token: str, body: str, version: str = "62.0") -> requests.Response:
    return requests.post(f"{org.url}/services/Soap/m/{version}", data=HEADER.format(token=token) + body + FOOTER,
                         headers={"Content-Type": "text/xml", "SOAPAction": '""'}, verify=org.ca_bundle,
                         timeout=10)


def _result(response: requests.Response) -> ElementTree.Element:
    assert response.status_code == 200, response.text
    return ElementTree.fromstring(response.content).find(f".//{MD}result")


def _retrieve(org, token: str, members: dict[str, list[str]], *, single_package: str = "") -> str:
    """The CLI's retrieve request; returns the AsyncResult's id after checking its shape."""
    types = "".join(f"<types>{''.join(f'<members>{m}</members>' for m in names)}<name>{kind}</name></types>"
                    for kind, names in members.items())
    single = f"<singlePackage>{single_package}</singlePackage>" if single_package else ""
    result = _result(_call(org, token, f"<retrieve><request><apiVersion>62.0</apiVersion><unpackaged>{types}"
                                       f"<version>62.0</version></unpackaged>{single}</request></retrieve>"))
    assert (result.findtext(f"{MD}done"), result.findtext(f"{MD}state")) == ("false", "Queued")
    return result.findtext(f"{MD}id")


def _check(org, token: str, retrieve_id: str, include_zip: str = "") -> requests.Response:
    include = f"<includeZip>{include_zip}</includeZip>" if include_zip else ""
    return _call(org, token, f"<checkRetrieveStatus><asyncProcessId>{retrieve_id}</asyncProcessId>{include}"
                             "</checkRetrieveStatus>")


def _files(result: ElementTree.Element) -> dict[str, str]:
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(result.findtext(f"{MD}zipFile"))))
    return {name: archive.read(name).decode() for name in archive.namelist()}


def _file_names(result: ElementTree.Element) -> set[str]:
    return {p.findtext(f"{MD}fileName") for p in result.findall(f"{MD}fileProperties")}


def test_cli_retrieve_answers_the_app_in_metadata_format_without_its_secret(org, sf, keys, admin_token):
    secret = "Ab1" + unique("Secret").replace("_", "")
    name = create_connected_app(sf, keys, scopes=("Api", "Profile", "Email", "OfflineAccess", "RefreshToken"),
                                consumerSecret=secret)
    retrieve_id = _retrieve(org, admin_token, {"ConnectedApp": [name]})
    assert retrieve_id.startswith("09S") and len(retrieve_id) == 18

    result = _result(_check(org, admin_token, retrieve_id))
    assert [result.findtext(f"{MD}{f}") for f in ("done", "status", "success")] == ["true", "Succeeded", "true"]
    assert result.find(f"{MD}messages") is None
    assert _file_names(result) == {f"unpackaged/connectedApps/{name}.connectedApp", "unpackaged/package.xml"}
    files = _files(result)
    assert set(files) == {"unpackaged/package.xml", f"unpackaged/connectedApps/{name}.connectedApp"}
    assert secret not in "".join(files.values())
    assert f"<members>{name}</members>" in files["unpackaged/package.xml"]
    app = ElementTree.fromstring(files[f"unpackaged/connectedApps/{name}.connectedApp"])
    assert app.tag == f"{MD}ConnectedApp" and app.find(f"{MD}fullName") is None  # the file name says it
    oauth = app.find(f"{MD}oauthConfig")
    assert oauth.findtext(f"{MD}consumerKey").startswith("3MVG9") and oauth.find(f"{MD}consumerSecret") is None
    assert [s.text for s in oauth.findall(f"{MD}scopes")] == ["Api", "Basic", "RefreshToken"]
    assert [p.text for p in app.findall(f"{MD}profileName")] == ["System Administrator"]


def test_unknown_members_are_messages_and_the_retrieve_still_succeeds(org, sf, keys, admin_token):
    name = create_connected_app(sf, keys)
    retrieve_id = _retrieve(org, admin_token, {"ConnectedApp": [name, "No_Such_App"], "ApexClass": ["Foo"]})
    result = _result(_check(org, admin_token, retrieve_id))
    assert (result.findtext(f"{MD}status"), result.findtext(f"{MD}success")) == ("Succeeded", "true")
    messages = [(m.findtext(f"{MD}fileName"), m.findtext(f"{MD}problem")) for m in result.findall(f"{MD}messages")]
    assert messages == [("unpackaged/package.xml", "Entity of type 'ConnectedApp' named 'No_Such_App' cannot be found"),
                        ("unpackaged/package.xml", "Entity of type 'ApexClass' named 'Foo' cannot be found")]
    assert f"unpackaged/connectedApps/{name}.connectedApp" in _files(result)


def test_wildcard_retrieves_every_component_of_the_external_client_app_types(org, sf, keys, admin_token):
    name = unique("Eca")
    create_external_client_app(sf, keys, name, "System Administrator")
    types = ("ExternalClientApplication", "ExtlClntAppOauthSettings", "ExtlClntAppGlobalOauthSettings",
             "ExtlClntAppOauthConfigurablePolicies", "ExtlClntAppConfigurablePolicies")
    result = _result(_check(org, admin_token, _retrieve(org, admin_token, {t: ["*"] for t in types})))
    files = _files(result)
    assert {f"unpackaged/externalClientApps/{name}.eca", f"unpackaged/extlClntAppOauthSettings/{name}OAuthSettings"
            ".ecaOauth", f"unpackaged/extlClntAppGlobalOauthSets/{name}GlblOAuth.ecaGlblOauth",
            f"unpackaged/extlClntAppOauthPolicies/{name}_oauthPlcy.ecaOauthPlcy",
            f"unpackaged/extlClntAppPolicies/{name}_defaultPolicy.ecaPlcy"} <= set(files) == _file_names(result)
    glbl = ElementTree.fromstring(files[f"unpackaged/extlClntAppGlobalOauthSets/{name}GlblOAuth.ecaGlblOauth"])
    assert glbl.findtext(f"{MD}consumerKey").startswith("3MVG9") and glbl.find(f"{MD}consumerSecret") is None
    package = ElementTree.fromstring(files["unpackaged/package.xml"])
    listed = {t.findtext(f"{MD}name"): [m.text for m in t.findall(f"{MD}members")] for t in package}
    assert name in listed["ExternalClientApplication"] and "*" not in listed["ExternalClientApplication"]


def test_single_package_through_simple_salesforce_has_no_folder_and_the_zip_is_handed_out_once(org, sf, keys,
                                                                                              admin_token):
    name = create_connected_app(sf, keys)
    retrieve_id, state = sf.mdapi.retrieve("unused", unpackaged={"ConnectedApp": [name]}, single_package=True)
    assert state == "Queued"
    assert sf.mdapi.check_retrieve_status(retrieve_id) == ("Succeeded", None, [])  # includeZip false
    status, _error, _messages, zipped = sf.mdapi.retrieve_zip(retrieve_id)
    assert status == "Succeeded"
    assert sorted(zipfile.ZipFile(io.BytesIO(zipped)).namelist()) == [f"connectedApps/{name}.connectedApp",
                                                                     "package.xml"]
    # [D] after the zip is retrieved it is deleted from the server; its status stays
    again = _check(org, admin_token, retrieve_id, "true")
    assert again.status_code == 500 and "Retrieve result has been deleted." in again.text
    assert _result(_check(org, admin_token, retrieve_id, "false")).findtext(f"{MD}status") == "Succeeded"


def test_retrieve_and_deploy_ids_are_not_interchangeable(org, admin_token):
    retrieve_id = _retrieve(org, admin_token, {"ConnectedApp": ["*"]})
    # Salesforce Inspector names the id <id>, not <asyncProcessId>
    by_id = _call(org, admin_token, f"<checkRetrieveStatus><id>{retrieve_id}</id></checkRetrieveStatus>")
    assert _result(by_id).findtext(f"{MD}status") == "Succeeded"
    wrong = _call(org, admin_token, f"<checkDeployStatus><asyncProcessId>{retrieve_id}</asyncProcessId>"
                                    "</checkDeployStatus>")
    assert wrong.status_code == 500 and "INVALID_ID_FIELD" in wrong.text
    assert "INVALID_ID_FIELD" in _check(org, admin_token, "0AfLC0000000001AAA").text


@pytest.mark.parametrize("version", ["30.0", "69.0"])
def test_retrieve_at_an_unserved_api_version_is_unsupported(org, admin_token, version):
    response = _call(org, admin_token, "<retrieve><request><apiVersion>62.0</apiVersion></request></retrieve>",
                     version)
    assert response.status_code == 500
    assert "UNSUPPORTED_API_VERSION: Invalid Api version specified on URL" in response.text


def test_a_deploy_with_perform_retrieve_hands_back_what_it_saved_in_its_deploy_result(org, admin_token):
    """[D] DeployOptions.performRetrieve: a retrieve of what was deployed, in DeployDetails.retrieveResult; the
    consumer key the org made is in it, a consumer secret is not."""
    from runbook.salesforce import OrgSession, metadata_files

    session = OrgSession(instance_url=org.url, access_token=admin_token, api_version="62.0", method="test",
                         login_url=org.url)
    name = unique("Perform_Retrieve")
    app = metadata_files.Component("ConnectedApp", name, {
        "contactEmail": "a@example.com", "label": name,
        "oauthConfig": {"callbackUrl": "http://localhost:1717/OauthRedirect", "scopes": ["Api"],
                        "consumerSecret": "S" * 64}}, "connectedApps", "connectedApp")

    saved = metadata_files.deploy(session, [app], layout={"ConnectedApp": ("connectedApps", "connectedApp")})

    oauth = saved[("ConnectedApp", name)]["oauthConfig"]
    assert oauth["consumerKey"].startswith("3MVG") and "consumerSecret" not in oauth
