"""runbook.salesforce.rest's Composite helpers against the local org: one round trip, the real cause of a failure."""

from __future__ import annotations

import pytest

from runbook.errors import SalesforceError
from runbook.localorg import ADMIN_USERNAME
from runbook.salesforce.rest import create_many, query, query_many


def test_several_queries_cost_one_round_trip_and_come_back_by_key(org, session):
    mark = len(org.call_log())
    found = query_many(session, {"me": f"SELECT Id, Username FROM User WHERE Username = '{ADMIN_USERNAME}'",
                                 "sets": "SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true"})
    assert [c.operation for c in org.call_log()[mark:]] == ["rest.composite"]
    assert found["me"][0]["Username"] == ADMIN_USERNAME and "attributes" not in found["me"][0]
    assert found["sets"] == query(session, "SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true")


def test_creates_refer_to_each_other_and_a_failure_rolls_back_all_with_its_own_error(org, session):
    admin = query(session, f"SELECT Id FROM User WHERE Username = '{ADMIN_USERNAME}'")[0]["Id"]
    assignment = {"AssigneeId": admin, "PermissionSetId": "@{ps.id}"}
    ids = create_many(session, [("ps", "PermissionSet", {"Name": "Rest_Helper_Set", "Label": "Rest Helper Set"}),
                                ("pa", "PermissionSetAssignment", assignment)])
    assert query(session, f"SELECT PermissionSetId FROM PermissionSetAssignment WHERE Id = '{ids['pa']}'") == \
        [{"PermissionSetId": ids["ps"]}]
    with pytest.raises(SalesforceError) as err:
        create_many(session, [("ok", "PermissionSet", {"Name": "Rolled_Back_Set", "Label": "Rolled Back Set"}),
                              ("dup", "PermissionSet", {"Name": "Rest_Helper_Set", "Label": "Again"})])
    assert "(dup)" in str(err.value) and err.value.code != "PROCESSING_HALTED"
    assert query(session, "SELECT Id FROM PermissionSet WHERE Name = 'Rolled_Back_Set'") == []
