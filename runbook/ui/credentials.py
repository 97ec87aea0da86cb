"""Credentials without a widget: a hidden prompt for ``org = "password"``, kept in this kernel's environment."""

from __future__ import annotations

import os


def ask_credentials(org: str) -> None:
    """For ``org="password"`` with nothing in the environment: ask for the username, password and token.

    The password and security token are read with getpass (never echoed, never in a widget or an
    output) and kept in this kernel's ``os.environ`` only, where ``runbook.org`` reads them. Any other
    ``org``, or variables already set, ask nothing. Without a frontend (papermill) it prints how to
    set the variables instead of waiting.
    """
    from getpass import getpass

    from runbook.org import ENV_PASSWORD, ENV_SECURITY_TOKEN, ENV_USERNAME

    if org != "password" or (os.environ.get(ENV_USERNAME) and os.environ.get(ENV_PASSWORD)):
        return
    try:
        if not os.environ.get(ENV_USERNAME):
            os.environ[ENV_USERNAME] = input("Salesforce username: ").strip()
        os.environ[ENV_PASSWORD] = getpass("Password (not shown, not saved): ")
        os.environ[ENV_SECURITY_TOKEN] = getpass("Security token (empty if your IP is trusted): ")
    except Exception as exc:  # papermill/nbclient: the kernel has no frontend to ask (StdinNotImplementedError)
        if type(exc).__name__ != "StdinNotImplementedError":
            raise
        print(f"No frontend to ask for a password: export {ENV_USERNAME} and {ENV_PASSWORD} "
              f"(and {ENV_SECURITY_TOKEN}) before starting Jupyter or the batch.")
        return
    print(f"{ENV_USERNAME}={os.environ[ENV_USERNAME]}; the password is set for this kernel only (not shown).")
