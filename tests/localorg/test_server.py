"""The server itself: TLS, routing, state on disk, restarts, several orgs at once, hostile input."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import certifi
import pytest
import requests

from runbook.localorg import ADMIN_USERNAME, SEED_USERS, LocalOrg

from .conftest import soap_login
from .support import bearer


def test_tls_verifies_with_the_bundle_and_not_without(org):
    assert requests.get(f"{org.url}/services/data", verify=org.ca_bundle, timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{org.url}/services/data", verify=certifi.where(), timeout=5)
    bundle = org.ca_bundle.read_text()
    assert bundle.startswith(Path(certifi.where()).read_text()[:200])  # real CAs stay trusted too
    assert bundle.count("BEGIN CERTIFICATE") > 100


def test_serves_127_0_0_1_only(org):
    assert org.url.startswith("https://127.0.0.1:")
    port = int(org.url.rsplit(":", 1)[1])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it picks the outgoing address
            local_ip = probe.getsockname()[0]
    except OSError:
        local_ip = "127.0.0.1"
    if local_ip.startswith("127."):
        pytest.skip("no non-loopback address to try")
    with pytest.raises(OSError):
        socket.create_connection((local_ip, port), timeout=1)


def test_state_folder_holds_private_keys_credentials_and_a_marker(org):
    for name in ("ca-key.pem", "server-key.pem", "admin-credentials.json"):
        assert stat.S_IMODE((org.state_dir / name).stat().st_mode) == 0o600, name
    creds = json.loads((org.state_dir / "admin-credentials.json").read_text())
    assert creds["username"] == ADMIN_USERNAME == org.admin_username and len(creds["password"]) >= 20
    marker = json.loads((org.state_dir / "org.json").read_text())
    assert marker == {"url": org.url, "ca_bundle": str(org.ca_bundle), "admin_username": ADMIN_USERNAME,
                      "org_id": org.org_id, "pid": marker["pid"]}
    assert len(org.org_id) == 18 and org.org_id.startswith("00D")


def test_versions_need_no_session_and_list_55_to_68(org):
    versions = requests.get(f"{org.url}/services/data/", verify=org.ca_bundle, timeout=5).json()
    assert [v["version"] for v in versions] == [f"{n}.0" for n in range(55, 69)]
    assert versions[-1] == {"label": "Winter '27", "url": "/services/data/v68.0", "version": "68.0"}


def test_unknown_paths_get_salesforce_not_found(org, admin_token):
    response = requests.get(f"{org.url}/services/data/v62.0/nothing", headers=bearer(admin_token),
                            verify=org.ca_bundle, timeout=5)
    assert response.status_code == 404
    assert response.json() == [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


def _free_port(avoid: int) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port != avoid:
            return port


def test_state_survives_a_restart_on_a_new_port(tmp_path, monkeypatch):
    state = tmp_path / "org"
    with LocalOrg(state) as first:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(first.ca_bundle))
        token = soap_login(first).session_id
        created = requests.post(f"{first.url}/services/data/v62.0/sobjects/PermissionSet",
                                headers=bearer(token), json={"Name": "Kept", "Label": "Kept"},
                                verify=first.ca_bundle, timeout=5)
        org_id, ca, port = first.org_id, (state / "ca-cert.pem").read_bytes(), first.port
        first.set_setting("allow_connected_apps", False)
        password = json.loads((state / "admin-credentials.json").read_text())["password"]
    assert not (state / "org.json").exists()
    with LocalOrg(state, _free_port(port), allow_connected_apps=False) as second:
        assert second.port != port and second.org_id == org_id
        assert (state / "ca-cert.pem").read_bytes() == ca  # trust handed out earlier stays valid
        assert json.loads((state / "admin-credentials.json").read_text())["password"] == password
        assert second.get_setting("allow_connected_apps") is False
        kept = requests.get(f"{second.url}/services/data/v62.0/sobjects/PermissionSet/{created.json()['id']}",
                            headers=bearer(token), verify=second.ca_bundle, timeout=5)  # sessions survive too
        assert kept.json()["Name"] == "Kept"
        assert [c.operation for c in second.call_log()] == [
            "soap.login", "rest.create.PermissionSet", "rest.retrieve.PermissionSet"]


def test_several_orgs_run_at_once_with_their_own_state(org, fresh_org):
    assert org.url != fresh_org.url and org.org_id != fresh_org.org_id
    for running in (org, fresh_org):
        assert requests.get(f"{running.url}/services/data", verify=running.ca_bundle, timeout=5).ok


def test_stop_ends_keep_alive_connections_and_the_log_stays_readable(tmp_path):
    running = LocalOrg(tmp_path / "org").start()
    session = requests.Session()
    url = f"{running.url}/services/data"
    assert session.get(url, verify=running.ca_bundle, timeout=5).ok  # the connection stays open
    running.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, verify=running.ca_bundle, timeout=5)
    assert [c.operation for c in running.call_log()] == ["rest.versions"]


def test_start_is_idempotent_and_stop_removes_the_marker(tmp_path):
    running = LocalOrg(tmp_path / "org")
    assert running.start() is running.start()
    running.stop()
    running.stop()
    assert not (tmp_path / "org" / "org.json").exists()


def test_a_taken_port_raises_instead_of_exiting(org):
    port = int(org.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        LocalOrg(org.state_dir.parent / "other", port).start()


def test_unknown_settings_are_refused(org):
    with pytest.raises(ValueError, match="allow_connected_apps"):
        org.set_setting("org_secret", "x")
    with pytest.raises(ValueError):
        org.set_setting("allow_connected_apps", "no")


def test_seeded_users_profiles_and_profile_owned_permission_sets(fresh_org):
    sf = soap_login(fresh_org)
    records = sf.query("SELECT Username, IsActive, Profile.Name FROM User")["records"]
    users = {u["Username"]: u for u in records}
    assert {u.username: (u.profile, u.active) for u in SEED_USERS} == {
        name: (u["Profile"]["Name"], u["IsActive"]) for name, u in users.items()}
    sets = sf.query("SELECT Id, IsOwnedByProfile, IsCustom, Profile.Name FROM PermissionSet")["records"]
    assert sorted(s["Profile"]["Name"] for s in sets) == sorted(
        ["System Administrator", "Standard User", "Read Only", "Minimum Access - Salesforce",
         "Minimum Access - API Only Integrations"])
    assert all(s["IsOwnedByProfile"] and not s["IsCustom"] for s in sets)
    organization = sf.query("SELECT Name, OrganizationType, IsSandbox, InstanceName, NamespacePrefix, "
                            "TrialExpirationDate FROM Organization")["records"][0]
    assert organization["Name"] == "Local Dev Hub" and organization["IsSandbox"] is False
    assert organization["InstanceName"] == "LOCAL1" and organization["TrialExpirationDate"] is None


def test_entity_expansion_bomb_gets_a_fault_quickly(org):
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
                      for i in range(1, 10))
            + ']><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
              "<login><username>&lol9;</username></login></soapenv:Body></soapenv:Envelope>")
    for path in ("/services/Soap/u/59.0", "/services/Soap/m/59.0/"):
        started = time.monotonic()
        response = requests.post(org.url + path, data=bomb, headers={"Content-Type": "text/xml"},
                                 verify=org.ca_bundle, timeout=5)
        assert time.monotonic() - started < 1
        assert response.status_code == 500
        assert "<faultcode>soapenv:Client</faultcode>" in response.text


def test_a_stalled_tls_client_does_not_block_others(org):
    with socket.create_connection(("127.0.0.1", int(org.url.rsplit(":", 1)[1]))):  # never says hello
        started = time.monotonic()
        assert requests.get(f"{org.url}/services/data", verify=org.ca_bundle, timeout=5).ok
        assert time.monotonic() - started < 2


def test_call_log_names_operations_in_order(fresh_org):
    requests.get(f"{fresh_org.url}/services/data", verify=fresh_org.ca_bundle, timeout=5)
    requests.get(f"{fresh_org.url}/services/data/v62.0/query?q=SELECT+Id+FROM+Profile",
                 verify=fresh_org.ca_bundle, timeout=5)
    requests.post(f"{fresh_org.url}/services/data/v62.0/sobjects/PermissionSet", json={},
                  verify=fresh_org.ca_bundle, timeout=5)
    calls = fresh_org.call_log()
    assert [(c.seq, c.method, c.operation, c.is_write, c.status) for c in calls] == [
        (1, "GET", "rest.versions", False, 200), (2, "GET", "rest.query", False, 401),
        (3, "POST", "rest.create.PermissionSet", True, 401)]
    assert calls[1].path == "/services/data/v62.0/query"


def test_tls_handshake_offers_modern_protocols_only(org):
    context = ssl.create_default_context(cafile=str(org.ca_bundle))
    port = int(org.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_concurrent_clients_are_served_and_logged(fresh_org):
    token = soap_login(fresh_org).session_id
    url = f"{fresh_org.url}/services/data/v62.0"

    def work(n: int) -> tuple[int, int]:
        created = requests.post(f"{url}/sobjects/PermissionSet", json={"Name": f"Parallel_{n}", "Label": "p"},
                                headers=bearer(token), verify=fresh_org.ca_bundle, timeout=10)
        counted = requests.get(f"{url}/query", params={"q": "SELECT COUNT() FROM PermissionSet"},
                               headers=bearer(token), verify=fresh_org.ca_bundle, timeout=10)
        return created.status_code, counted.status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(work, range(24))) == {(201, 200)}
    calls = fresh_org.call_log()
    assert len(calls) == 1 + 48 and [c.seq for c in calls] == sorted({c.seq for c in calls})


def test_serve_forever_prints_how_to_connect_and_stops_on_sigterm(tmp_path):
    state = tmp_path / "served"
    code = f"from runbook.localorg import serve_forever; serve_forever({str(state)!r}, 0)"
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as served:
        lines = [served.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("Local org:  https://127.0.0.1:") and "Ctrl-C" in lines[3]
        info = json.loads((state / "org.json").read_text())
        assert info["pid"] == served.pid and info["url"] in lines[0]
        assert str(state / "ca-bundle.pem") in lines[1] and ADMIN_USERNAME in lines[2]
        assert requests.get(f"{info['url']}/services/data", verify=info["ca_bundle"], timeout=5).ok
        with pytest.raises(RuntimeError, match="already served by process"):
            LocalOrg(state).start()
        served.send_signal(signal.SIGTERM)
        assert served.wait(timeout=10) == 0
    assert not (state / "org.json").exists()


def test_connections_are_kept_alive_between_calls(tmp_path):
    """Each new TLS connection costs both sides a handshake: a client reusing one must be able to."""
    with LocalOrg(tmp_path / "org") as org:
        port = int(org.url.rsplit(":", 1)[1])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                           context=ssl.create_default_context(cafile=str(org.ca_bundle)))
        conn.request("GET", "/services/data")
        first = conn.getresponse()
        assert first.status == 200 and first.getheader("Connection") != "close"
        first.read()
        sock = conn.sock
        conn.request("POST", "/services/Soap/u/62.0", body=b"<not-soap/>", headers={"Content-Type": "text/xml"})
        second = conn.getresponse()
        second.read()
        assert second.status == 500 and conn.sock is sock  # the same connection answered both
        conn.request("GET", "/services/data", headers={"Connection": "close"})
        third = conn.getresponse()
        assert third.getheader("Connection") == "close"
        third.read()
        conn.close()
        assert [c.operation for c in org.call_log()] == ["rest.versions", "unknown", "rest.versions"]
