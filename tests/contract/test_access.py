"""Pre-authorization as the org keeps it: phase 3 converges with profiles and permission sets."""

from __future__ import annotations

import pytest

from runbook.phases.access import build_access_spec, ensure_access, plan_access

from .conftest import admin_profile, new_app

pytestmark = pytest.mark.live_org


def test_pre_authorized_profile_and_new_permission_set_read_back_and_a_rerun_plans_nothing(target, tmp_path):
    """[D] ConnectedAppOauthConfig / ExtlClntAppOauthConfigurablePolicies: admin-approved apps keep the profiles
    and permission sets they pre-authorize. [U] real-orgs-2026 §4: whether a read names a permission set by
    label or by API name is not known; the plan must converge either way (no writes on a rerun)."""
    workdir = tmp_path / "work"
    permission_set = target.throwaway_name()
    target.delete_permission_set_afterwards(permission_set)  # registered before the app: deleted after it
    _plan, app = new_app(target, workdir)
    spec = build_access_spec(app_name=app.full_name, profiles=[admin_profile(target)],
                             permission_sets=[permission_set], create_permission_sets=True, workdir=workdir)

    first, _ = ensure_access(target.session, spec, workdir=workdir)
    again = plan_access(target.session, spec)

    assert [g.name for g in first.add] and first.create_sets == [permission_set]
    assert again.is_empty, str(again)
    assert sorted(g.name for g in again.keep) == sorted([admin_profile(target), permission_set])
