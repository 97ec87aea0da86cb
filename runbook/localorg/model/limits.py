"""A Dev Hub's scratch org allocations: how many it may create a day and keep active (``/limits`` reports them).

[D] "These allocations determine how many scratch orgs you can create daily, and how many can be active
at a given point" (sfdx_dev_scratch_orgs_editions_and_allocations); "You can only have 3 active orgs at
once. By default, you can create up to 6 scratch orgs a day" for a Developer Edition Dev Hub, which the
local org is (its Organization says so). Both are org settings (``daily_scratch_orgs``,
``active_scratch_orgs``), so a test or a bench can give a hub more.

What counts: [D] "Creating a new scratch org counts against your daily and active scratch org limits";
[O cli#202] a failed or deleted org still counts against the daily one. Here a signup counts from its
insert, so an insert refused by a limit does not count; [U] the day is the last 24 hours, and a
signup still in progress (New, Creating) counts as active.

The refusals are the insert's, with the texts users report [O sfdx-circleci#12, cli#202; the code
LIMIT_EXCEEDED from a test fixture]; the CLI shows them as they come ("LIMIT_EXCEEDED: The signup
request failed because ..."). [U] Which one answers when both are reached: the daily one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runbook.localorg.model.context import CLOCK_OFFSET_SETTING
from runbook.localorg.model.records import RecordError
from runbook.localorg.model.store import Store

DAILY_SETTING, ACTIVE_SETTING = "daily_scratch_orgs", "active_scratch_orgs"
DEVELOPER_EDITION_DAILY, DEVELOPER_EDITION_ACTIVE = 6, 3
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
DAILY_REACHED = "The signup request failed because this organization has reached its daily scratch org signup limit."
ACTIVE_REACHED = "The signup request failed because this organization has reached its active scratch org limit"
DAY_SECONDS = 24 * 3600
_STORE_DATE = "%Y-%m-%dT%H:%M:%S.%f%z"  # store.now_text()


@dataclass(frozen=True)
class Allocation:
    """One limit as ``/limits`` reports it."""

    max: int
    used: int

    @property
    def remaining(self) -> int:
        return max(self.max - self.used, 0)


def daily(store: Store) -> Allocation:
    """Scratch orgs requested in the last 24 hours (the org's clock), whatever became of them."""
    since = store.clock(CLOCK_OFFSET_SETTING) - DAY_SECONDS
    used = sum(1 for row in store.records("ScratchOrgInfo")
               if datetime.strptime(row["CreatedDate"], _STORE_DATE).timestamp() >= since)
    return Allocation(int(store.get_setting(DAILY_SETTING, DEVELOPER_EDITION_DAILY)), used)


def active(store: Store) -> Allocation:
    """Active scratch orgs, and signups that will be."""
    pending = len(store.find("ScratchOrgInfo", Status="New")) + len(store.find("ScratchOrgInfo", Status="Creating"))
    used = len(store.records("ActiveScratchOrg")) + pending
    return Allocation(int(store.get_setting(ACTIVE_SETTING, DEVELOPER_EDITION_ACTIVE)), used)


def check_signup(store: Store) -> None:
    """Refuse a new signup once either allocation is used up."""
    if daily(store).remaining <= 0:
        raise RecordError(LIMIT_EXCEEDED, DAILY_REACHED)
    if active(store).remaining <= 0:
        raise RecordError(LIMIT_EXCEEDED, ACTIVE_REACHED)
