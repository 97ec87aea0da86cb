"""Phase 4's form: who logs in, where; Apply does a real JWT bearer exchange and shows the hand-off."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from html import escape
from pathlib import Path

from runbook.errors import InputError
from runbook.ui.fields import choice_field, connection_fields, int_field, list_field, text_field
from runbook.ui.form import (
    Outcome,
    PhaseForm,
    Step,
    connect_org,
    overview_of,
    start_from,
    unless_batch,
)


@dataclass
class VerifyPreview:
    """What phase 4 will send: which key signs, for which app and user, to which token endpoint."""

    rows: list[tuple[str, str]]

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in self.rows)
        return f"<table>{body}</table>"


def preview_verify(*, workdir: str, username: str = "", usernames: list[str] | str = (), login_url: str = "",
                   audience: str = "", key_path: str = "", passphrase_env: str = "",
                   propagation_timeout: float = 900, web_flow: str = "auto", web_flow_timeout: float = 120,
                   **_ignored) -> VerifyPreview:
    """Phase 4's plan from the work folder's records, after phase 4's own checks (nothing is sent)."""
    from runbook.phases.jwt_bearer import check_login_url, default_audience
    from runbook.phases.verify import check_inputs, key_passphrase
    from runbook.work.workdir import open_workdir

    check_inputs(login_url=login_url, usernames=usernames, propagation_timeout=propagation_timeout,
                 web_flow=web_flow, web_flow_timeout=web_flow_timeout)
    wd = open_workdir(workdir)
    cert, app = wd.load("certificate"), wd.load("connected_app")
    if cert is None or app is None:
        raise InputError("workdir", str(wd.root), "run phases 1 and 2 first (01_certificate, 02_connected_app)")
    key = Path(key_path or cert["key_path"]).expanduser()
    if not key.is_file():
        raise InputError("key_path", str(key), "the key file does not exist: check the path, or rerun phase 1")
    key_passphrase(key, passphrase_env)
    users = [usernames] if isinstance(usernames, str) else list(usernames or ())
    url = check_login_url(login_url) or "(the org's login URL)"
    return VerifyPreview([
        ("Consumer key (iss)", app["consumer_key"]),
        ("Log in as (sub)", ", ".join(u for u in users if u) or username or "(the connected user)"),
        ("Token endpoint", f"{url}/services/oauth2/token"),
        ("Audience (aud)", audience or (default_audience(url) if login_url else "(from the login URL)")),
        ("Signed with", f"{key}{' (decrypted with $' + passphrase_env + ')' if passphrase_env else ''}")])


@unless_batch("verify")
def verify_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 4's form: who logs in, where; Apply does a real JWT bearer exchange and shows the hand-off."""
    start = start_from("verify", ns, params)
    p = start.values
    fields = [
        *connection_fields(p),
        list_field("usernames", "Log in as", p["usernames"], "usernames, comma-separated; empty: the default user"),
        text_field("username", "Default user", p["username"], "empty: the user the runbook connected as"),
        text_field("login_url", "Login URL", p["login_url"], "empty: the org's"),
        text_field("audience", "JWT audience", p["audience"], "empty: chosen from the login URL"),
        text_field("key_path", "Private key", p["key_path"], "empty: phase 1's key"),
        text_field("passphrase_env", "Passphrase variable", p["passphrase_env"],
                   "NAME of an environment variable, never the passphrase"),
        int_field("propagation_timeout", "Wait for a new app (s)", p["propagation_timeout"]),
        choice_field("web_flow", "Web server flow", p["web_flow"],
                     [("auto: when phase 2 enabled it, on the local org", "auto"),
                      ("on: wait for a browser login", "on"), ("off", "off")]),
        text_field("consumer_secret_file", "Consumer secret file", p["consumer_secret_file"],
                   "empty: the 0600 file phase 2 wrote; never the secret"),
        int_field("web_flow_timeout", "Wait for the browser (s)", p["web_flow_timeout"]),
        choice_field("prove_scratch_org", "Scratch-org proof", p["prove_scratch_org"],
                     [("auto: on the local org only", "auto"), ("on: spends one of the day's scratch orgs", "on"),
                      ("off", "off")]),
    ]

    def apply(values: dict, step: Step) -> Outcome:
        from runbook.phases import scratch_proof
        from runbook.phases.verify import verify_setup, verify_web_flow

        session = connect_org(values, step)
        step(f"JWT bearer exchange as {', '.join(values['usernames']) or values['username'] or session.username}…")
        handoff = verify_setup(session, workdir=values["workdir"], username=values["username"],
                               usernames=values["usernames"], login_url=values["login_url"],
                               audience=values["audience"], key_path=values["key_path"],
                               propagation_timeout=values["propagation_timeout"],
                               passphrase_env=values["passphrase_env"])
        step("Web server flow…")
        handoff = verify_web_flow(session, handoff, workdir=values["workdir"], web_flow=values["web_flow"],
                                  consumer_secret_file=values["consumer_secret_file"],
                                  timeout=values["web_flow_timeout"])
        step("Scratch-org proof…")
        proof = scratch_proof.prove_scratch_org(session, handoff, workdir=values["workdir"],
                                                mode=values["prove_scratch_org"])
        handoff = handoff.with_scratch_proof(proof)  # as the notebook's cell: the hand-off card shows it
        users = ", ".join(lr.username for lr in handoff.logins)
        status = f"JWT login as {users} works — consumer key {handoff.consumer_key}"
        return Outcome(handoff, status, {**values, "session": session, "handoff": handoff, "proof": proof},
                       overview_of(values["workdir"], session))

    return PhaseForm(
        phase="verify", title="Phase 4 — Verify and hand over",
        intro="What <code>sf org login jwt</code> would do: sign a JWT with phase 1's key and exchange it for a "
              "token as each user.",
        fields=fields, check=lambda v: preview_verify(**v) and None, preview=lambda v, _step: preview_verify(**v),
        apply=apply, start=start, steps=4, ns=ns, apply_label="Log in with JWT", local_preview=True)
