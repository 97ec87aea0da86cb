"""Helpers for the scratch org tests: a Dev Hub with a JWT connected app, the CLI's requests, polling."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from runbook.localorg import ADMIN_USERNAME, LocalOrg

from .support import JWT_BEARER, KeyPair, assertion, bearer, consumer_key, create_connected_app

CLI_CALLBACK = "http://localhost:1717/OauthRedirect"
VERSION = "66.0"  # what the CLI uses against the local org (its highest version at login)


@dataclass
class DevHub:
    """A served local org, its JWT app (consumer key, key pair) and an admin session through that app."""

    org: LocalOrg
    keys: KeyPair
    consumer_key: str
    token: str

    def relogin(self) -> None:
        """A new admin session (after the org's clock moved past the old one's end)."""
        response = jwt_token(self.org.url, self.org.ca_bundle, self.keys, iss=self.consumer_key, sub=ADMIN_USERNAME)
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]

    def rest(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        return call(self.org.url, token or self.token, method, path, ca=self.org.ca_bundle, **kwargs)

    def query(self, soql: str, *, token: str | None = None) -> requests.Response:
        return self.rest("GET", "query", token=token, params={"q": soql})

    def insert(self, body: dict[str, Any], *, token: str | None = None) -> requests.Response:
        return self.rest("POST", "sobjects/ScratchOrgInfo", token=token, json=body)

    def cli_body(self, **extra: Any) -> dict[str, Any]:
        return cli_body(self.consumer_key, **extra)

    def create(self, *, token: str | None = None, **extra: Any) -> dict[str, Any]:
        """Insert the CLI's request and poll it as the CLI does; the record once Active or Error."""
        response = self.insert(self.cli_body(**extra), token=token)
        assert response.status_code == 201, response.text
        return self.wait(response.json()["id"], token=token)

    def wait(self, info_id: str, *, token: str | None = None, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.rest("GET", f"sobjects/ScratchOrgInfo/{info_id}", token=token).json()
            if record["Status"] in ("Active", "Error") or time.monotonic() > deadline:
                return record
            time.sleep(0.1)

    def active_id(self, username: str) -> str:
        records = self.query(f"SELECT Id FROM ActiveScratchOrg WHERE SignupUsername = '{username}'").json()["records"]
        assert len(records) == 1, records
        return records[0]["Id"]


def call(url: str, token: str, method: str, path: str, *, ca: Any, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{url}/services/data/v{VERSION}/{path}", headers=bearer(token), verify=ca,
                            timeout=15, **kwargs)


def cli_body(consumer_key: str, **extra: Any) -> dict[str, Any]:
    """The insert body of ``sf org create scratch --edition developer``, in its byte order [O wire reference §1.2]."""
    return {"Edition": "developer", "HasSampleData": False, "DurationDays": 7, "OrgName": "Company",
            "ConnectedAppCallbackUrl": CLI_CALLBACK, "ConnectedAppConsumerKey": consumer_key,
            "Package2AncestorIds": "", **extra}


def jwt_token(org_url: str, ca: Any, keys: KeyPair, *, iss: str, sub: str, aud: str | None = None) -> requests.Response:
    """The JWT bearer exchange at ``org_url``, with ``aud`` = that URL as the CLI sends it to a scratch org."""
    return requests.post(f"{org_url}/services/oauth2/token", verify=ca, timeout=15, data={
        "grant_type": JWT_BEARER, "assertion": assertion(keys, iss=iss, sub=sub, aud=aud or org_url)})


def code_token(org_url: str, ca: Any, *, code: str, client_id: str, redirect_uri: str = CLI_CALLBACK,
               **extra: str) -> requests.Response:
    """The CLI's auth-code exchange at a scratch org: no PKCE, no secret unless given [O §1.6b]."""
    return requests.post(f"{org_url}/services/oauth2/token", verify=ca, timeout=15, data={
        "grant_type": "authorization_code", "code": code, "client_id": client_id, "redirect_uri": redirect_uri,
        **extra})


def make_dev_hub(org: LocalOrg, sf: Any, keys: KeyPair, *, profiles=("System Administrator",)) -> DevHub:
    """A JWT connected app (callback 1717, pre-authorized for ``profiles``) and the admin logged in with it."""
    key = consumer_key(sf, create_connected_app(sf, keys, profiles=profiles))
    response = jwt_token(org.url, org.ca_bundle, keys, iss=key, sub=ADMIN_USERNAME)
    assert response.status_code == 200, response.text
    return DevHub(org, keys, key, response.json()["access_token"])
