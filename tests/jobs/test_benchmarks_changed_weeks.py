"""collect-benchmarks recomputes only the weeks whose insights changed, found among the rows
collected since its last computation, not by grouping the whole history (issue 17.5)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from cronkeeper.jobs.collect_benchmarks import CHANGES_MARGIN, stale_weeks
from cronkeeper.storage.schema import meta_daily_insights, weekly_benchmarks
from tests.jobs.helpers import Harness

MONDAY = date(2026, 1, 5)
LONG_AGO = datetime(2026, 1, 20, tzinfo=UTC)


def _insight(day: date, at: datetime) -> dict[str, object]:
    return {
        "ad_account_id": "1",
        "date": day,
        "spend": Decimal(1),
        "impressions": 10,
        "clicks": 1,
        "reach": 5,
        "conversions": Decimal(0),
        "currency": "USD",
        "collected_at": at,
    }


def _benchmark(week: date, at: datetime) -> dict[str, object]:
    return {
        "week_start": week,
        "industry": "Retail",
        "currency": "USD",
        "metric": "ctr",
        "p25": 0.1,
        "p50": 0.1,
        "p75": 0.1,
        "sample_size": 1,
        "computed_at": at,
    }


async def test_only_weeks_with_rows_collected_after_their_computation_are_stale(
    harness: Harness,
) -> None:
    weeks = [MONDAY + timedelta(weeks=i) for i in range(40)]
    last = LONG_AGO + timedelta(weeks=40)
    await harness.insert(
        meta_daily_insights,
        [_insight(w + timedelta(days=d), LONG_AGO) for w in weeks for d in range(7)],
    )
    await harness.insert(weekly_benchmarks, [_benchmark(w, last) for w in weeks])
    async with harness.engine.begin() as conn:  # a backfill rewrote one day of week 3
        await conn.execute(
            meta_daily_insights.update()
            .where(meta_daily_insights.c.date == weeks[3] + timedelta(days=2))
            .values(collected_at=last + timedelta(hours=1))
        )
    async with harness.engine.connect() as conn:
        assert await stale_weeks(conn, weeks[-1] + timedelta(weeks=1)) == [weeks[3]]


async def test_the_lookup_reads_the_index_of_recent_collections(harness: Harness) -> None:
    """The plan walks ``idx_meta_daily_insights_collected``: its cost follows the rows
    collected since the last computation (minus the margin), not the history."""
    assert timedelta(days=7) == CHANGES_MARGIN
    explain = (  # the statement stale_weeks sends
        "WITH recent AS MATERIALIZED (SELECT date, collected_at FROM meta_daily_insights"
        " WHERE collected_at > '2026-11-01') SELECT date, max(collected_at) FROM recent"
        " GROUP BY date"
    )
    async with harness.engine.begin() as conn:
        if harness.engine.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(str(r) for r in await conn.execute(text("EXPLAIN " + explain)))
        else:
            plan = " ".join(
                str(r) for r in await conn.execute(text("EXPLAIN QUERY PLAN " + explain))
            )
    assert "idx_meta_daily_insights_collected" in plan, plan
