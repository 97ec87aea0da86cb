"""The Metadata API through simple-salesforce's zeep client and file deploy, as the runbook calls it."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
import requests
import zeep.exceptions
from zeep.helpers import serialize_object

from runbook.localorg import ADMIN_USERNAME

from ..conftest import soap_login
from ..support import (
    assertion,
    bearer,
    consumer_key,
    create_connected_app,
    create_external_client_app,
    eca_id,
    token_request,
    tooling_query,
    unique,
)


def _grants(sf, label: str) -> set[str]:
    rows = sf.query("SELECT Parent.Profile.Name, Parent.Name, Parent.IsOwnedByProfile FROM SetupEntityAccess "
                    f"WHERE SetupEntityId IN (SELECT Id FROM ConnectedApplication WHERE Name = '{label}')")
    return {r["Parent"]["Profile"]["Name"] if r["Parent"]["IsOwnedByProfile"] else r["Parent"]["Name"]
            for r in rows["records"]}


def test_create_read_update_delete_keeps_the_consumer_key(sf, keys):
    name = create_connected_app(sf, keys)
    app = sf.mdapi.ConnectedApp.read([name])
    key = app.oauthConfig.consumerKey
    assert re.fullmatch(r"3MVG9[A-Za-z0-9._]{80}", key)
    assert app.oauthConfig.consumerSecret is None  # never returned
    assert app.oauthConfig.isAdminApproved is True and app.profileName == ["System Administrator"]
    assert app.oauthConfig.certificate == keys.certificate_pem.strip()

    app.oauthConfig.consumerKey = None
    app.description = "changed"
    app.oauthConfig.scopes = ["Api"]
    sf.mdapi.ConnectedApp.update([app])
    again = sf.mdapi.ConnectedApp.read([name])
    assert again.oauthConfig.consumerKey == key and again.description == "changed"
    assert again.oauthConfig.scopes == ["Api"]

    again.oauthConfig.consumerKey = key
    with pytest.raises(Exception, match=r"FIELD_INTEGRITY_EXCEPTION, You cannot provide a Consumer Key"):
        sf.mdapi.ConnectedApp.update([again])

    label = name.replace("_", " ")
    row = sf.query(f"SELECT Id, Name, OptionsAllowAdminApprovedUsersOnly FROM ConnectedApplication "
                   f"WHERE Name = '{label}'")["records"]
    assert row[0]["Id"].startswith("0H4") and row[0]["OptionsAllowAdminApprovedUsersOnly"] is True
    sf.mdapi.ConnectedApp.delete([name])
    assert serialize_object(sf.mdapi.ConnectedApp.read([name]))["fullName"] is None
    assert sf.query(f"SELECT COUNT() FROM ConnectedApplication WHERE Name = '{label}'")["totalSize"] == 0
    grants = sf.query(f"SELECT COUNT() FROM SetupEntityAccess WHERE SetupEntityId = '{row[0]['Id']}'")
    assert grants["totalSize"] == 0


def test_supplied_consumer_key_is_kept_and_must_be_unique(sf, keys):
    key = "CI_" + unique("key")
    first = create_connected_app(sf, keys, consumerKey=key)
    assert consumer_key(sf, first) == key
    with pytest.raises(Exception, match=r"FIELD_INTEGRITY_EXCEPTION, The consumer key is already taken\."):
        create_connected_app(sf, keys, consumerKey=key)


def test_create_refuses_missing_fields_duplicates_and_bad_certificates(sf, keys):
    name = create_connected_app(sf, keys)
    with pytest.raises(Exception, match="DUPLICATE_DEVELOPER_NAME"):
        create_connected_app(sf, keys, name=name)
    # zeep refuses absent required elements itself; blank ones reach the org
    with pytest.raises(Exception, match=r"REQUIRED_FIELD_MISSING, Required field is missing: contactEmail"):
        sf.mdapi.ConnectedApp.create([sf.mdapi.ConnectedApp(fullName=unique("A"), label="A",
                                                            contactEmail="")])
    with pytest.raises(Exception, match=r"REQUIRED_FIELD_MISSING.*oauthConfig\.callbackUrl"):
        sf.mdapi.ConnectedApp.create([sf.mdapi.ConnectedApp(
            fullName=unique("A"), label="A", contactEmail="a@b.co",
            oauthConfig=sf.mdapi.ConnectedAppOauthConfig(callbackUrl=" "))])
    with pytest.raises(Exception, match="certificate"):
        sf.mdapi.ConnectedApp.create([sf.mdapi.ConnectedApp(
            fullName=unique("A"), label="A", contactEmail="a@b.co",
            oauthConfig=sf.mdapi.ConnectedAppOauthConfig(
                callbackUrl="http://localhost:1717/OauthRedirect", certificate="not a certificate"))])
    with pytest.raises(Exception, match="FIELD_INTEGRITY_EXCEPTION, The API name"):
        sf.mdapi.ConnectedApp.create([sf.mdapi.ConnectedApp(fullName="Bad Name", label="A",
                                                            contactEmail="a@b.co")])


def test_profile_and_permission_set_names_become_setup_entity_access_rows(sf, keys):
    set_name = unique("Grant")
    sf.PermissionSet.create({"Name": set_name, "Label": f"{set_name} label"})
    name = create_connected_app(sf, keys, profiles=("System Administrator", "standard user"))
    label = name.replace("_", " ")
    assert _grants(sf, label) == {"System Administrator", "Standard User"}

    app = sf.mdapi.ConnectedApp.read([name])
    app.oauthConfig.consumerKey = None
    app.profileName, app.permissionSetName = [], [f"{set_name} label"]  # a label works as well as a name
    sf.mdapi.ConnectedApp.update([app])
    assert _grants(sf, label) == {set_name}
    assert sf.mdapi.ConnectedApp.read([name]).permissionSetName == [set_name]

    app = sf.mdapi.ConnectedApp.read([name])
    app.oauthConfig.consumerKey, app.permissionSetName, app.description = None, [], "no grant elements"
    sf.mdapi.ConnectedApp.update([app])
    assert _grants(sf, label) == {set_name}  # no profileName/permissionSetName elements: rows untouched

    with pytest.raises(Exception, match="no Profile named Nobody found"):
        create_connected_app(sf, keys, profiles=("Nobody",))


def test_upsert_reports_created_then_updated(sf, keys):
    name = unique("Up")
    app = sf.mdapi.ConnectedApp(fullName=name, label=name, contactEmail="a@b.co")
    result = sf.mdapi._service.upsertMetadata([app], _soapheaders=[sf.mdapi._session_header])
    assert (result[0].created, result[0].success) == (True, True)
    result = sf.mdapi._service.upsertMetadata([app], _soapheaders=[sf.mdapi._session_header])
    assert (result[0].created, result[0].success) == (False, True)


def test_list_metadata_names_the_files(sf, keys):
    name = create_connected_app(sf, keys)
    listed = sf.mdapi.list_metadata(sf.mdapi.ListMetadataQuery(type="ConnectedApp"))
    files = {item.fullName: item.fileName for item in listed}
    assert files[name] == f"connectedApps/{name}.connectedApp"


def test_restricted_org_refuses_connected_apps_but_not_external_client_apps(fresh_org, keys):
    sf = soap_login(fresh_org, "62.0")
    fresh_org.set_setting("allow_connected_apps", False)
    with pytest.raises(Exception, match=r"INSUFFICIENT_ACCESS, Connected apps creation is restricted as of "
                                        r"Spring '26.*contact Salesforce Support"):
        create_connected_app(sf, keys)
    create_external_client_app(sf, keys, "Eca_App", "System Administrator")
    apps = tooling_query(sf, "SELECT DeveloperName FROM ExternalClientApplication")["records"]
    assert [a["DeveloperName"] for a in apps] == ["Eca_App"]
    fresh_org.set_setting("allow_connected_apps", True)
    create_connected_app(sf, keys)


def test_external_client_app_jwt_by_profile_policy_and_setup_entity_access(org, sf, keys):
    name = unique("Eca")
    create_external_client_app(sf, keys, name, "System Administrator")
    settings = sf.mdapi.ExtlClntAppGlobalOauthSettings.read([f"{name}GlblOAuth"])
    key = settings.consumerKey
    assert key.startswith("3MVG9") and settings.consumerSecret is None
    ok = token_request(org, assertion(keys, iss=key, sub=ADMIN_USERNAME))
    assert ok.status_code == 200 and ok.json()["scope"] == "api web refresh_token"
    refused = token_request(org, assertion(keys, iss=key, sub="dev@local.devhub"))
    assert refused.json()["error"] == "invalid_app_access"

    app = eca_id(sf, name)
    standard = sf.query("SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND Profile.Name = "
                        "'Standard User'")["records"][0]["Id"]
    sf.SetupEntityAccess.create({"ParentId": standard, "SetupEntityId": app})
    rows = sf.query(f"SELECT SetupEntityType FROM SetupEntityAccess WHERE SetupEntityId = '{app}'")
    assert rows["records"][0]["SetupEntityType"] == "ExternalClientApplication"
    assert token_request(org, assertion(keys, iss=key, sub="dev@local.devhub")).status_code == 200

    with pytest.raises(Exception, match="duplicate value found: ExternalClientApplicationId duplicates value on "
                                        f"{name}GlblOAuth"):
        sf.mdapi.ExtlClntAppGlobalOauthSettings.create([sf.mdapi.ExtlClntAppGlobalOauthSettings(
            fullName=f"{name}Second", externalClientApplication=name)])
    with pytest.raises(Exception, match="no ExternalClientApplication named Missing found"):
        sf.mdapi.ExtlClntAppOauthSettings.create([sf.mdapi.ExtlClntAppOauthSettings(
            fullName=unique("Orphan"), externalClientApplication="Missing")])
    sf.mdapi.ExternalClientApplication.delete([name])
    after = token_request(org, assertion(keys, iss=key, sub=ADMIN_USERNAME))
    assert after.json()["error"] == "invalid_client_id"


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def _package(name: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><Package xmlns="http://soap.sforce.com/2006/04/metadata">'
            f"<types><members>{name}</members><name>ConnectedApp</name></types>"
            "<version>62.0</version></Package>")


def _connected_app_file(name: str, keys, consumer_key: str | None = None) -> str:
    key = f"<consumerKey>{consumer_key}</consumerKey>" if consumer_key else ""
    # Out-of-XSD order and no ipRelaxation, as Salesforce's own sample apps are written.
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">'
            f"<label>{name}</label><contactEmail>a@b.co</contactEmail><oauthConfig>"
            f"<callbackUrl>http://localhost:1717/OauthRedirect</callbackUrl>{key}"
            f"<certificate>{keys.certificate_pem}</certificate><scopes>Api</scopes>"
            "<isAdminApproved>true</isAdminApproved></oauthConfig>"
            "<oauthPolicy><refreshTokenPolicy>infinite</refreshTokenPolicy></oauthPolicy>"
            "<profileName>System Administrator</profileName></ConnectedApp>")


def test_file_deploy_and_check_deploy_status_through_simple_salesforce(org, sf, keys, tmp_path):
    name = unique("Deployed")
    key = unique("DeployKey")
    path = tmp_path / "deploy.zip"
    path.write_bytes(_zip({"package.xml": _package(name),
                           f"connectedApps/{name}.connectedApp": _connected_app_file(name, keys, key)}))
    started = sf.deploy(str(path), sandbox=False)
    assert started["state"] == "Queued" and started["asyncId"].startswith("0Af")
    status = sf.checkDeployStatus(started["asyncId"])
    assert status["state"] == "Succeeded", status
    assert status["deployment_detail"]["deployed_count"] == "1"
    app = sf.mdapi.ConnectedApp.read([name])
    assert app.oauthConfig.consumerKey == key and app.oauthPolicy.ipRelaxation == "ENFORCE"
    assert token_request(org, assertion(keys, iss=key, sub=ADMIN_USERNAME)).status_code == 200

    # the key is in the file again: a redeploy must not try to set it
    again = sf.checkDeployStatus(sf.deploy(str(path), sandbox=False)["asyncId"])
    assert again["state"] == "Failed"
    assert again["deployment_detail"]["errors"][0]["message"] == "You cannot provide a Consumer Key"


def test_deploy_rolls_back_everything_on_one_failure(sf, keys, tmp_path):
    good, missing = unique("Good"), unique("Missing")
    path = tmp_path / "deploy.zip"
    path.write_bytes(_zip({
        "package.xml": _package(good).replace("</members>", f"</members><members>{missing}</members>"),
        f"connectedApps/{good}.connectedApp": _connected_app_file(good, keys)}))
    status = sf.checkDeployStatus(sf.deploy(str(path), sandbox=False)["asyncId"])
    assert status["state"] == "Failed"
    assert "was named in package.xml, but was not found in zipped directory" in \
        status["deployment_detail"]["errors"][0]["message"]
    assert serialize_object(sf.mdapi.ConnectedApp.read([good]))["fullName"] is None


def test_metadata_api_needs_a_valid_admin_session(org, sf, keys):
    sf_bad = soap_login(org)
    sf_bad.mdapi._session_header = sf_bad.mdapi._client.get_element("ns0:SessionHeader")(sessionId="bogus")
    with pytest.raises(zeep.exceptions.Fault) as fault:
        sf_bad.mdapi.ConnectedApp.read(["X"])
    assert fault.value.code == "sf:INVALID_SESSION_ID"
    name = create_connected_app(sf, keys, profiles=("Standard User",))
    dev_token = token_request(org, assertion(keys, iss=consumer_key(sf, name), sub="dev@local.devhub")).json()
    response = requests.post(f"{org.url}/services/Soap/m/62.0", verify=org.ca_bundle, timeout=5,
                             headers={"Content-Type": "text/xml", **bearer(dev_token["access_token"])},
                             data='<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
                                  "<listMetadata/></e:Body></e:Envelope>")
    assert response.status_code == 500 and "sf:INSUFFICIENT_ACCESS" in response.text


def test_external_client_app_files_deploy_like_sfdx_hardis_writes_them(org, sf, keys, tmp_path):
    name = unique("Hardis")
    ns = 'xmlns="http://soap.sforce.com/2006/04/metadata"'
    files = {
        f"externalClientApps/{name}.eca":
        f"<ExternalClientApplication {ns}><contactEmail>a@b.co</contactEmail>"
        f"<distributionState>Local</distributionState><isProtected>false</isProtected><label>{name}</label>"
        "</ExternalClientApplication>",
        f"extlClntAppOauthSettings/{name}OAuthSettings.ecaOauth": f"<ExtlClntAppOauthSettings {ns}>"
        "<commaSeparatedOauthScopes>Api, Web, RefreshToken</commaSeparatedOauthScopes>"
        f"<externalClientApplication>{name}</externalClientApplication><label>x</label>"
        "</ExtlClntAppOauthSettings>",
        f"extlClntAppGlobalOauthSets/{name}GlblOAuth.ecaGlblOauth": f"<ExtlClntAppGlobalOauthSettings {ns}>"
        f"<callbackUrl>http://localhost:1717/OauthRedirect</callbackUrl><certificate>{keys.certificate_pem}"
        f"</certificate><externalClientApplication>{name}</externalClientApplication>"
        "<isConsumerSecretOptional>True</isConsumerSecretOptional><label>x</label>"
        "</ExtlClntAppGlobalOauthSettings>",
        f"extlClntAppOauthPolicies/{name}OAuthSettings_defaultPolicy.ecaOauthPlcy":
        f"<ExtlClntAppOauthConfigurablePolicies {ns}><commaSeparatedProfile>System Administrator"
        f"</commaSeparatedProfile><externalClientApplication>{name}</externalClientApplication>"
        "<permittedUsersPolicyType>AdminApprovedPreAuthorized</permittedUsersPolicyType><label>x</label>"
        "</ExtlClntAppOauthConfigurablePolicies>",
        f"extlClntAppPolicies/{name}_defaultPolicy.ecaPlcy": f"<ExtlClntAppConfigurablePolicies {ns}>"
        f"<externalClientApplication>{name}</externalClientApplication><isEnabled>true</isEnabled>"
        "<label>x</label></ExtlClntAppConfigurablePolicies>",
    }
    types = "".join(f"<types><members>*</members><name>{t}</name></types>" for t in (
        "ExternalClientApplication", "ExtlClntAppOauthSettings", "ExtlClntAppGlobalOauthSettings",
        "ExtlClntAppOauthConfigurablePolicies", "ExtlClntAppConfigurablePolicies"))
    path = tmp_path / "eca.zip"
    package = f"<Package {ns}>{types}<version>64.0</version></Package>"
    path.write_bytes(_zip({"package.xml": package, **files}))
    status = sf.checkDeployStatus(sf.deploy(str(path), sandbox=False)["asyncId"])
    assert status["state"] == "Succeeded" and status["deployment_detail"]["deployed_count"] == "5", status
    settings = sf.mdapi.ExtlClntAppGlobalOauthSettings.read([f"{name}GlblOAuth"])
    assert settings.isConsumerSecretOptional is True  # Python-style True from a template still reads as true
    signed = assertion(keys, iss=settings.consumerKey, sub=ADMIN_USERNAME)
    assert token_request(org, signed).status_code == 200


def test_scopes_read_back_normalised_like_the_metadata_api(sf, keys):
    name = create_connected_app(sf, keys, scopes=("Api", "Profile", "Email", "Address", "Phone", "OfflineAccess",
                                                  "RefreshToken", "Web"))
    assert sf.mdapi.ConnectedApp.read([name]).oauthConfig.scopes == ["Api", "Basic", "RefreshToken", "Web"]

    eca = unique("Eca")
    create_external_client_app(sf, keys, eca, "System Administrator")
    settings = sf.mdapi.ExtlClntAppOauthSettings.read([f"{eca}OAuthSettings"])
    settings.commaSeparatedOauthScopes = "Api,Email, OfflineAccess,Phone"
    sf.mdapi.ExtlClntAppOauthSettings.update([settings])
    again = sf.mdapi.ExtlClntAppOauthSettings.read([f"{eca}OAuthSettings"])
    assert again.commaSeparatedOauthScopes == "Api, Basic, RefreshToken"


@pytest.mark.parametrize(("read_as", "shown"), [("name", "{name}"), ("label", "{name} label")])
def test_permission_sets_read_back_by_name_or_label_as_the_org_setting_says(org, sf, keys, read_as, shown):
    set_name = unique("ReadAs")
    sf.PermissionSet.create({"Name": set_name, "Label": f"{set_name} label"})
    app = create_connected_app(sf, keys, permission_sets=(set_name,))
    org.set_setting("permission_set_read_as", read_as)
    try:
        assert sf.mdapi.ConnectedApp.read([app]).permissionSetName == [shown.format(name=set_name)]
    finally:
        org.set_setting("permission_set_read_as", "name")
    with pytest.raises(ValueError, match="takes one of name, label"):
        org.set_setting("permission_set_read_as", "Label")


def test_grants_on_a_self_authorize_app_are_refused_and_empty_grant_elements_are_not(org, sf, keys, tmp_path):
    needs = (r"FIELD_INTEGRITY_EXCEPTION, profileName: To use this field, the isAdminApproved field on the "
             r"ConnectedAppOauthConfig subtype must be set to true\.")
    with pytest.raises(Exception, match=needs):
        create_connected_app(sf, keys, admin_approved=False)
    name = create_connected_app(sf, keys)
    app = sf.mdapi.ConnectedApp.read([name])
    app.oauthConfig.consumerKey, app.oauthConfig.isAdminApproved = None, False
    with pytest.raises(Exception, match=needs):
        sf.mdapi.ConnectedApp.update([app])
    app.profileName = [""]  # <profileName/>: no grant, so a self-authorize app may say it
    sf.mdapi.ConnectedApp.update([app])
    assert sf.mdapi.ConnectedApp.read([name]).profileName == []

    deployed = unique("SelfAuth")
    path = tmp_path / "self.zip"
    self_authorize = _connected_app_file(deployed, keys).replace("<isAdminApproved>true", "<isAdminApproved>false")
    path.write_bytes(_zip({"package.xml": _package(deployed),
                           f"connectedApps/{deployed}.connectedApp": self_authorize}))
    status = sf.checkDeployStatus(sf.deploy(str(path), sandbox=False)["asyncId"])
    assert status["state"] == "Failed"
    assert status["deployment_detail"]["errors"][0]["message"].startswith("profileName: To use this field")
