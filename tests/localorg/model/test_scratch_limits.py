"""The Dev Hub's scratch org allocations: ``/limits`` reports them, the insert refuses beyond them with Salesforce's
LIMIT_EXCEEDED texts, a day is counted on the org's clock, and an org past its ExpirationDate is deleted.

Each test has a Dev Hub of its own (``LocalOrg(daily_scratch_orgs=, active_scratch_orgs=)``); the clock moves
with ``LocalOrg.advance_clock`` instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from runbook.localorg import LocalOrg

from ..conftest import soap_login
from ..scratch_support import DevHub, call, jwt_token, make_dev_hub

DAY = 24 * 3600
DAILY = "The signup request failed because this organization has reached its daily scratch org signup limit."
ACTIVE = "The signup request failed because this organization has reached its active scratch org limit"


@pytest.fixture
def make_hub(tmp_path, keys, monkeypatch) -> Iterator[Callable[..., DevHub]]:
    started: list[LocalOrg] = []

    def make(**options) -> DevHub:
        org = LocalOrg(tmp_path / f"hub{len(started)}", **options).start()
        started.append(org)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_bundle))
        return make_dev_hub(org, soap_login(org), keys)

    yield make
    for org in started:
        org.stop()


def refused(response: requests.Response, text: str) -> bool:
    return response.status_code == 400 and response.json() == [
        {"message": text, "errorCode": "LIMIT_EXCEEDED", "fields": []}]


def test_limits_report_a_developer_edition_dev_hubs_allocations(make_hub):
    hub = make_hub()
    assert hub.rest("GET", "limits").json() == {"ActiveScratchOrgs": {"Max": 3, "Remaining": 3},
                                                "DailyScratchOrgs": {"Max": 6, "Remaining": 6}}
    hub.create()
    assert hub.rest("GET", "limits").json() == {"ActiveScratchOrgs": {"Max": 3, "Remaining": 2},
                                                "DailyScratchOrgs": {"Max": 6, "Remaining": 5}}


def test_active_limit_refuses_the_insert_until_one_is_deleted(make_hub):
    hub = make_hub(active_scratch_orgs=1)
    first = hub.create()
    assert refused(hub.insert(hub.cli_body()), ACTIVE)
    hub.rest("DELETE", f"sobjects/ActiveScratchOrg/{hub.active_id(first['SignupUsername'])}")
    assert hub.create()["Status"] == "Active"
    assert hub.rest("GET", "limits").json()["DailyScratchOrgs"] == {"Max": 6, "Remaining": 4}


def test_daily_limit_counts_deleted_and_failed_signups_and_frees_up_a_day_later(make_hub):
    hub = make_hub(daily_scratch_orgs=2)
    first = hub.create()
    hub.rest("DELETE", f"sobjects/ActiveScratchOrg/{hub.active_id(first['SignupUsername'])}")
    assert hub.create(ConnectedAppConsumerKey="3MVG9" + "y" * 80)["ErrorCode"] == "C-1016"
    assert refused(hub.insert(hub.cli_body()), DAILY)
    assert hub.rest("GET", "limits").json()["ActiveScratchOrgs"] == {"Max": 3, "Remaining": 3}
    hub.org.advance_clock(DAY + 60)
    hub.relogin()
    assert hub.create()["Status"] == "Active"


def test_the_daily_limit_answers_before_the_active_one(make_hub):
    hub = make_hub(daily_scratch_orgs=1, active_scratch_orgs=1)
    hub.create()
    assert refused(hub.insert(hub.cli_body()), DAILY)


def test_a_scratch_org_past_its_expiration_date_is_deleted(make_hub):
    hub = make_hub()
    record = hub.create(DurationDays=1)
    scratch = jwt_token(record["LoginUrl"], hub.org.ca_bundle, hub.keys, iss=hub.consumer_key,
                        sub=record["SignupUsername"]).json()["access_token"]
    hub.org.advance_clock(2 * DAY)
    hub.relogin()  # the hub's own session ended with the two days
    assert hub.rest("GET", f"sobjects/ScratchOrgInfo/{record['Id']}").json()["Status"] == "Deleted"
    assert hub.query("SELECT Id FROM ActiveScratchOrg").json()["totalSize"] == 0
    assert hub.rest("GET", "limits").json()["ActiveScratchOrgs"]["Remaining"] == 3
    with pytest.raises(requests.ConnectionError):
        call(record["LoginUrl"], scratch, "GET", "query", ca=hub.org.ca_bundle, params={"q": "SELECT Id FROM User"})


def test_limit_settings_change_while_the_org_runs(make_hub):
    hub = make_hub()
    hub.org.set_setting("active_scratch_orgs", 0)
    assert refused(hub.insert(hub.cli_body()), ACTIVE)
    with pytest.raises(ValueError, match="takes a int"):
        hub.org.set_setting("daily_scratch_orgs", "many")
