"""External Client Apps as Salesforce takes them: deploy by zip (and delete by destructive deploy), the opt-in, the
generated OAuth policies, the consumer key by retrieve or Connect REST, disabled apps refusing JWT, and the object
only the Tooling API queries.

Everything goes through real clients over HTTPS: simple-salesforce's file deploy and retrieve, zeep's CRUD
calls, and requests for REST.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from simple_salesforce import Salesforce

from runbook.localorg import ADMIN_USERNAME, LocalOrg

from ..conftest import soap_login
from ..support import (
    KeyPair,
    assertion,
    bearer,
    create_connected_app,
    eca_id,
    token_request,
    tooling_query,
    unique,
)

NS = 'xmlns="http://soap.sforce.com/2006/04/metadata"'
MANIFEST_TYPES = {"externalClientApps": "ExternalClientApplication",
                  "extlClntAppOauthSettings": "ExtlClntAppOauthSettings",
                  "extlClntAppGlobalOauthSets": "ExtlClntAppGlobalOauthSettings",
                  "extlClntAppOauthPolicies": "ExtlClntAppOauthConfigurablePolicies",
                  "extlClntAppPolicies": "ExtlClntAppConfigurablePolicies", "settings": "Settings"}
OPT_IN_REFUSED = ("Opt in to External Client Apps is not enabled for this org. Turn it on in Setup, External Client "
                  "App Settings, and try again.")


def _xml(root: str, **fields: object) -> str:
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} {NS}>{inner}</{root}>'


def _app(name: str) -> dict[str, str]:
    return {f"externalClientApps/{name}.eca": _xml("ExternalClientApplication", contactEmail="a@b.co",
                                                    distributionState="Local", isProtected="false", label=name)}


def _oauth(name: str, keys: KeyPair, *, certificate: bool = True, enabled: bool = True,
           oauth_plugin: bool = True) -> dict[str, str]:
    """OAuth and global OAuth settings and the plugin policies, Electivus's second stage; no OAuth policies."""
    glbl = {"callbackUrl": "http://localhost:1717/OauthRedirect",
            **({"certificate": keys.certificate_pem} if certificate else {}),
            "externalClientApplication": name, "isConsumerSecretOptional": "true", "label": f"{name} Global"}
    return {
        f"extlClntAppOauthSettings/{name}_oauth.ecaOauth": _xml(
            "ExtlClntAppOauthSettings", commaSeparatedOauthScopes="Api, RefreshToken",
            externalClientApplication=name, label=f"{name} OAuth"),
        f"extlClntAppGlobalOauthSets/{name}_glbloauth.ecaGlblOauth": _xml("ExtlClntAppGlobalOauthSettings", **glbl),
        f"extlClntAppPolicies/{name}_plcy.ecaPlcy": _xml(
            "ExtlClntAppConfigurablePolicies", externalClientApplication=name, isEnabled=str(enabled).lower(),
            isOauthPluginEnabled=str(oauth_plugin).lower(), label=f"{name} Policies")}


def _policies(name: str, full_name: str | None = None, profile: str = "System Administrator") -> dict[str, str]:
    full_name = full_name or f"{name}_oauthPlcy"
    return {f"extlClntAppOauthPolicies/{full_name}.ecaOauthPlcy": _xml(
        "ExtlClntAppOauthConfigurablePolicies", commaSeparatedProfile=profile, externalClientApplication=name,
        ipRelaxationPolicyType="Enforce", label=f"{name} OAuth Policies",
        permittedUsersPolicyType="AdminApprovedPreAuthorized")}


def _settings(**fields: object) -> dict[str, str]:
    return {"settings/ExternalClientApp.settings": _xml("ExternalClientAppSettings", **fields)}


def _manifest(members: dict[str, list[str]]) -> str:
    types = "".join(f"<types>{''.join(f'<members>{m}</members>' for m in names)}<name>{type_name}</name></types>"
                    for type_name, names in members.items())
    return f"<Package {NS}>{types}<version>64.0</version></Package>"


def _deploy(sf: Salesforce, tmp_path: Path, files: dict[str, str], *,
            destructive: dict[str, list[str]] | None = None, **options: object) -> dict:
    """Deploy ``files`` (listed in package.xml by their folders), deleting ``destructive`` (destructiveChanges.xml),
    with simple-salesforce; checkDeployStatus's answer."""
    members: dict[str, list[str]] = {}
    for path in files:
        folder, file_name = path.split("/")
        members.setdefault(MANIFEST_TYPES[folder], []).append(file_name.rsplit(".", 1)[0])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("package.xml", _manifest(members))
        if destructive:
            archive.writestr("destructiveChanges.xml", _manifest(destructive))
        for path, text in reversed(list(files.items())):  # the zip's order must not matter
            archive.writestr(path, text)
    zipped = tmp_path / f"{unique('deploy')}.zip"
    zipped.write_bytes(buffer.getvalue())
    return sf.checkDeployStatus(sf.deploy(str(zipped), sandbox=False, **options)["asyncId"])


def _errors(status: dict) -> list[str]:
    return [error["message"] for error in status["deployment_detail"]["errors"]]


def _retrieved(sf: Salesforce, members: dict[str, list[str]]) -> dict[str, str]:
    """The files of a retrieve of ``members`` through simple-salesforce (single package)."""
    retrieve_id, _state = sf.mdapi.retrieve("unused", unpackaged=members, single_package=True)
    _status, _error, _messages, zipped = sf.mdapi.retrieve_zip(retrieve_id)
    archive = zipfile.ZipFile(io.BytesIO(zipped))
    return {name: archive.read(name).decode() for name in archive.namelist()}


def _retrieved_key(sf: Salesforce, name: str) -> str | None:
    text = _retrieved(sf, {"ExtlClntAppGlobalOauthSettings": [f"{name}_glbloauth"]})[
        f"extlClntAppGlobalOauthSets/{name}_glbloauth.ecaGlblOauth"]
    return text.split("<consumerKey>")[1].split("</consumerKey>")[0] if "<consumerKey>" in text else None


def _jwt(org: LocalOrg, keys: KeyPair, key: str, user: str = ADMIN_USERNAME) -> requests.Response:
    return token_request(org, assertion(keys, iss=key, sub=user))


def _deployed_app(sf: Salesforce, tmp_path: Path, keys: KeyPair, **oauth: bool) -> tuple[str, str]:
    """An app deployed in Electivus's three stages, pre-authorized for the System Administrator; name, key."""
    name = unique("Eca")
    for files in (_app(name), _oauth(name, keys, **oauth), _policies(name)):
        status = _deploy(sf, tmp_path, files)
        assert status["state"] == "Succeeded", status
    return name, _retrieved_key(sf, name) or ""


# --- deploy by zip --------------------------------------------------------------------------------

def test_one_deploy_creates_every_component_in_dependency_order_and_jwt_logs_in(org, sf, keys, tmp_path):
    name = unique("Eca")
    status = _deploy(sf, tmp_path, {**_app(name), **_oauth(name, keys), **_policies(name)})
    assert status["state"] == "Succeeded" and status["deployment_detail"]["deployed_count"] == "5", status
    key = _retrieved_key(sf, name)
    assert key and key.startswith("3MVG9")
    ok = _jwt(org, keys, key)
    assert ok.status_code == 200 and ok.json()["scope"] == "api refresh_token"
    assert _jwt(org, keys, key, "dev@local.devhub").json()["error"] == "invalid_app_access"


def test_check_only_deploy_validates_and_saves_nothing(sf, keys, tmp_path):
    name = unique("Eca")
    status = _deploy(sf, tmp_path, {**_app(name), **_oauth(name, keys)}, checkOnly=True)
    assert status["state"] == "Succeeded" and status["deployment_detail"]["deployed_count"] == "0", status
    assert tooling_query(sf, f"SELECT Id FROM ExternalClientApplication WHERE DeveloperName = '{name}'")[
        "totalSize"] == 0
    listed = {p.fullName for p in sf.mdapi.list_metadata(sf.mdapi.ListMetadataQuery(
        type="ExtlClntAppOauthConfigurablePolicies")) or []}
    assert f"{name}_oauthPlcy" not in listed  # nor the policies the org would generate


def test_a_failed_component_rolls_the_whole_deploy_back(sf, keys, tmp_path):
    name = unique("Eca")
    files = {**_app(name), **_oauth(name, keys)}
    files[f"extlClntAppGlobalOauthSets/{name}_glbloauth.ecaGlblOauth"] = files[
        f"extlClntAppGlobalOauthSets/{name}_glbloauth.ecaGlblOauth"].replace("MII", "not a certificate", 1)
    status = _deploy(sf, tmp_path, files)
    assert status["state"] == "Failed"
    assert _errors(status) == ["The certificate is not a valid PEM-encoded X.509 certificate."]
    assert tooling_query(sf, f"SELECT Id FROM ExternalClientApplication WHERE DeveloperName = '{name}'")[
        "totalSize"] == 0


def test_global_oauth_settings_need_the_apps_oauth_settings(sf, keys, tmp_path):
    name = unique("Eca")
    _deploy(sf, tmp_path, _app(name))
    files = {path: text for path, text in _oauth(name, keys).items() if "Global" in text}
    status = _deploy(sf, tmp_path, files)
    assert _errors(status) == ["The external client app configured in your global OAuth Settings doesn't have a "
                               "valid OAuth settings configuration."]


def test_a_global_oauth_deploy_without_certificate_clears_it_and_jwt_fails(org, sf, keys, tmp_path):
    name, key = _deployed_app(sf, tmp_path, keys)
    assert _jwt(org, keys, key).status_code == 200
    glbl = {path: text for path, text in _oauth(name, keys, certificate=False).items() if "Global" in text}
    assert _deploy(sf, tmp_path, glbl)["state"] == "Succeeded"
    assert "<certificate>" not in _retrieved(sf, {"ExtlClntAppGlobalOauthSettings": [f"{name}_glbloauth"]})[
        f"extlClntAppGlobalOauthSets/{name}_glbloauth.ecaGlblOauth"]
    assert _jwt(org, keys, key).json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_one_destructive_deploy_deletes_the_app_with_its_components_and_grants(org, sf, keys, tmp_path):
    name, key = _deployed_app(sf, tmp_path, keys)
    app = eca_id(sf, name)
    standard = sf.query("SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND Profile.Name = "
                        "'Standard User'")["records"][0]["Id"]
    sf.SetupEntityAccess.create({"ParentId": standard, "SetupEntityId": app})
    doomed = {"ExternalClientApplication": [name], "ExtlClntAppOauthSettings": [f"{name}_oauth"],
              "ExtlClntAppGlobalOauthSettings": [f"{name}_glbloauth"],
              "ExtlClntAppOauthConfigurablePolicies": [f"{name}_oauthPlcy"],
              "ExtlClntAppConfigurablePolicies": [f"{name}_plcy"]}  # the app listed first: satellites still go first
    checked = _deploy(sf, tmp_path, {}, destructive=doomed, checkOnly=True)
    assert checked["state"] == "Succeeded" and eca_id(sf, name) == app

    status = _deploy(sf, tmp_path, {}, destructive=doomed)
    assert status["state"] == "Succeeded" and status["deployment_detail"]["total_count"] == "5", status
    assert tooling_query(sf, f"SELECT Id FROM ExternalClientApplication WHERE DeveloperName = '{name}'")[
        "totalSize"] == 0
    assert sf.query(f"SELECT Id FROM SetupEntityAccess WHERE SetupEntityId = '{app}'")["totalSize"] == 0
    assert _jwt(org, keys, key).json()["error"] == "invalid_client_id"

    again = _deploy(sf, tmp_path, {}, destructive={"ExternalClientApplication": [name]})
    assert again["state"] == "Failed" and _errors(again) == [f"No ExternalClientApplication named: {name} found"]
    ignored = _deploy(sf, tmp_path, {}, destructive={"ExternalClientApplication": [name]}, ignoreWarnings=True)
    assert ignored["state"] == "Succeeded"


# --- the opt-in -----------------------------------------------------------------------------------

def test_without_the_opt_in_deploys_and_creates_are_refused_until_settings_turn_it_on(fresh_org, keys, tmp_path):
    fresh_org.set_setting("external_client_apps", False)
    sf = soap_login(fresh_org, "64.0")
    name = unique("Eca")
    status = _deploy(sf, tmp_path, {**_app(name), **_oauth(name, keys)})
    assert status["state"] == "Failed" and set(_errors(status)) == {OPT_IN_REFUSED}
    with pytest.raises(Exception, match="FUNCTIONALITY_NOT_ENABLED, Opt in to External Client Apps is not enabled"):
        sf.mdapi.ExternalClientApplication.create([sf.mdapi.ExternalClientApplication(
            fullName=name, contactEmail="a@b.co", label=name)])
    create_connected_app(sf, keys)  # connected apps do not need it

    # [D] ExternalClientAppSettings.enableExternalClientApps, deployed with the apps: settings go first
    status = _deploy(sf, tmp_path, {**_settings(enableExternalClientApps="true"), **_app(name)})
    assert status["state"] == "Succeeded", status
    assert fresh_org.get_setting("external_client_apps") is True


def test_org_serve_no_external_client_apps_refuses_them(tmp_path, monkeypatch, keys):
    state = tmp_path / "served"
    command = [sys.executable, "-m", "runbook", "org", "serve", "--state", str(state), "--port", "0",
               "--no-external-client-apps"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as served:
        try:
            lines = [served.stdout.readline() for _ in range(4)]
            assert "External Client Apps: not opted in (deploys and creates of them are refused)\n" in lines, lines
            info = json.loads((state / "org.json").read_text())
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", info["ca_bundle"])
            sf = soap_login(SimpleNamespace(url=info["url"], state_dir=state))
            with pytest.raises(Exception, match="FUNCTIONALITY_NOT_ENABLED"):
                sf.mdapi.ExternalClientApplication.create([sf.mdapi.ExternalClientApplication(
                    fullName="Refused", contactEmail="a@b.co", label="Refused")])
        finally:
            served.send_signal(signal.SIGTERM)
            assert served.wait(timeout=10) == 0


# --- generated OAuth policies ---------------------------------------------------------------------

def test_oauth_settings_deployed_without_policies_get_generated_ones_that_a_later_deploy_updates(
        org, sf, keys, tmp_path):
    name = unique("Eca")
    assert _deploy(sf, tmp_path, {**_app(name), **_oauth(name, keys)})["state"] == "Succeeded"
    generated = sf.mdapi.ExtlClntAppOauthConfigurablePolicies.read([f"{name}_oauthPlcy"])
    assert (generated.externalClientApplication, generated.permittedUsersPolicyType,
            generated.ipRelaxationPolicyType, generated.refreshTokenPolicyType, generated.refreshTokenValidityPeriod,
            generated.refreshTokenValidityUnit) == (name, "AllSelfAuthorized", "Enforce", "SpecificLifetime", 365,
                                                    "Days")
    key = _retrieved_key(sf, name) or ""
    assert _jwt(org, keys, key).json()["error_description"] == "user hasn't approved this consumer"

    other = _deploy(sf, tmp_path, _policies(name, f"{name}OAuthSettings_defaultPolicy"))
    assert other["state"] == "Failed"
    assert _errors(other) == ["duplicate value found: ExternalClientApplicationId duplicates value on "
                              f"{name}_oauthPlcy"]
    assert _deploy(sf, tmp_path, _policies(name))["state"] == "Succeeded"
    assert _jwt(org, keys, key).status_code == 200


def test_crud_oauth_settings_also_get_generated_policies_but_not_when_the_call_brings_its_own(sf):
    md, first, second = sf.mdapi, unique("Eca"), unique("Eca")
    for name in (first, second):
        md.ExternalClientApplication.create([md.ExternalClientApplication(fullName=name, contactEmail="a@b.co",
                                                                          label=name)])
    md.ExtlClntAppOauthSettings.create([md.ExtlClntAppOauthSettings(
        fullName=f"{first}_oauth", externalClientApplication=first, commaSeparatedOauthScopes="Api")])
    assert md.ExtlClntAppOauthConfigurablePolicies.read([f"{first}_oauthPlcy"]).permittedUsersPolicyType == \
        "AllSelfAuthorized"
    md.ExtlClntAppOauthSettings.create([
        md.ExtlClntAppOauthSettings(fullName=f"{second}_oauth", externalClientApplication=second,
                                    commaSeparatedOauthScopes="Api"),
        md.ExtlClntAppOauthConfigurablePolicies(fullName=f"{second}_mine", externalClientApplication=second,
                                                permittedUsersPolicyType="AdminApprovedPreAuthorized")])
    listed = {p.fullName for p in md.list_metadata(md.ListMetadataQuery(type="ExtlClntAppOauthConfigurablePolicies"))}
    assert f"{second}_mine" in listed and f"{second}_oauthPlcy" not in listed


# --- the consumer key: retrieve, then Connect REST ------------------------------------------------

def test_retrieve_shows_the_consumer_key_unless_the_org_setting_hides_it(org, sf, keys, tmp_path):
    name, key = _deployed_app(sf, tmp_path, keys)
    assert key.startswith("3MVG9")
    org.set_setting("eca_consumer_key_in_retrieve", False)
    try:
        assert _retrieved_key(sf, name) is None
        assert sf.mdapi.ExtlClntAppGlobalOauthSettings.read([f"{name}_glbloauth"]).consumerKey is None
    finally:
        org.set_setting("eca_consumer_key_in_retrieve", True)
    assert _retrieved_key(sf, name) == key


def _connect(org: LocalOrg, token: str, path: str, version: str = "64.0", **params: str) -> requests.Response:
    return requests.get(f"{org.url}/services/data/v{version}/apps/oauth/{path}", params=params, timeout=10,
                        headers=bearer(token), verify=org.ca_bundle)


def test_connect_rest_is_refused_until_the_org_setting_is_on_then_gives_the_key(org, sf, keys, tmp_path,
                                                                                admin_token):
    name, key = _deployed_app(sf, tmp_path, keys)
    app = eca_id(sf, name)
    for path in ("usage", f"credentials/{app}"):
        refused = _connect(org, admin_token, path)
        assert refused.status_code == 403
        assert refused.json()[0]["errorCode"] == "FUNCTIONALITY_NOT_ENABLED"
        assert "not currently enabled" in refused.json()[0]["message"]

    # [D] ExternalClientAppSettings.enableClientSecretInRestApiAccess, through zeep's updateMetadata
    sf.mdapi.ExternalClientAppSettings.update([sf.mdapi.ExternalClientAppSettings(
        fullName="ExternalClientApp", enableClientSecretInRestApiAccess=True)])
    try:
        apps = _connect(org, admin_token, "usage").json()["apps"]
        assert {"developerName": name, "identifier": app, "label": name} in apps
        consumers = _connect(org, admin_token, f"credentials/{app}").json()["consumers"]
        assert len(consumers) == 1 and consumers[0]["key"] == key and "secret" not in consumers[0]
        consumer = consumers[0]["id"]
        assert consumer.startswith("888") and consumers[0]["url"].endswith(f"/credentials/{app}/{consumer}")
        by_key = _connect(org, admin_token, f"credentials/{app}/{consumer}", part="key").json()
        assert by_key["key"] == key and "secret" not in by_key
        both = _connect(org, admin_token, f"credentials/{app}/{consumer}", part="keyandsecret").json()
        assert both["key"] == key and len(both["secret"]) == 64
        assert "key" not in _connect(org, admin_token, f"credentials/{app}/{consumer}", part="secret").json()
        assert _connect(org, admin_token, f"credentials/{app}", version="59.0").status_code == 404

        dev_token = _jwt(org, keys, _grant_standard_users(sf, tmp_path, keys), "dev@local.devhub").json()
        user_refused = _connect(org, dev_token["access_token"], f"credentials/{app}")
        assert user_refused.status_code == 403 and "not enabled for this user" in user_refused.json()[0]["message"]
    finally:
        sf.mdapi.ExternalClientAppSettings.update([sf.mdapi.ExternalClientAppSettings(
            fullName="ExternalClientApp", enableClientSecretInRestApiAccess=False)])
    assert org.get_setting("eca_client_secret_in_rest_api") is False


def _grant_standard_users(sf: Salesforce, tmp_path: Path, keys: KeyPair) -> str:
    """The key of a new app whose policies pre-authorize the Standard User profile."""
    name = unique("Eca")
    for files in (_app(name), _oauth(name, keys), _policies(name, profile="Standard User")):
        assert _deploy(sf, tmp_path, files)["state"] == "Succeeded"
    return _retrieved_key(sf, name) or ""


def test_settings_read_back_and_retrieve_like_other_metadata(sf):
    settings = sf.mdapi.ExternalClientAppSettings.read(["ExternalClientApp"])
    assert settings.fullName == "ExternalClientApp" and settings.enableClientSecretInRestApiAccess is False
    files = _retrieved(sf, {"Settings": ["ExternalClientApp"]})
    assert "<enableExternalClientApps>true</enableExternalClientApps>" in files["settings/ExternalClientApp.settings"]
    assert "<name>Settings</name>" in files["package.xml"]


# --- disabled apps --------------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "description"), [
    ({"enabled": False}, "this app is blocked by admin"),
    ({"oauth_plugin": False}, "OAuth is disabled for this external client app")])
def test_a_disabled_app_or_oauth_plugin_refuses_jwt_until_enabled_again(org, sf, keys, tmp_path, flags, description):
    name, key = _deployed_app(sf, tmp_path, keys, **flags)
    assert _jwt(org, keys, key).json() == {"error": "OAUTH_APP_BLOCKED", "error_description": description}
    authorize = requests.get(f"{org.url}/services/oauth2/authorize", verify=org.ca_bundle, timeout=10, params={
        "response_type": "code", "client_id": key, "redirect_uri": "http://localhost:1717/OauthRedirect"})
    assert authorize.status_code == 400 and description in authorize.text  # the web flow, on the org's own page
    plugins = {path: text for path, text in _oauth(name, keys).items() if path.startswith("extlClntAppPolicies/")}
    assert _deploy(sf, tmp_path, plugins)["state"] == "Succeeded"
    assert _jwt(org, keys, key).status_code == 200


# --- ExternalClientApplication: describe and Tooling, not data-API SOQL ---------------------------

def test_external_client_application_answers_describe_and_tooling_but_not_data_api_soql(org, sf, keys, tmp_path,
                                                                                          admin_token):
    name, _key = _deployed_app(sf, tmp_path, keys)
    describe = sf.restful("sobjects/ExternalClientApplication/describe")
    assert describe["name"] == "ExternalClientApplication" and describe["queryable"] is False
    assert {"Id", "DeveloperName", "MasterLabel"} <= {f["name"] for f in describe["fields"]}

    soql = f"SELECT Id, DeveloperName, MasterLabel FROM ExternalClientApplication WHERE DeveloperName = '{name}'"
    found = tooling_query(sf, soql)
    assert {k: found[k] for k in ("size", "totalSize", "done", "queryLocator", "entityTypeName")} == {
        "size": 1, "totalSize": 1, "done": True, "queryLocator": None, "entityTypeName": "ExternalClientApplication"}
    record = found["records"][0]
    assert (record["DeveloperName"], record["MasterLabel"]) == (name, name) and record["Id"].startswith("0xI")
    assert record["attributes"]["url"] == \
        f"/services/data/v59.0/tooling/sobjects/ExternalClientApplication/{record['Id']}"

    rows = sf.query(f"SELECT SetupEntityType FROM SetupEntityAccess WHERE SetupEntityId = '{record['Id']}'")
    assert rows["totalSize"] == 0  # pre-authorized by profile in the policies, not by SetupEntityAccess rows

    for query in (soql, "SELECT Id FROM SetupEntityAccess WHERE SetupEntityId IN "
                        "(SELECT Id FROM ExternalClientApplication)"):
        refused = requests.get(f"{org.url}/services/data/v62.0/query", params={"q": query}, timeout=10,
                               headers=bearer(admin_token), verify=org.ca_bundle)
        assert refused.status_code == 400
        error = refused.json()[0]
        assert error["errorCode"] == "INVALID_TYPE"
        assert "sObject type 'ExternalClientApplication' is not supported." in error["message"]
