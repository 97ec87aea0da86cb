"""A session with the org, and the logins that need no Salesforce CLI: an access token from the environment,
and a SOAP username/password login (also the local org's admin login).

No secret is ever a parameter: tokens and passwords come from the environment or the local org's state folder,
and never appear in a message. Which login an ``org`` name selects is ``runbook.salesforce.connector``'s.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from runbook.errors import InputError, OrgConnectionError
from runbook.salesforce.retry import RetryingSession, TrustingSession, no_answer, timeout_fix
from runbook.salesforce.urls import without_userinfo

if TYPE_CHECKING:
    from simple_salesforce import Salesforce

    from runbook.localorg import LocalOrg

DEFAULT_API_VERSION = "62.0"
ENV_TOKEN = "SF_ACCESS_TOKEN"
ENV_INSTANCE_URL = "SF_INSTANCE_URL"
ENV_USERNAME = "SF_USERNAME"
ENV_PASSWORD = "SF_PASSWORD"
ENV_SECURITY_TOKEN = "SF_SECURITY_TOKEN"
ENV_LOGIN_URL = "SF_LOGIN_URL"
LAST_SOAP_LOGIN_VERSION = "64.0"  # Salesforce retires SOAP login() from API 65.0 (and entirely in Summer '27)


@dataclass
class OrgSession:
    """An authenticated session with the org; ``sf`` is a simple-salesforce client on it."""

    instance_url: str
    access_token: str = field(repr=False)
    api_version: str
    method: str
    login_url: str
    username: str = ""
    is_local: bool = False
    local_state: Path | None = None
    relogin: Callable[[], OrgSession] | None = field(default=None, repr=False)
    verify: str | bool = True  # the CA bundle the connector trusts (a local org's CA among them), for every call
    local_org: LocalOrg | None = field(default=None, repr=False)  # the local org behind it, when served here
    prefetched: dict[str, list[dict]] = field(default_factory=dict, repr=False)  # rest.prefetch's, by SOQL
    _sf: Salesforce | None = field(default=None, repr=False)

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            from simple_salesforce import Salesforce

            self._sf = Salesforce(instance_url=self.instance_url, session_id=self.access_token,
                                  version=self.api_version, session=self.http())
        return self._sf

    def http(self, *, retrying: bool = True) -> requests.Session:
        """A new HTTP session for calls about this org, trusting what the connector trusts (``verify``).

        ``retrying=False`` for a caller that retries by itself (the JWT exchange polls, the proof's steps):
        two layers of retries would multiply the waits.
        """
        http = RetryingSession() if retrying else TrustingSession()
        http.verify = self.verify
        return http

    def reauthenticate(self) -> None:
        """Replace an expired access token by logging in again (once per expiry, by the callers)."""
        if self.relogin is None:
            raise OrgConnectionError(self.method, "the access token expired or was revoked",
                                     "get a fresh token into the environment and rerun")
        fresh = self.relogin()
        self.access_token, self.instance_url, self._sf = fresh.access_token, fresh.instance_url, None


def check_api_version(api_version: str) -> None:
    """Refuse anything but a version like "62.0" (from 50.0), naming the parameter."""
    try:
        ok = float(api_version) >= 50 and api_version.count(".") == 1
    except (TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise InputError("api_version", api_version, 'use a Salesforce API version like "62.0" (no "v")')


def soap_login(login_url: str, username: str, password: str, token: str, api_version: str,
               method: str, verify: str | bool = True) -> OrgSession:
    """A SOAP partner login; the session it returns works at ``api_version`` whatever version logged in."""
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed
    from simple_salesforce.login import SalesforceLogin

    host = login_url.removeprefix("https://").rstrip("/")
    # login() itself is made at 64.0 at most, on every host (the local org retires it from 65.0 as Salesforce
    # does); the session it returns serves every later version
    login_version = min(api_version, LAST_SOAP_LOGIN_VERSION, key=float)
    # simple-salesforce always builds https://{domain}.salesforce.com/...: the fragment cuts the suffix off
    domain = f"{host}/services/Soap/u/{login_version}#" if not host.endswith(".salesforce.com") else \
        host.removesuffix(".salesforce.com")
    http = RetryingSession()
    http.verify = verify
    statuses: list[int] = []  # every answer's status, retries included (a requests response hook)
    http.hooks["response"].append(lambda response, *args, **kwargs: statuses.append(response.status_code))
    try:
        session_id, instance = SalesforceLogin(username=username, password=password, security_token=token,
                                               domain=domain, sf_version=login_version, session=http)
    except SalesforceAuthenticationFailed as exc:
        raise _login_refusal(exc, method, username, login_url, statuses) from None
    except requests.RequestException as exc:
        slow = f"; {timeout_fix()}" if isinstance(exc, requests.Timeout) else ""
        raise OrgConnectionError(method, f"{without_userinfo(login_url)} did not answer ({no_answer(exc)})",
                                 f"check the URL and the network{slow}") from None
    return OrgSession(instance_url=f"https://{instance}", access_token=session_id, api_version=api_version,
                      method=method, login_url=login_url.rstrip("/"), username=username, verify=verify)


def _login_refusal(exc, method: str, username: str, login_url: str, statuses: list[int]) -> OrgConnectionError:
    """simple-salesforce's refusal of a SOAP login, named as what it is; ``statuses``: each HTTP answer's status.

    A SOAP fault carries Salesforce's code (INVALID_LOGIN: a wrong password, a missing security token, or a
    user locked out after too many failed logins [D: 10 by default, for 15 minutes]). An answer that is no
    SOAP fault (an outage page, a proxy; simple-salesforce then has no code) never checked the credentials;
    a 5xx or 429 was asked for again (``RetryingSession``) before it got here.
    """
    code, said = exc.code, exc.auth_message
    if code == "INVALID_LOGIN":
        return OrgConnectionError(method, f"SOAP login as {username} was refused ({code}: {said})",
                                  "check the username, password and security token; after 10 failed logins "
                                  "Salesforce locks the user out for 15 minutes by default (Setup > Users > "
                                  "Unlock, or wait)")
    if isinstance(code, str) and code:
        return OrgConnectionError(method, f"SOAP login as {username} was refused: {code}: {said}",
                                  "see Troubleshooting in the README for this code")
    status = statuses[-1] if statuses else code
    times = f" {len(statuses)} times" if len(statuses) > 1 and len(set(statuses)) == 1 else ""
    return OrgConnectionError(method, f"the org answered {status or 'no SOAP answer'}{times} to the SOAP login at "
                              f"{without_userinfo(login_url)}, never with a SOAP fault (an outage page or a proxy): "
                              "the username and password were not checked",
                              "check the org is up (status.salesforce.com) and the login URL, then rerun")


def connect_env(api_version: str, login_url: str, token_var: str = ENV_TOKEN,
                url_var: str = ENV_INSTANCE_URL) -> OrgSession:
    token, url = os.environ.get(token_var), without_userinfo(os.environ.get(url_var) or "")
    method = f"an access token from ${token_var} and ${url_var}"
    if not token or not url:
        missing = " and ".join(f"${v}" for v, value in ((token_var, token), (url_var, url)) if not value)
        raise OrgConnectionError(method, f"{missing} not set", f"export {token_var} and {url_var}")
    if not url.startswith("https://"):
        raise OrgConnectionError(method, f"${url_var} is not an https:// URL",
                                 "set it to the instance URL, e.g. https://mydomain.my.salesforce.com")
    return OrgSession(instance_url=url.rstrip("/"), access_token=token, api_version=api_version,
                      method=method, login_url=(login_url or url).rstrip("/"))


def connect_password(api_version: str, login_url: str, user_var: str = ENV_USERNAME, password_var: str = ENV_PASSWORD,
                     token_var: str = ENV_SECURITY_TOKEN, *, verify: str | bool = True,
                     prompted: Mapping[str, str] | None = None) -> OrgSession:
    """A SOAP login with the credentials in the variables named, or what a prompt gave under those names
    (``prompted``: ``ask_credentials`` in a notebook keeps them in memory, never in the environment)."""
    method = f"username/password from ${user_var} and ${password_var} (SOAP login)"

    def value(name: str) -> str:
        return (prompted or {}).get(name) or os.environ.get(name, "")

    username, password = value(user_var), value(password_var)
    if not username or not password:
        missing = " and ".join(f"${v}" for v, value in ((user_var, username), (password_var, password)) if not value)
        raise OrgConnectionError(method, f"{missing} not set",
                                 f"export {user_var} and {password_var} (and {token_var})")
    url = login_url or os.environ.get(ENV_LOGIN_URL, "https://login.salesforce.com")
    if not url.startswith("https://127.0.0.1"):
        warnings.warn("Salesforce retires SOAP login() from API 65.0 and in Summer '27: prefer a Salesforce CLI "
                      "alias (sf org login web) or an access token", FutureWarning, stacklevel=2)
    return soap_login(url, username, password, value(token_var), api_version, method, verify)
