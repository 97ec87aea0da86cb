"""The app as the Metadata API saves and reads it back: phase 2 converges on what the org keeps."""

from __future__ import annotations

import pytest

from runbook.apps import kind_named
from runbook.phases.connected_app import build_spec, plan_connected_app

from .conftest import CONTACT_EMAIL, DESCRIPTION, new_app

pytestmark = pytest.mark.live_org


def _rerun_plan(target, name: str, port: int, workdir, **params):
    spec = build_spec(app_name=name, contact_email=CONTACT_EMAIL, description=DESCRIPTION, callback_port=port,
                      workdir=workdir, cert_path=workdir / "keys" / "server.crt", **params)
    return plan_connected_app(target.session, spec)


def test_phase_2_creates_an_app_and_a_rerun_plans_nothing(target, tmp_path):
    """[D] Metadata API ConnectedApp / ExternalClientApplication: what create saves, read returns; so a rerun
    with the same parameters, from the same work folder or a fresh one, plans no change."""
    plan, app = new_app(target, tmp_path / "work", app_kind="auto")
    assert (plan.action, app.action) == ("create", "create")
    assert app.app_kind in ("connected_app", "external_client_app") and app.consumer_key

    again = _rerun_plan(target, app.full_name, app.callback_port, tmp_path / "work")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keys").mkdir(parents=True)
    (elsewhere / "keys" / "server.crt").write_bytes((tmp_path / "work" / "keys" / "server.crt").read_bytes())
    from_fresh_folder = _rerun_plan(target, app.full_name, app.callback_port, elsewhere)

    assert again.action == "none", str(again)
    assert from_fresh_folder.action == "none", str(from_fresh_folder)
    assert from_fresh_folder.spec.app_kind == app.app_kind  # auto keeps the kind the org has


def _scopes_read_back(target, app) -> set[str]:
    state = kind_named(app.app_kind).read(target.session, app.full_name)
    field = next(k for k in state.fields if k.endswith("scopes"))
    return {s.strip() for s in state.fields[field].split(",")}


def test_scopes_profile_and_email_read_back_as_basic_and_a_rerun_plans_nothing(target, tmp_path):
    """[D] ConnectedApp metadata doc (wire facts §1.3, real-orgs-2026 §4): Profile, Email (and Address, Phone)
    behave as, and read back as, Basic; offline_access is RefreshToken. The plan compares scopes as read back,
    so a rerun converges."""
    scopes = ["api", "profile", "email", "offline_access"]
    _plan, app = new_app(target, tmp_path / "work", scopes=scopes)

    assert _scopes_read_back(target, app) == {"Api", "Basic", "RefreshToken"}
    again = _rerun_plan(target, app.full_name, app.callback_port, tmp_path / "work", scopes=scopes)
    assert again.action == "none", str(again)
