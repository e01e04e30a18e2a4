"""collect-daily at an agency's scale (issue 17): details like insights, account status,
grouped skip reasons. Real HTTP against the Meta simulator, fake time, both backends."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronkeeper.http.pacing import Pacer, PacingPolicy
from cronkeeper.jobs.collect_daily import details_due
from cronkeeper.sandbox import (
    Fault,
    MetaAccount,
    MetaQuota,
    MetaSimulator,
    QuotaPolicy,
    agency_scenario,
)
from cronkeeper.sources import AccountDetails
from cronkeeper.storage.schema import meta_account_details, meta_daily_insights
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import META_TOKEN, Harness, Outcome

pytestmark = pytest.mark.pooler


@pytest.fixture(autouse=True)
def _moving_clock(harness: Harness) -> None:
    """Every recorded sleep moves the shared fake clock: waits are 'slept' instantly."""

    async def advance(seconds: float) -> None:
        harness.clock.advance(seconds=seconds)

    harness.sleep.hook = advance


def settings(sandbox: Sandbox, harness: Harness, sim: MetaSimulator, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "meta_access_token": META_TOKEN,
        "meta_api_base": sandbox.meta(sim),
        "meta_ad_account_ids": tuple(sim.accounts),
        "meta_lookback_days": 1,
        "concurrency": 2,
    }
    values.update(overrides)
    return harness.settings(**values)


async def run(harness: Harness, settings: Any) -> Outcome:
    """A run as the runner makes it: a pacer, and a 45-minute budget to set units aside."""
    policy = PacingPolicy(settings.pacing_high_water, settings.pacing_pause)
    return await harness.run(
        "collect-daily",
        settings,
        pacer=Pacer(policy, clock=harness.clock),
        deadline=harness.clock() + timedelta(minutes=45),
    )


async def test_a_throttled_details_call_is_set_aside_and_retried_like_insights(
    sandbox: Sandbox, harness: Harness
) -> None:
    """Issue 17.1: one 429 with Retry-After: 120 on a details call (above max_wait 60 s)
    used to skip the account; now the account is set aside and read after the wait."""
    sim = MetaSimulator(["1001", "1002"], access_token=META_TOKEN)
    sim.script("details:1001", Fault.status(429, retry_after="120"))
    start = harness.clock()

    outcome = await run(harness, settings(sandbox, harness, sim))

    assert outcome.status == "success", outcome.message
    assert await harness.count(meta_daily_insights) == 2
    _, second = sim.records_for("details:1001")
    assert second.query.get("fields", "").startswith("name,timezone_name,currency")
    assert 120.0 in harness.sleep.waits
    assert harness.clock() - start >= timedelta(seconds=120)


async def test_details_that_fail_fall_back_to_the_stored_ones_and_the_message_says_so(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = MetaSimulator(["1001", "1002"], access_token=META_TOKEN)
    config = settings(sandbox, harness, sim)
    assert (await run(harness, config)).status == "success"
    harness.clock.advance(days=1)  # a new day everywhere: details are due again
    sim.always("details:1001", Fault.status(500))

    outcome = await run(harness, config)

    assert outcome.status == "success", outcome.message
    assert "act_1001: details not read again, the stored ones of 2026-11-20 used" in (
        outcome.message
    )
    assert "HTTP 500" in outcome.message
    assert len(sim.records_for("1001")) == 2  # insights read on both runs
    details = {r["ad_account_id"]: r for r in await harness.rows(meta_account_details)}
    assert details["1002"]["fetched_at"] > details["1001"]["fetched_at"]


async def test_details_are_refreshed_once_per_calendar_day_of_the_accounts_zone(
    sandbox: Sandbox, harness: Harness
) -> None:
    """New York: runs at 00:30, 23:30 (same day: no refresh), then 00:10 the next day (23 h
    after the first read, 40 min after the last run: refreshed)."""
    sim = MetaSimulator(
        [MetaAccount("1001", timezone_name="America/New_York")], access_token=META_TOKEN
    )
    config = settings(sandbox, harness, sim)
    harness.clock.now = datetime(2026, 11, 20, 5, 30, tzinfo=UTC)  # 00:30 in New York
    for step in (None, {"hours": 23}, {"minutes": 40}):
        if step:
            harness.clock.advance(**step)
        assert (await run(harness, config)).status == "success"

    reads = [r.at for r in sim.records_for("details:1001")]
    assert len(reads) == 2
    (stored,) = await harness.rows(meta_account_details)
    assert stored["fetched_at"] == harness.clock()


def test_details_due_is_a_calendar_day_of_the_accounts_zone_not_24_hours() -> None:
    seoul = AccountDetails("1", None, "Asia/Seoul", "KRW", 1)
    read = datetime(2026, 11, 20, 14, 50, tzinfo=UTC)  # 23:50 in Seoul
    assert details_due(seoul, read, read + timedelta(minutes=20))  # 00:10 the next day
    assert not details_due(seoul, read - timedelta(hours=14), read)  # 09:50 → 23:50
    assert details_due(replace(seoul, account_status=None), read, read)  # status never read


async def test_the_simulator_counts_details_calls_against_the_accounts_quota(
    sandbox: Sandbox, harness: Harness
) -> None:
    quota = MetaQuota(QuotaPolicy(account_calls=1, app_calls=100, window=3600.0))
    sim = MetaSimulator(["1001"], access_token=META_TOKEN, quota=quota)
    outcome = await harness.run("collect-daily", settings(sandbox, harness, sim))

    assert outcome.status == "error"  # the details call took the account's only call
    assert [code for _, _, code in quota.refusals] == [quota.policy.account_code]
    assert sim.records_for("details:1001")[0].status == 200


async def test_an_inactive_account_that_fails_leaves_the_run_a_success(
    sandbox: Sandbox, harness: Harness
) -> None:
    """Issue 17.2: a disabled (2) and a closed (101) account are still read; when Meta
    refuses them the run says so under "inactive", and stays ``success``."""
    sim = MetaSimulator(
        [
            MetaAccount("1001"),
            MetaAccount("1002", account_status=2),
            MetaAccount("1003", account_status=101),
            MetaAccount("1004", account_status=101),
        ],
        access_token=META_TOKEN,
    )
    sim.always("1002", Fault.meta_error(100, message="(#100) The ad account is disabled"))
    outcome = await run(harness, settings(sandbox, harness, sim))

    assert outcome.status == "success", outcome.message
    assert outcome.row.inactive_units == 1
    assert outcome.message.startswith(
        "1 of 4 ad accounts inactive at the source, not counted as failures:\n- act_1002: "
    )
    # The closed accounts still answered: their history is kept.
    assert await harness.count(meta_daily_insights) == 3
    statuses = {
        r["ad_account_id"]: r["account_status"] for r in await harness.rows(meta_account_details)
    }
    assert statuses == {"1001": 1, "1002": 2, "1003": 101, "1004": 101}


async def test_an_active_account_failing_beside_inactive_ones_is_still_partial(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = MetaSimulator(
        [MetaAccount("1001"), MetaAccount("1002"), MetaAccount("1003", account_status=2)],
        access_token=META_TOKEN,
    )
    sim.always("1002", Fault.expired_token())
    sim.always("1003", Fault.expired_token())
    outcome = await run(harness, settings(sandbox, harness, sim))

    assert outcome.status == "partial"
    lines = outcome.message.splitlines()
    assert lines[0] == "skipped 1 of 3 ad accounts:"
    assert lines[1].startswith("- act_1002: ")
    assert lines[2] == "1 of 3 ad accounts inactive at the source, not counted as failures:"


async def test_accounts_without_permission_are_failures_grouped_in_one_line(
    sandbox: Sandbox, harness: Harness
) -> None:
    """Issue 17.5: 7 accounts refused for the same cause read as one line with a count and
    the first few ids, not 7 lines of near-identical text."""
    ids = [str(1000 + i) for i in range(1, 10)]
    sim = MetaSimulator(
        [MetaAccount(i, permitted=i not in ids[:7]) for i in ids], access_token=META_TOKEN
    )
    outcome = await run(harness, settings(sandbox, harness, sim))

    assert outcome.status == "partial"
    first, group, *rest = outcome.message.splitlines()
    assert first == "skipped 7 of 9 ad accounts:"
    assert group.startswith("- 7 ad accounts: ")
    assert "(#200)" in group
    assert group.endswith("— act_1001, act_1002, act_1003, act_1004, act_1005, …")
    assert rest == []


async def test_the_agency_scenario_end_to_end_on_a_small_world(
    sandbox: Sandbox, harness: Harness
) -> None:
    """100 accounts of the documented scenario, 28-day lookback, a binding quota shared by
    details and insights on a fake clock: no active account lost, inactive ones reported as
    such, the forbidden one a failure."""
    world = agency_scenario(100, policy=QuotaPolicy(account_calls=10, app_calls=100, window=300.0))
    sim = world.simulator(
        access_token=META_TOKEN,
        quota_clock=lambda: harness.clock().timestamp(),
    )
    config = settings(
        sandbox, harness, sim, meta_lookback_days=28, concurrency=4, pacing_pause=300.0
    )
    outcome = await run(harness, config)

    assert outcome.status == "partial", outcome.message
    lines = outcome.message.splitlines()
    assert lines[0] == "skipped 1 of 100 ad accounts:", outcome.message  # the forbidden one
    assert "(#200)" in lines[1]
    # Of the 3 inactive accounts, the closed one refuses insights; the others answer.
    assert lines[2] == "1 of 100 ad accounts inactive at the source, not counted as failures:"
    stored = {r["ad_account_id"] for r in await harness.rows(meta_daily_insights)}
    assert set(world.active) <= stored
    assert sim.quota is not None
    assert not [r for r in sim.quota.refusals if r[1] in world.active]
