"""No delivery is a fact, not a gap (issue 18.7): every (account, day) Meta answered without
a row is recorded as collected with no delivery, coverage says ``no delivery`` (not
``missing``), and a stored row Meta drops inside the restatement window is removed, the run
saying how many. Against the Meta simulator over real HTTP; SQLite, PostgreSQL, PgBouncer."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from cronkeeper.coverage import day_states, load_coverage
from cronkeeper.jobs.collect_daily import no_delivery_days
from cronkeeper.sandbox import MetaAccount, MetaSimulator
from cronkeeper.storage.schema import meta_daily_insights, meta_no_delivery_days
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import DAY, META_TOKEN, Harness

pytestmark = pytest.mark.sql

QUIET = DAY - timedelta(days=1)


def settings(sandbox: Sandbox, harness: Harness, sim: MetaSimulator, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "meta_access_token": META_TOKEN,
        "meta_api_base": sandbox.meta(sim),
        "meta_api_version": "v27.0",
        "meta_ad_account_ids": ("1001",),
        "meta_lookback_days": 3,
    }
    values.update(overrides)
    return harness.settings(**values)


def test_the_days_without_a_row_are_the_range_minus_the_answer() -> None:
    since = DAY - timedelta(days=2)
    assert no_delivery_days(since, DAY, {since, DAY}) == [QUIET]
    assert no_delivery_days(DAY, DAY, {DAY}) == []


def test_coverage_calls_an_answered_empty_day_no_delivery() -> None:
    states = day_states({DAY}, DAY, 3, 1, no_delivery={QUIET})
    assert list(states.values()) == ["missing", "no delivery", "restating"]


async def test_a_day_meta_answers_without_a_row_is_recorded_as_no_delivery(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = MetaSimulator(
        [MetaAccount("1001", no_delivery_days=frozenset({QUIET}))], access_token=META_TOKEN
    )
    config = settings(sandbox, harness, sim)
    outcome = await harness.run("collect-daily", config)

    assert (outcome.status, outcome.summary.records_count) == ("success", 2)
    stored = [r["date"] for r in await harness.rows(meta_daily_insights, "date")]
    assert QUIET not in stored and DAY in stored
    empty = await harness.rows(meta_no_delivery_days, "date")
    assert [(r["ad_account_id"], r["date"]) for r in empty] == [("1001", QUIET)]

    now = harness.clock() + timedelta(days=2)
    (coverage,) = await load_coverage(harness.engine, config, now, days=5)
    assert coverage.days[QUIET] == "no delivery"
    assert coverage.as_json()["noDelivery"] == 1


async def test_a_row_meta_drops_inside_the_window_is_removed_and_counted(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = MetaSimulator([MetaAccount("1001")], access_token=META_TOKEN)
    config = settings(sandbox, harness, sim)
    first = await harness.run("collect-daily", config)
    assert first.summary.records_count == 3 and first.message == ""

    sim.accounts["1001"] = dataclasses.replace(
        sim.accounts["1001"], no_delivery_days=frozenset({QUIET})
    )
    second = await harness.run("collect-daily", config)

    assert second.status == "success"
    assert "removed 1 stored row of days Meta now answers without a row" in second.message
    stored = [r["date"] for r in await harness.rows(meta_daily_insights, "date")]
    assert QUIET not in stored and len(stored) == 2
    assert [r["date"] for r in await harness.rows(meta_no_delivery_days)] == [QUIET]

    # Meta restates the day with delivery again: it is a collected day, no longer empty.
    sim.accounts["1001"] = dataclasses.replace(sim.accounts["1001"], no_delivery_days=frozenset())
    third = await harness.run("collect-daily", config)
    assert "removed" not in third.message
    assert await harness.rows(meta_no_delivery_days) == []
    assert len(await harness.rows(meta_daily_insights)) == 3
