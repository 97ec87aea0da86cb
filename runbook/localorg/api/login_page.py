"""The login page of the web server flow: the form a caller without a session gets, and its refusal."""

from __future__ import annotations

import html

# [O] The session cookie of a Salesforce UI login is ``sid``; the refusal is the login page's own text.
SESSION_COOKIE = "sid"
LOGIN_REFUSED = ("Please check your username and password. If you still can't log in, contact your "
                 "Salesforce administrator.")


def login_form(action: str, *, username: str = "", error: str = "") -> str:
    """The login form, posting back to ``action`` (the authorize URL with its query, so nothing is lost).

    [O] The element names are login.salesforce.com's, which browser automation scripts rely on:
    ``username``, ``pw`` (id ``password``), the ``Login`` button, an ``error`` box. The layout is not.
    """
    box = f'<div id="error" class="loginError" role="alert">{html.escape(error)}</div>\n' if error else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Login | Salesforce</title></head>\n'
        f'<body><form id="login_form" name="login" method="post" action="{html.escape(action)}">\n{box}'
        '<label for="username">Username</label>\n'
        f'<input type="email" id="username" name="username" value="{html.escape(username)}" '
        'autocomplete="username">\n<label for="password">Password</label>\n'
        '<input type="password" id="password" name="pw" autocomplete="current-password">\n'
        '<input type="submit" id="Login" name="Login" value="Log In">\n</form></body></html>\n')
