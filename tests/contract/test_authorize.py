"""The web server flow's authorize endpoint, asked by someone who has not logged in."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

pytestmark = pytest.mark.live_org

PASSWORD_FIELD = re.compile(r"<input\b[^>]*\btype=[\"']?password\b", re.I)


def test_anonymous_authorize_gets_a_login_page_and_never_a_code(target, jwt_app):
    """[D] OAuth 2.0 web server flow doc (real-orgs-2026 §4): /services/oauth2/authorize shows a caller with no
    session a login page (username and password); it never redirects to the callback with a code."""
    url = f"{target.login_url}/services/oauth2/authorize?" + urlencode(
        {"response_type": "code", "client_id": jwt_app.consumer_key, "redirect_uri": jwt_app.callback_url})
    browser = requests.Session()
    for _hop in range(6):  # Salesforce may redirect to its login page first; follow, but never to the callback
        answer = browser.get(url, allow_redirects=False, timeout=30)
        if answer.status_code not in (301, 302, 303, 307, 308):
            break
        url = urljoin(url, answer.headers["Location"])
        assert not url.startswith(jwt_app.callback_url), f"redirected to the callback: {url.split('?')[0]}"
        assert "code" not in parse_qs(urlsplit(url).query), "a redirect carries a code"
    assert answer.status_code == 200, answer.status_code
    assert answer.headers.get("Content-Type", "").startswith("text/html")
    assert PASSWORD_FIELD.search(answer.text), "the page has no password field"
