"""Helpers for the local org tests: a key pair with a certificate, apps made through the Metadata API,
and JWT bearer requests signed for real."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN_AUDIENCE = "https://login.salesforce.com"


@dataclass(frozen=True)
class KeyPair:
    """An RSA private key (PEM) and its self-signed certificate (PEM), as phase 1 of the runbook makes."""

    private_pem: str
    certificate_pem: str

    @classmethod
    def generate(cls, common_name: str = "runbook-test") -> KeyPair:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
                .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return cls(private, cert.public_bytes(serialization.Encoding.PEM).decode())

    @property
    def certificate_body(self) -> str:
        """The certificate without its BEGIN/END lines and newlines, as some scripts upload it."""
        return "".join(line for line in self.certificate_pem.splitlines() if "CERTIFICATE" not in line)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_connected_app(sf: Any, keys: KeyPair, *, name: str | None = None, admin_approved: bool = True,
                         profiles: tuple[str, ...] = ("System Administrator",),
                         permission_sets: tuple[str, ...] = (),
                         scopes: tuple[str, ...] = ("Api", "Web", "RefreshToken"),
                         certificate: str | None = None, **extra: Any) -> str:
    """Create a JWT-ready ConnectedApp through simple-salesforce's Metadata API client; returns its name.

    ``extra`` goes to its oauthConfig.
    """
    name = name or unique("App")
    oauth = sf.mdapi.ConnectedAppOauthConfig(callbackUrl="http://localhost:1717/OauthRedirect",
                                             certificate=certificate or keys.certificate_pem,
                                             scopes=list(scopes), isAdminApproved=admin_approved, **extra)
    sf.mdapi.ConnectedApp.create([sf.mdapi.ConnectedApp(fullName=name, label=name.replace("_", " "),
                                                        contactEmail="dev@example.com", oauthConfig=oauth,
                                                        profileName=list(profiles),
                                                        permissionSetName=list(permission_sets))])
    return name


def create_external_client_app(sf: Any, keys: KeyPair, name: str, profiles: str) -> None:
    """A JWT External Client App with its five components, via CRUD calls.

    The OAuth settings make the org generate ``<name>_oauthPlcy``, so the pre-authorizing policy is an
    upsert of that one.
    """
    md = sf.mdapi
    md.ExternalClientApplication.create([md.ExternalClientApplication(
        fullName=name, contactEmail="a@b.co", label=name, distributionState="Local", isProtected=False)])
    md.ExtlClntAppOauthSettings.create([md.ExtlClntAppOauthSettings(
        fullName=f"{name}OAuthSettings", externalClientApplication=name, label=f"{name} OAuth",
        commaSeparatedOauthScopes="Api, Web, RefreshToken")])
    md.ExtlClntAppGlobalOauthSettings.create([md.ExtlClntAppGlobalOauthSettings(
        fullName=f"{name}GlblOAuth", externalClientApplication=name, label=f"{name} Global",
        callbackUrl="http://localhost:1717/OauthRedirect", certificate=keys.certificate_pem,
        isConsumerSecretOptional=True)])
    md.ExtlClntAppOauthConfigurablePolicies.upsert([md.ExtlClntAppOauthConfigurablePolicies(
        fullName=f"{name}_oauthPlcy", externalClientApplication=name, label="policy",
        commaSeparatedProfile=profiles, permittedUsersPolicyType="AdminApprovedPreAuthorized",
        ipRelaxationPolicyType="Enforce")])
    md.ExtlClntAppConfigurablePolicies.create([md.ExtlClntAppConfigurablePolicies(
        fullName=f"{name}_defaultPolicy", externalClientApplication=name, label="plugins", isEnabled=True,
        isOauthPluginEnabled=True)])


def consumer_key(sf: Any, name: str) -> str:
    return sf.mdapi.ConnectedApp.read([name]).oauthConfig.consumerKey


def assertion(keys: KeyPair, *, iss: str, sub: str, aud: str = LOGIN_AUDIENCE, exp: Any = None,
              algorithm: str = "RS256", key: Any = None, **claims: Any) -> str:
    payload = {"iss": iss, "sub": sub, "aud": aud, "exp": int(time.time()) + 180 if exp is None else exp,
               **claims}
    if exp == "omit":
        del payload["exp"]
    return jwt.encode(payload, keys.private_pem if key is None else key, algorithm=algorithm)


def token_request(org: Any, signed: str, *, grant_type: str = JWT_BEARER) -> requests.Response:
    return requests.post(f"{org.url}/services/oauth2/token", verify=org.ca_bundle, timeout=10,
                         data={"grant_type": grant_type, "assertion": signed})


def first_id(sf: Any, soql: str) -> str:
    """The Id of the first record ``soql`` finds."""
    return sf.query(soql)["records"][0]["Id"]


def tooling_query(sf: Any, soql: str) -> dict[str, Any]:
    """The Tooling API's answer to ``soql`` (``GET …/tooling/query?q=``), through simple-salesforce."""
    return sf.restful("tooling/query", params={"q": soql})


def eca_id(sf: Any, name: str) -> str:
    """The ExternalClientApplication Id of the app ``name``, from the Tooling API (the data API refuses it)."""
    return tooling_query(sf, f"SELECT Id FROM ExternalClientApplication WHERE DeveloperName = '{name}'")[
        "records"][0]["Id"]


def app_id(sf: Any, name: str) -> str:
    """The ConnectedApplication Id of the app ``create_connected_app`` made as ``name``."""
    return first_id(sf, f"SELECT Id FROM ConnectedApplication WHERE Name = '{name.replace('_', ' ')}'")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
