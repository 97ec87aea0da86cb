"""Credentials without a widget: a hidden prompt for ``org = "password"``, kept in this process's connector."""

from __future__ import annotations

import os


def ask_credentials(org: str) -> None:
    """For ``org="password"`` with nothing in the environment: ask for the username, password and token.

    The password and security token are read with getpass (never echoed, never in a widget or an output) and
    kept in memory only, by the process's connector (``runbook.salesforce.process_connector().prompted``), where
    the password login reads them; the environment is left alone. Any other ``org``, or variables already set,
    ask nothing. Without a frontend (papermill) it prints how to set the variables instead of waiting.
    """
    from getpass import getpass

    from runbook.salesforce import ENV_PASSWORD, ENV_SECURITY_TOKEN, ENV_USERNAME, process_connector

    given = process_connector().prompted
    known = {name: given.get(name) or os.environ.get(name, "") for name in (ENV_USERNAME, ENV_PASSWORD)}
    if org != "password" or all(known.values()):
        return
    try:
        asked = {ENV_USERNAME: known[ENV_USERNAME] or input("Salesforce username: ").strip(),
                 ENV_PASSWORD: getpass("Password (not shown, not saved): "),
                 ENV_SECURITY_TOKEN: getpass("Security token (empty if your IP is trusted): ")}
    except Exception as exc:  # papermill/nbclient: the kernel has no frontend to ask (StdinNotImplementedError)
        if type(exc).__name__ != "StdinNotImplementedError":
            raise
        print(f"No frontend to ask for a password: export {ENV_USERNAME} and {ENV_PASSWORD} "
              f"(and {ENV_SECURITY_TOKEN}) before starting Jupyter or the batch.")
        return
    given.update(asked)
    print(f"{ENV_USERNAME}={asked[ENV_USERNAME]}; the password is kept in this kernel's memory only (not shown).")
