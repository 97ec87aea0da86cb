"""The JWT bearer exchange (OAuth 2.0 JWT Bearer Flow for server-to-server integration), as Salesforce answers it."""

from __future__ import annotations

import secrets
import string

import pytest

from runbook.errors import LoginError
from runbook.phases.certificate import ensure_certificate
from runbook.phases.jwt_bearer import jwt_login

pytestmark = pytest.mark.live_org


def test_jwt_login_with_the_apps_key_gets_a_token_for_the_admin(target, jwt_app):
    """[D] JWT bearer flow doc: a JWT signed with the key of the app's certificate, for a pre-authorized user,
    is exchanged for an access token; the identity URL names the org (00D…) and the user (005…)."""
    result, token = jwt_login(consumer_key=jwt_app.consumer_key, username=target.username,
                              key_path=jwt_app.key_path, login_url=target.login_url)
    assert token
    assert result.username == target.username
    assert result.org_id.startswith("00D") and result.user_id.startswith("005")


def test_jwt_login_signed_with_another_key_is_refused_as_an_invalid_assertion(target, jwt_app, tmp_path):
    """[O] wire facts §6 (frankkessler/salesforce-laravel-oauth2-rest#68): a JWT whose signature does not
    match the app's certificate is refused with ``invalid_grant`` / ``invalid assertion``."""
    other = ensure_certificate(workdir=tmp_path, app_name="Rbk_Ct_other")
    with pytest.raises(LoginError) as refused:
        jwt_login(consumer_key=jwt_app.consumer_key, username=target.username, key_path=other.key_path,
                  login_url=target.login_url)
    assert refused.value.error == "invalid_grant"
    assert refused.value.description == "invalid assertion"


def test_jwt_login_with_an_unknown_consumer_key_is_refused_as_an_invalid_client_id(target, jwt_app):
    """[O] wire facts §6 (forrest#184; simple-salesforce test_login.py [V]): an ``iss`` no app has is refused
    with ``invalid_client_id`` / ``client identifier invalid`` (the answer a new app gives while it propagates)."""
    unknown = "3MVG9" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(80))
    with pytest.raises(LoginError) as refused:
        jwt_login(consumer_key=unknown, username=target.username, key_path=jwt_app.key_path,
                  login_url=target.login_url, propagation_timeout=0)
    assert refused.value.error == "invalid_client_id"
    assert refused.value.description == "client identifier invalid"
