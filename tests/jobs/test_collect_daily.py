"""collect-daily against the Meta simulator over real HTTP; the `sql` tests on every backend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from cronkeeper.sandbox import Fault, MetaAccount, MetaSimulator
from cronkeeper.sandbox.meta import DETAILS_KEY
from cronkeeper.storage.schema import accounts, meta_account_details, meta_daily_insights
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import DAY, META_TOKEN, Harness
from tests.support.waiting import eventually

# SQLite; the tests marked `sql` (the job end to end, its upserts) also run on PostgreSQL
# and through PgBouncer in transaction mode (Supabase's pooler).

ACCOUNTS = ("1001", "1002", "1003", "1004")


def meta(sandbox: Sandbox, harness: Harness, sim: MetaSimulator, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "meta_access_token": META_TOKEN,
        "meta_api_base": sandbox.meta(sim),
        "meta_api_version": "v27.0",
        "meta_ad_account_ids": ACCOUNTS,
        # One day per run here, so each request is pinned; the window has its own tests.
        "meta_lookback_days": 1,
    }
    values.update(overrides)
    return harness.settings(**values)


def simulator(*accounts: MetaAccount | str, **kwargs: Any) -> MetaSimulator:
    return MetaSimulator(accounts or ACCOUNTS, access_token=META_TOKEN, **kwargs)


def insight_keys(sim: MetaSimulator) -> list[str]:
    """The accounts in order of their first insights request (details requests left out)."""
    keys: list[str] = sim.log.keys()
    return [k for k in keys if not k.startswith(DETAILS_KEY)]


async def stored_accounts(harness: Harness) -> list[str]:
    return [r["ad_account_id"] for r in await harness.rows(meta_daily_insights, "ad_account_id")]


def expected_row(sim: MetaSimulator, account: str, collected_at: datetime) -> dict[str, Any]:
    day = sim.expected(account, DAY)
    return {
        "ad_account_id": account,
        "date": DAY,
        "spend": day.spend,
        "impressions": day.impressions,
        "clicks": day.clicks,
        "reach": day.reach,
        "conversions": Decimal(day.conversions()),
        "currency": day.currency,
        "collected_at": collected_at,
        "leads": Decimal(day.leads()),
    }


@pytest.mark.sql  # also PostgreSQL and PgBouncer
async def test_stores_one_row_per_account_with_metas_numbers(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(
        MetaAccount("1001"), MetaAccount("1002", currency="EUR"), "1003", MetaAccount("1004")
    )
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count, outcome.message) == ("success", 4, "")
    rows = await harness.rows(meta_daily_insights, "ad_account_id")
    assert rows == [expected_row(sim, a, harness.clock()) for a in ACCOUNTS]
    assert rows[1]["currency"] == "EUR"
    assert all(isinstance(r["spend"], Decimal) for r in rows)
    # conversions are one purchase count, never the sum of Meta's overlapping types
    day = sim.expected("1004", DAY)
    assert day.action("link_click") > 0
    overlapping = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
    assert len({day.action(t) for t in overlapping}) == 1
    assert day.action("purchase") > 0
    assert rows[3]["conversions"] == day.action("purchase")
    assert rows[3]["leads"] == day.action("lead") == day.action("offsite_conversion.fb_pixel_lead")


async def test_conversion_action_types_are_configurable(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator("1001")
    settings = meta(
        sandbox,
        harness,
        sim,
        meta_ad_account_ids=("1001",),
        meta_conversion_action_types=("link_click",),
    )
    await harness.run("collect-daily", settings)

    (row,) = await harness.rows(meta_daily_insights)
    assert row["conversions"] == sim.expected("1001", DAY).action("link_click")


async def test_a_day_split_over_pages_is_summed(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator(MetaAccount("1001", pages=3))
    outcome = await harness.run(
        "collect-daily", meta(sandbox, harness, sim, meta_ad_account_ids=("act_1001",))
    )

    assert outcome.status == "success"
    assert len(sim.records_for("1001")) == 3
    assert "after" in sim.records_for("1001")[2].query
    assert await harness.rows(meta_daily_insights) == [expected_row(sim, "1001", harness.clock())]


async def test_an_account_without_delivery_is_stored_with_no_row(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(MetaAccount("1001"), MetaAccount("1002", no_delivery=True))
    outcome = await harness.run(
        "collect-daily", meta(sandbox, harness, sim, meta_ad_account_ids=("1001", "1002"))
    )

    assert (outcome.status, outcome.summary.records_count) == ("success", 1)
    assert await stored_accounts(harness) == ["1001"]


async def test_retried_faults_end_in_success_after_the_waits(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator()
    sim.script("1001", Fault.status(429, retry_after="7"), Fault.status(503))
    sim.script("1002", Fault.meta_throttle(17))
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("success", 4)
    assert sorted(harness.sleep.waits) == [3.0, 6.0, 7.0]
    assert len(sim.records_for("1001")) == 3


async def test_one_account_always_failing_is_partial_and_named(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(always={"1003": Fault.status(500)})
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("partial", 3)
    assert outcome.row.status == "partial"
    assert outcome.message.startswith("skipped 1 of 4 ad accounts:")
    assert "- act_1003: " in outcome.message
    assert "still failing after 3 attempts" in outcome.message
    assert "HTTP 500" in outcome.message
    assert META_TOKEN not in outcome.message
    assert len(sim.records_for("1003")) == 3
    assert await stored_accounts(harness) == [
        "1001",
        "1002",
        "1004",
    ]


async def test_every_account_failing_is_an_error(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator(always={a: Fault.status(503) for a in ACCOUNTS})
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("error", 0)
    assert all(f"act_{a}" in outcome.message for a in ACCOUNTS)
    assert await harness.count(meta_daily_insights) == 0


async def test_expired_token_skips_the_account_after_exactly_one_request(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(always={"1002": Fault.expired_token()})
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert outcome.status == "partial"
    assert len(sim.records_for("1002")) == 1
    assert "act_1002" in outcome.message
    assert "renew META_ACCESS_TOKEN" in outcome.message
    assert harness.sleep.waits == []


async def test_a_malformed_page_fails_only_its_account_and_writes_nothing_of_it(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(MetaAccount("1001", pages=2), "1002", "1003", "1004")
    sim.script("1001", None, Fault.malformed("shape"))  # the second page is broken
    sim.script("1004", Fault.malformed("html"))
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("partial", 2)
    assert "- act_1001: Meta ad account 1001: field 'data'" in outcome.message
    assert "- act_1004: Meta ad account 1004: the answer is not JSON" in outcome.message
    assert await stored_accounts(harness) == [
        "1002",
        "1003",
    ]


@pytest.mark.sql  # also PostgreSQL and PgBouncer
async def test_rerunning_the_same_date_changes_no_row_count(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(MetaAccount("1001", pages=2), "1002", "1003", "1004")
    settings = meta(sandbox, harness, sim)
    first = await harness.run("collect-daily", settings)
    before = await harness.rows(meta_daily_insights, "ad_account_id")
    harness.clock.advance(hours=1)
    second = await harness.run("collect-daily", settings)
    after = await harness.rows(meta_daily_insights, "ad_account_id")

    assert (first.status, second.status) == ("success", "success")
    assert len(after) == len(before) == 4
    assert [{**r, "collected_at": None} for r in after] == [
        {**r, "collected_at": None} for r in before
    ]
    assert {r["collected_at"] for r in after} == {harness.clock()}


async def test_concurrency_is_bounded_by_the_setting(sandbox: Sandbox, harness: Harness) -> None:
    many = tuple(str(2000 + i) for i in range(12))
    sim = simulator(*many, latency=0.05)
    settings = meta(sandbox, harness, sim, meta_ad_account_ids=many, concurrency=3)
    outcome = await harness.run("collect-daily", settings)

    assert (outcome.status, outcome.summary.records_count) == ("success", 12)
    assert sim.log.max_in_flight == 3


async def test_an_account_waiting_for_its_retry_does_not_hold_up_the_others(
    sandbox: Sandbox, harness: Harness
) -> None:
    """The slow account's wait only returns once every other account was requested: a job
    that processed accounts one after another would never get there."""
    sim = simulator()
    sim.script("1001", Fault.status(503))
    others = {"1002", "1003", "1004"}

    async def hold(_: float) -> None:
        # A job that waited for 1001's retry before the others would never get past this.
        await eventually(
            lambda: others <= set(sim.log.keys()),
            what="the other accounts requested while 1001 waits for its retry",
        )

    harness.sleep.hook = hold
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim, concurrency=2))

    assert (outcome.status, outcome.summary.records_count) == ("success", 4)
    assert insight_keys(sim)[0] == "1001"


async def test_an_account_waiting_out_a_retry_gives_its_slot_to_the_next_account(
    sandbox: Sandbox, harness: Harness
) -> None:
    """At concurrency 1 the others can only be requested during 1001's wait if 1001 let go of
    the one slot while sleeping; requests in flight never exceed the bound."""
    sim = simulator()
    sim.script("1001", Fault.status(429, retry_after="30"))
    others = {"1002", "1003", "1004"}

    async def hold(_: float) -> None:
        # Had 1001 kept the only slot while sleeping, nothing else could be requested.
        await eventually(
            lambda: others <= set(sim.log.keys()),
            what="the other accounts requested while 1001 (holding no slot) waits",
        )

    harness.sleep.hook = hold
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim, concurrency=1))

    assert (outcome.status, outcome.summary.records_count) == ("success", 4)
    assert harness.sleep.waits == [30.0]
    assert sim.log.max_in_flight == 1


async def test_accounts_come_from_the_active_accounts_table_when_not_configured(
    sandbox: Sandbox, harness: Harness
) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    await harness.insert(
        accounts,
        [
            {"id": p, "name": p, "meta_ad_account_id": ad, "active": active, "updated_at": now}
            for p, ad, active in (("p1", "1003", True), ("p2", "1001", True), ("p3", "1002", False))
        ],
    )
    sim = simulator()
    outcome = await harness.run(
        "collect-daily", meta(sandbox, harness, sim, meta_ad_account_ids=())
    )

    assert (outcome.status, outcome.summary.records_count) == ("success", 2)
    assert sorted(insight_keys(sim)) == ["1001", "1003"]


async def test_no_account_anywhere_is_an_error_that_says_what_to_do(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator()
    outcome = await harness.run(
        "collect-daily", meta(sandbox, harness, sim, meta_ad_account_ids=())
    )

    assert outcome.status == "error"
    assert "ConfigError" in outcome.message
    assert "run sync-notion first or set META_AD_ACCOUNT_IDS" in outcome.message
    assert len(sim.log) == 0


async def test_missing_token_is_an_error_before_any_request(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator()
    outcome = await harness.run(
        "collect-daily", meta(sandbox, harness, sim, meta_access_token=None)
    )

    assert outcome.status == "error"
    assert "META_ACCESS_TOKEN is not set" in outcome.message
    assert len(sim.log) == 0


REFUSE_1003 = {
    "sqlite": [
        "CREATE TRIGGER refuse_1003 BEFORE INSERT ON meta_daily_insights"
        " WHEN NEW.ad_account_id = '1003'"
        " BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_1003() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.ad_account_id = '1003' THEN RAISE EXCEPTION 'simulated storage failure';"
        " END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_1003 BEFORE INSERT ON meta_daily_insights"
        " FOR EACH ROW EXECUTE FUNCTION refuse_1003()",
    ],
}


@pytest.mark.sql  # also PostgreSQL and PgBouncer
async def test_a_row_the_database_refuses_skips_only_that_account(
    sandbox: Sandbox, harness: Harness, backend: str
) -> None:
    async with harness.engine.begin() as conn:
        for statement in REFUSE_1003["sqlite" if backend == "sqlite" else "postgresql"]:
            await conn.execute(text(statement))
    sim = simulator()
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("partial", 3)
    (line,) = [x for x in outcome.message.splitlines() if x.startswith("- act_1003: ")]
    assert "fetched, but could not store the row" in line
    assert "simulated storage failure" in line
    assert "INSERT" not in line  # no SQL, no parameters
    assert await stored_accounts(harness) == ["1001", "1002", "1004"]


# --- each account's own day, and the restatement window -------------------------------------

KIRITIMATI = MetaAccount("1001", timezone_name="Pacific/Kiritimati")  # UTC+14
PAGO_PAGO = MetaAccount("1002", timezone_name="Pacific/Pago_Pago")  # UTC-11


async def stored_days(harness: Harness) -> dict[str, list[date]]:
    days: dict[str, list[date]] = {}
    for r in await harness.rows(meta_daily_insights, "ad_account_id", "date"):
        days.setdefault(r["ad_account_id"], []).append(r["date"])
    return days


async def test_accounts_at_both_ends_of_the_clock_each_get_their_own_yesterday(
    sandbox: Sandbox, harness: Harness
) -> None:
    """2026-11-20 12:00 UTC is 2026-11-21 02:00 in Kiritimati and 2026-11-20 01:00 in Pago
    Pago: a run without a date collects the 20th for one and the 19th for the other."""
    sim = simulator(KIRITIMATI, PAGO_PAGO, clock=harness.clock)
    settings = meta(sandbox, harness, sim, meta_ad_account_ids=("1001", "1002"))

    outcome = await harness.run("collect-daily", settings, explicit=False)

    assert (outcome.status, outcome.summary.records_count) == ("success", 2)
    assert await stored_days(harness) == {"1001": [date(2026, 11, 20)], "1002": [DAY]}
    rows = await harness.rows(meta_daily_insights, "ad_account_id")
    final = sim.expected("1001", date(2026, 11, 20))
    assert rows[0]["impressions"] == final.impressions  # a whole day, not a part of one


async def test_an_explicit_date_not_yet_ended_in_the_accounts_zone_is_not_collected(
    sandbox: Sandbox, harness: Harness
) -> None:
    """--date 2026-11-20 at 12:00 UTC: over in Kiritimati, still 01:00 in Pago Pago, whose
    half-hour of figures must never be stored as the whole day."""
    sim = simulator(KIRITIMATI, PAGO_PAGO, clock=harness.clock)
    settings = meta(sandbox, harness, sim, meta_ad_account_ids=("1001", "1002"))

    outcome = await harness.run("collect-daily", settings, date(2026, 11, 20))

    assert outcome.status == "success"
    assert await stored_days(harness) == {"1001": [date(2026, 11, 20)], "1002": [DAY]}
    (pago,) = [r for r in sim.log.records if r.key == "1002"]
    assert '"until":"2026-11-19"' in pago.query["time_range"]


async def test_account_details_are_stored_and_read_again_at_most_daily(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator(MetaAccount("1001", currency="KRW", timezone_name="Asia/Seoul"))
    settings = meta(sandbox, harness, sim, meta_ad_account_ids=("1001",))

    await harness.run("collect-daily", settings)
    await harness.run("collect-daily", settings)
    harness.clock.advance(hours=25)
    await harness.run("collect-daily", settings)

    assert len(sim.records_for("details:1001")) == 2
    (details,) = await harness.rows(meta_account_details)
    assert (details["timezone_name"], details["currency"]) == ("Asia/Seoul", "KRW")
    assert details["fetched_at"] == harness.clock()


async def test_an_account_whose_details_cannot_be_read_is_skipped_with_the_reason(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator()
    sim.always("details:1002", Fault.expired_token())
    outcome = await harness.run("collect-daily", meta(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("partial", 3)
    assert "act_1002" in outcome.message
    assert "time zone" in outcome.message
    assert await stored_accounts(harness) == ["1001", "1003", "1004"]
    assert sim.records_for("1002") == []  # no insights asked for a day it cannot place


async def test_malformed_details_skip_the_account(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator("1001")
    sim.always("details:1001", Fault.malformed("shape"))
    outcome = await harness.run(
        "collect-daily", meta(sandbox, harness, sim, meta_ad_account_ids=("1001",))
    )

    assert outcome.status == "error"
    assert "act_1001" in outcome.message
    assert await harness.count(meta_daily_insights) == 0


@pytest.mark.sql  # also PostgreSQL and PgBouncer
async def test_the_last_28_days_are_reread_in_one_request_chain_and_restated(
    sandbox: Sandbox, harness: Harness
) -> None:
    """Meta revises a day for 28 days: each run re-reads the window with time_increment=1
    (two pages of 25 rows), overwrites every day, and a re-run adds no row."""
    sim = simulator("1001", "1002", clock=harness.clock)
    settings = meta(
        sandbox, harness, sim, meta_ad_account_ids=("1001", "1002"), meta_lookback_days=28
    )

    first = await harness.run("collect-daily", settings)
    assert (first.status, first.summary.records_count) == ("success", 56)
    requests = sim.records_for("1001")
    assert len(requests) == 2
    assert requests[0].query["time_increment"] == "1"
    assert requests[0].query["time_range"] == '{"since":"2026-10-23","until":"2026-11-19"}'
    days = await stored_days(harness)
    assert days["1001"] == [date(2026, 10, 23) + timedelta(days=i) for i in range(28)]
    before = {
        r["date"]: r
        for r in await harness.rows(meta_daily_insights, "date")
        if r["ad_account_id"] == "1001"
    }

    harness.clock.advance(days=10)  # ten days later Meta reports more conversions for the 19th
    again = await harness.run("collect-daily", settings, DAY)
    assert again.summary.records_count == 56
    assert await harness.count(meta_daily_insights) == 56  # the same days, rewritten in place
    after = {
        r["date"]: r
        for r in await harness.rows(meta_daily_insights, "date")
        if r["ad_account_id"] == "1001"
    }
    served = sim.served("1001", DAY)
    assert served is not None
    assert after[DAY]["conversions"] == served.conversions()
    assert after[DAY]["conversions"] >= before[DAY]["conversions"]
    assert any(after[d]["conversions"] != before[d]["conversions"] for d in after)
