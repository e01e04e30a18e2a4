"""collect-benchmarks on a hand-made week, and its pure parts (percentiles, metrics)."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.jobs.collect_benchmarks import (
    AccountWeek,
    account_metrics,
    compute_benchmarks,
    percentile_cont,
    week_window,
)
from cronkeeper.storage.schema import accounts, meta_daily_insights, weekly_benchmarks
from tests.jobs.helpers import DAY, Harness

WEEK_START = DAY - timedelta(days=6)
NOW = datetime(2026, 11, 1, tzinfo=UTC)

# -- percentile_cont ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0.25, 1.75),
        ([1.0, 2.0, 3.0, 4.0], 0.75, 3.25),
        ([4.0, 1.0, 3.0, 2.0], 0.75, 3.25),  # order of the input does not matter
        ([10.0, 20.0, 25.0, 30.0], 0.25, 17.5),
        ([0.5, 1.0, 1.0], 0.25, 0.75),
        ([7.0], 0.25, 7.0),
        ([7.0], 0.75, 7.0),
        ([1.0, 9.0], 0.0, 1.0),
        ([1.0, 9.0], 1.0, 9.0),
        ([3.0, 3.0, 3.0], 0.5, 3.0),
    ],
)
def test_percentile_cont_known_values(values: list[float], q: float, expected: float) -> None:
    assert percentile_cont(values, q) == expected


@pytest.mark.parametrize("q", [-0.01, 1.01, float("nan")])
def test_percentile_cont_rejects_a_quantile_outside_0_1(q: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile_cont([1.0], q)


def test_percentile_cont_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile_cont([], 0.5)


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=40))
def test_percentile_cont_agrees_with_statistics_inclusive_quantiles(values: list[float]) -> None:
    if len(values) == 1:
        assert [percentile_cont(values, q) for q in (0.25, 0.5, 0.75)] == values * 3
        return
    reference = statistics.quantiles(values, n=4, method="inclusive")
    ours = [percentile_cont(values, q) for q in (0.25, 0.5, 0.75)]
    assert ours == pytest.approx(reference, rel=1e-9, abs=1e-6)
    assert min(values) <= ours[0] <= ours[1] <= ours[2] <= max(values)


@pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer
async def test_percentile_cont_equals_postgresqls(engine: AsyncEngine, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's percentile_cont is the reference")
    rng = random.Random(7)
    samples = [[rng.uniform(0, 100) for _ in range(n)] for n in (1, 2, 3, 4, 5, 8, 13, 50)]
    samples.append([0.01, 0.025, 0.0, 0.04])
    statement = text(
        "SELECT percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY v)"
        " FROM unnest(CAST(:values AS float8[])) AS t(v)"
    )
    async with engine.connect() as conn:
        for values in samples:
            theirs = (await conn.execute(statement, {"values": values})).scalar_one()
            assert [percentile_cont(values, q) for q in (0.25, 0.5, 0.75)] == list(theirs)


# -- metrics --------------------------------------------------------------------------------


def week(industry: str, spend: str, impressions: int, clicks: int, conversions: str) -> AccountWeek:
    return AccountWeek("1", industry, Decimal(spend), impressions, clicks, Decimal(conversions))


def test_account_metrics_leave_out_zero_denominators() -> None:
    assert account_metrics(week("x", "40", 4000, 40, "4")) == {
        "ctr": 0.01,
        "cpm": 10.0,
        "cpc": 1.0,
        "cpa": 10.0,
    }
    assert account_metrics(week("x", "90", 3000, 0, "0")) == {"ctr": 0.0, "cpm": 30.0}
    assert account_metrics(week("x", "0", 0, 0, "0")) == {}


def test_compute_benchmarks_counts_each_metrics_own_sample() -> None:
    found = compute_benchmarks(
        [
            week("Retail", "40", 4000, 40, "4"),
            week("Retail", "90", 3000, 0, "0"),
            week("Retail", "0", 0, 0, "0"),
            week("SaaS", "0", 0, 0, "0"),
        ]
    )
    assert sorted(found) == ["Retail", "SaaS"]
    assert found["SaaS"] == []
    sizes = {b.metric: b.sample_size for b in found["Retail"]}
    assert sizes == {"ctr": 2, "cpc": 1, "cpm": 2, "cpa": 1}


def test_the_window_is_the_seven_days_ending_on_the_run_date() -> None:
    assert week_window(date(2026, 11, 19)) == (date(2026, 11, 13), date(2026, 11, 19))


# -- the job on both backends ---------------------------------------------------------------

ACCOUNTS = [  # page id, ad account, industry, active
    ("r1", "101", "Retail", True),
    ("r2", "102", "Retail", True),
    ("r3", "103", "Retail", True),
    ("r4", "104", "Retail", False),  # inactive: its spend in the window still counts
    ("r5", "105", "Retail", True),  # no delivery at all: in no metric
    ("s1", "201", "SaaS", True),
    ("n1", "301", None, True),  # no industry: unknown
]  # ad account 999 has insights but no accounts row: unknown

INSIGHTS = [  # ad account, day offset from WEEK_START, spend, impressions, clicks, conversions
    ("101", 0, "10.00", 1000, 10, "1"),
    ("101", 6, "30.00", 3000, 30, "3"),
    ("101", -1, "1000.00", 10, 10, "10"),  # the day before the window
    ("101", 7, "1000.00", 10, 10, "10"),  # the day after the run date
    ("102", 2, "50.00", 2000, 50, "0"),
    ("103", 3, "90.00", 3000, 0, "0"),
    ("104", 4, "20.00", 1000, 40, "5"),
    ("105", 1, "0", 0, 0, "0"),
    ("201", 5, "12.34", 1234, 12, "2"),
    ("301", 5, "5.00", 500, 5, "1"),
    ("999", 2, "3.00", 100, 1, "0"),
    ("999", 3, "5.00", 100, 3, "0"),
]

EXPECTED = {  # (industry, metric): (p25, p50, p75, sample size)
    ("Retail", "ctr"): (0.0075, 0.0175, 0.02875, 4),
    ("Retail", "cpc"): (0.75, 1.0, 1.0, 3),
    ("Retail", "cpm"): (17.5, 22.5, 26.25, 4),
    ("Retail", "cpa"): (5.5, 7.0, 8.5, 2),
    ("SaaS", "ctr"): (12 / 1234, 12 / 1234, 12 / 1234, 1),
    ("SaaS", "cpc"): (12.34 / 12, 12.34 / 12, 12.34 / 12, 1),
    ("SaaS", "cpm"): (10.0, 10.0, 10.0, 1),
    ("SaaS", "cpa"): (6.17, 6.17, 6.17, 1),
    ("unknown", "ctr"): (0.0125, 0.015, 0.0175, 2),
    ("unknown", "cpc"): (1.25, 1.5, 1.75, 2),
    ("unknown", "cpm"): (17.5, 25.0, 32.5, 2),
    ("unknown", "cpa"): (5.0, 5.0, 5.0, 1),
}


async def load(harness: Harness) -> None:
    await harness.insert(
        accounts,
        [
            {
                "id": page,
                "name": page,
                "meta_ad_account_id": ad,
                "industry": industry,
                "active": active,
                "updated_at": NOW,
            }
            for page, ad, industry, active in ACCOUNTS
        ],
    )
    await harness.insert(
        meta_daily_insights,
        [
            {
                "ad_account_id": ad,
                "date": WEEK_START + timedelta(days=offset),
                "spend": Decimal(spend),
                "impressions": impressions,
                "clicks": clicks,
                "reach": impressions // 2,
                "conversions": Decimal(conversions),
                "currency": "USD",
                "collected_at": NOW,
            }
            for ad, offset, spend, impressions, clicks, conversions in INSIGHTS
        ],
    )


async def benchmarks(harness: Harness) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    rows = await harness.rows(weekly_benchmarks, "week_start", "industry", "metric")
    assert {r["currency"] for r in rows} <= {"USD"}
    return {
        (r["week_start"], r["industry"], r["metric"]): (
            r["p25"],
            r["p50"],
            r["p75"],
            r["sample_size"],
        )
        for r in rows
    }


def approx(expected: dict[tuple[str, str], tuple[float, float, float, int]]) -> Any:
    return {
        (WEEK_START, industry, metric): pytest.approx(values, rel=1e-12)
        for (industry, metric), values in expected.items()
    }


async def test_percentiles_per_industry_with_unknown_and_zero_denominators(
    harness: Harness,
) -> None:
    await load(harness)
    outcome = await harness.run("collect-benchmarks", harness.settings())

    assert (outcome.status, outcome.summary.records_count, outcome.message) == ("success", 12, "")
    assert outcome.row.report_date == DAY
    assert await benchmarks(harness) == approx(EXPECTED)
    rows = await harness.rows(weekly_benchmarks, "industry", "metric")
    assert {r["computed_at"] for r in rows} == {harness.clock()}
    assert all(isinstance(r["p50"], float) for r in rows)


async def test_rerunning_the_same_week_changes_no_row_count(harness: Harness) -> None:
    await load(harness)
    await harness.run("collect-benchmarks", harness.settings())
    harness.clock.advance(hours=1)
    outcome = await harness.run("collect-benchmarks", harness.settings())

    assert (outcome.status, outcome.summary.records_count) == ("success", 12)
    assert await harness.count(weekly_benchmarks) == 12
    assert await benchmarks(harness) == approx(EXPECTED)


async def test_a_rerun_removes_benchmarks_that_no_longer_have_a_sample(
    harness: Harness,
) -> None:
    await load(harness)
    await harness.run("collect-benchmarks", harness.settings())
    other_week = {
        "week_start": WEEK_START - timedelta(days=7),
        "industry": "SaaS",
        "currency": "USD",
        "metric": "ctr",
        "p25": 1.0,
        "p50": 2.0,
        "p75": 3.0,
        "sample_size": 9,
        "computed_at": NOW,
    }
    await harness.insert(weekly_benchmarks, [other_week])
    async with harness.engine.begin() as conn:  # SaaS's only account moves to Retail,
        await conn.execute(update(accounts).where(accounts.c.id == "s1").values(industry="Retail"))
        await conn.execute(  # and no Retail account converts any more
            update(meta_daily_insights)
            .where(meta_daily_insights.c.ad_account_id.in_(["101", "104", "201"]))
            .values(conversions=0)
        )
    outcome = await harness.run("collect-benchmarks", harness.settings())

    assert (outcome.status, outcome.summary.records_count) == ("success", 7)
    found = await benchmarks(harness)
    assert sorted(k[1:] for k in found if k[0] == WEEK_START) == [
        ("Retail", "cpc"),
        ("Retail", "cpm"),
        ("Retail", "ctr"),
        ("unknown", "cpa"),
        ("unknown", "cpc"),
        ("unknown", "cpm"),
        ("unknown", "ctr"),
    ]
    assert found[(WEEK_START, "Retail", "ctr")][3] == 5
    assert (other_week["week_start"], "SaaS", "ctr") in found


async def test_a_week_without_insights_is_success_with_nothing_written(
    harness: Harness,
) -> None:
    await load(harness)
    outcome = await harness.run("collect-benchmarks", harness.settings(), day=DAY + timedelta(30))

    assert (outcome.status, outcome.summary.records_count, outcome.message) == ("success", 0, "")
    assert await harness.count(weekly_benchmarks) == 0


# -- per currency, and weeks whose insights were restated ----------------------------------


def test_money_metrics_never_mix_currencies() -> None:
    """A KRW account's CPC (about 1,000 won) next to a USD one (about 1 dollar) means nothing:
    each currency is its own sample, CTR included (one shape)."""
    found = compute_benchmarks(
        [
            AccountWeek("1", "Retail", Decimal(40), 4000, 40, Decimal(4), "USD"),
            AccountWeek("2", "Retail", Decimal(60), 3000, 40, Decimal(3), "USD"),
            AccountWeek("3", "Retail", Decimal(52000), 4000, 40, Decimal(4), "KRW"),
        ]
    )
    cpc = {(b.currency, b.metric): (b.p50, b.sample_size) for b in found["Retail"]}
    assert cpc[("USD", "cpc")] == (1.25, 2)
    assert cpc[("KRW", "cpc")] == (1300.0, 1)
    assert cpc[("KRW", "ctr")] == (0.01, 1)


async def test_the_job_stores_one_benchmark_per_currency(harness: Harness) -> None:
    await load(harness)
    async with harness.engine.begin() as conn:
        await conn.execute(
            update(meta_daily_insights)
            .where(meta_daily_insights.c.ad_account_id == "102")
            .values(currency="KRW", spend=Decimal("65000"))
        )
    outcome = await harness.run("collect-benchmarks", harness.settings())

    assert outcome.status == "success"
    rows = await harness.rows(weekly_benchmarks, "industry", "currency", "metric")
    krw = {r["metric"]: (r["p50"], r["sample_size"]) for r in rows if r["currency"] == "KRW"}
    assert krw == {"ctr": (0.025, 1), "cpc": (1300.0, 1), "cpm": (32500.0, 1)}
    retail_usd_cpc = next(
        r for r in rows if (r["industry"], r["currency"], r["metric"]) == ("Retail", "USD", "cpc")
    )
    assert retail_usd_cpc["sample_size"] == 2  # 102's won are not in the dollars' sample


async def test_a_week_whose_insights_were_restated_is_recomputed_by_the_next_run(
    harness: Harness,
) -> None:
    await load(harness)
    await harness.run("collect-benchmarks", harness.settings())
    before = await benchmarks(harness)
    harness.clock.advance(days=7)
    async with harness.engine.begin() as conn:  # collect-daily rewrote 101's conversions
        await conn.execute(
            update(meta_daily_insights)
            .where(meta_daily_insights.c.ad_account_id == "101")
            .values(conversions=Decimal(40), collected_at=harness.clock())
        )
    outcome = await harness.run("collect-benchmarks", harness.settings(), DAY + timedelta(7))

    assert outcome.status == "success"
    after = await benchmarks(harness)
    assert after[(WEEK_START, "Retail", "cpa")] != before[(WEEK_START, "Retail", "cpa")]
    rows = await harness.rows(weekly_benchmarks, "week_start")
    assert {r["computed_at"] for r in rows if r["week_start"] == WEEK_START} == {harness.clock()}

    harness.clock.advance(hours=1)  # nothing changed since: the old week is left alone
    await harness.run("collect-benchmarks", harness.settings(), DAY + timedelta(7))
    rows = await harness.rows(weekly_benchmarks, "week_start")
    assert {r["computed_at"] for r in rows if r["week_start"] == WEEK_START} == {
        harness.clock() - timedelta(hours=1)
    }
