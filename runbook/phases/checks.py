"""Each phase's validation of its effective parameters, as ``runbook run`` checks a whole run up front.

These call the functions the phase notebooks call (``plan_certificate_request``, ``build_spec``,
``build_access_spec``, ``verify.check_inputs``), so a parameter is checked by the same code whether a
notebook cell or the batch's check meets it. Nothing is written and nothing is sent to the org.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runbook.work.workdir import open_workdir


def _certificate(p: dict[str, Any], _selected: list[str]) -> None:
    from runbook.phases.certificate import plan_certificate_request

    plan_certificate_request(workdir=p["workdir"], key_path=p["key_path"], cert_path=p["cert_path"],
                             key_size=p["key_size"], valid_days=p["valid_days"], common_name=p["common_name"],
                             app_name=p["app_name"], passphrase_env=p["passphrase_env"], rotate=p["rotate"])


def check_common(p: dict[str, Any], _selected: list[str]) -> None:
    """What every phase that talks to the org shares: the API version."""
    from runbook.salesforce import check_api_version

    if "api_version" in p:
        check_api_version(p["api_version"])


def _connected_app(p: dict[str, Any], selected: list[str]) -> None:
    """Phase 2's spec; a certificate phase 1 is still to make this run is not looked for yet."""
    from runbook.phases.connected_app import build_spec

    coming = "certificate" in selected and not p["cert_path"] and open_workdir(p["workdir"]).load("certificate") is None
    flows = p["flows"]
    if coming:
        flows = [f for f in ([flows] if isinstance(flows, str) else flows) if f != "jwt"] or ["web"]
    build_spec(app_name=p["app_name"], label=p["label"], contact_email=p["contact_email"],
               description=p["description"], callback_port=p["callback_port"], scopes=p["scopes"],
               cert_path=p["cert_path"], flows=flows, app_kind=p["app_kind"],
               consumer_secret_by=p["consumer_secret_by"], sfdx_project=p["sfdx_project"],
               create_sfdx_project=p["create_sfdx_project"], workdir=p["workdir"])


def _access(p: dict[str, Any], _selected: list[str]) -> None:
    from runbook.phases.access import build_access_spec

    build_access_spec(app_name=p["app_name"], permitted_users=p["permitted_users"],
                      ip_relaxation=p["ip_relaxation"], refresh_token_policy=p["refresh_token_policy"],
                      profiles=p["profiles"], permission_sets=p["permission_sets"],
                      create_permission_sets=p["create_permission_sets"], assign_users=p["assign_users"],
                      exclusive=p["exclusive"])


def _verify(p: dict[str, Any], _selected: list[str]) -> None:
    from runbook.phases.verify import check_inputs

    check_inputs(**{k: p[k] for k in ("login_url", "usernames", "propagation_timeout", "web_flow",
                                      "web_flow_timeout") if k in p})


PHASE_CHECKS: dict[str, Callable[[dict[str, Any], list[str]], None]] = {
    "certificate": _certificate, "connected_app": _connected_app, "access": _access, "verify": _verify}
