"""Propagation: with ``propagation_s``, a new or changed app is unknown to OAuth until that long after its save."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import requests

from runbook.localorg import ADMIN_USERNAME, LocalOrg

from ..conftest import soap_login
from ..support import assertion, consumer_key, create_connected_app, token_request, unique

PROPAGATION_S = 2.0
UNKNOWN = {"error": "invalid_client_id", "error_description": "client identifier invalid"}


def _external_client_app(sf, keys) -> tuple[str, str]:
    """An External Client App with OAuth and global settings (self-authorize); its name and consumer key."""
    md, name = sf.mdapi, unique("Eca")
    md.ExternalClientApplication.create([md.ExternalClientApplication(
        fullName=name, contactEmail="a@b.co", label=name, distributionState="Local", isProtected=False)])
    md.ExtlClntAppOauthSettings.create([md.ExtlClntAppOauthSettings(
        fullName=f"{name}OAuth", externalClientApplication=name, label=name, commaSeparatedOauthScopes="Api")])
    md.ExtlClntAppGlobalOauthSettings.create([md.ExtlClntAppGlobalOauthSettings(
        fullName=f"{name}Glbl", externalClientApplication=name, label=name,
        callbackUrl="http://localhost:1717/OauthRedirect", certificate=keys.certificate_pem)])
    return name, md.ExtlClntAppGlobalOauthSettings.read([f"{name}Glbl"]).consumerKey


def _known_after(org, signed: str, started: float, limit: float) -> float:
    """Seconds from ``started`` until the JWT login stops answering ``invalid_client_id``; fails past ``limit``."""
    while time.monotonic() - started < limit:
        if token_request(org, signed).json() != UNKNOWN:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"the app was still unknown after {limit} s")


def test_a_new_app_is_unknown_until_it_propagates_and_again_after_a_change(tmp_path, monkeypatch, keys):
    with LocalOrg(tmp_path / "org", propagation_s=PROPAGATION_S) as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_bundle))
        sf = soap_login(org)
        name = create_connected_app(sf, keys, isConsumerSecretOptional=True)
        started = time.monotonic()
        eca, eca_key = _external_client_app(sf, keys)
        signed = assertion(keys, iss=consumer_key(sf, name), sub=ADMIN_USERNAME)
        eca_signed = assertion(keys, iss=eca_key, sub=ADMIN_USERNAME)
        assert token_request(org, signed).json() == UNKNOWN
        assert token_request(org, eca_signed).json() == UNKNOWN
        authorize = requests.get(f"{org.url}/services/oauth2/authorize", verify=org.ca_bundle, timeout=10,
                                 params={"response_type": "code", "client_id": consumer_key(sf, name),
                                         "redirect_uri": "http://localhost:1717/OauthRedirect"})
        assert authorize.status_code == 400 and "invalid_client_id" in authorize.text
        # at least PROPAGATION_S after the save (a bit less, measured from just after it), and soon after that
        assert _known_after(org, signed, started, limit=PROPAGATION_S + 2) >= PROPAGATION_S - 0.5
        assert token_request(org, signed).status_code == 200
        _known_after(org, eca_signed, started, limit=PROPAGATION_S + 2)
        assert token_request(org, eca_signed).json()["error"] == "invalid_grant"  # known; self-authorize

        app = sf.mdapi.ConnectedApp.read([name])
        app.description = "changed"
        app.oauthConfig.consumerKey = None  # Salesforce refuses a consumer key on update
        sf.mdapi.ConnectedApp.update([app])
        assert token_request(org, signed).json() == UNKNOWN
        sf.mdapi.ExtlClntAppOauthSettings.update([sf.mdapi.ExtlClntAppOauthSettings(
            fullName=f"{eca}OAuth", externalClientApplication=eca, label=eca, commaSeparatedOauthScopes="Api, Web")])
        assert token_request(org, eca_signed).json() == UNKNOWN


def test_without_propagation_a_new_app_works_at_once(org, sf, keys):
    key = consumer_key(sf, create_connected_app(sf, keys))
    assert token_request(org, assertion(keys, iss=key, sub=ADMIN_USERNAME)).status_code == 200


def test_org_serve_propagation_s_delays_apps_made_by_another_process(tmp_path, monkeypatch, keys):
    state = tmp_path / "served"
    command = [sys.executable, "-m", "runbook", "org", "serve", "--state", str(state), "--port", "0",
               "--propagation-s", "600"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as served:
        try:
            lines = [served.stdout.readline() for _ in range(5)]
            assert lines[3] == "Propagation: a new or changed app answers invalid_client_id for 600 s\n", lines
            info = json.loads((state / "org.json").read_text())
            org = SimpleNamespace(url=info["url"], state_dir=state, ca_bundle=info["ca_bundle"])
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", info["ca_bundle"])
            sf = soap_login(org)
            key = consumer_key(sf, create_connected_app(sf, keys))
            assert token_request(org, assertion(keys, iss=key, sub=ADMIN_USERNAME)).json() == UNKNOWN
        finally:
            served.send_signal(signal.SIGTERM)
            assert served.wait(timeout=10) == 0
