"""collect-benchmarks: weekly p25/p50/p75 of CTR, CPC, CPM and CPA per industry and currency
(unit: one industry). No API: it reads ``meta_daily_insights`` and ``accounts``.

For run date D the window is D−6 … D (``week_start`` = D−6). Each ad account with insight rows
in the window is summed over the week (one ``GROUP BY`` query, the same on both dialects),
then the metrics and percentiles are computed here in Python: :func:`percentile_cont` is
PostgreSQL's ``percentile_cont`` (linear interpolation), so SQLite and PostgreSQL store the
same numbers.

Decisions, for the operator:

- CTR is a ratio (clicks / impressions), not a percentage; CPC, CPM, CPA are in the account
  currency, so every benchmark is per (industry, currency): a KRW CPC and a USD CPC are never
  in one sample. CTR has no currency but is stored per currency too, for one shape. An account
  without a stored currency counts under ``unknown``.
- Meta rewrites the last 28 days of insights on every collect-daily run (restatement) and a
  backfill can rewrite any week: each run also recomputes every earlier week whose insights
  were collected after its benchmarks were computed, and only those (found among the rows
  collected since the last computation: the cost does not grow with the history).
- An account with a zero denominator is left out of that metric only; a metric with no account
  is not written. ``sample_size`` is the number of accounts behind each metric.
- An ad account with no ``accounts`` row, or a row without an industry, counts as ``unknown``.
  Inactive accounts count too: their spend in the window is real.
- A re-run replaces the week's benchmarks: rows of that week for a metric or an industry that
  no longer has a sample are deleted, so the table always equals the computation.
- A window without any insight row is ``success`` with 0 records (nothing to benchmark is not
  a failure of this job; collect-daily's own health says whether data is missing); nothing is
  written or deleted then.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from cronkeeper.errors import LeaseLost
from cronkeeper.jobs._common import describe_failure, for_each, storage_error
from cronkeeper.jobs.base import JobContext
from cronkeeper.ledger import RunTracker
from cronkeeper.storage.schema import (
    BENCHMARK_METRICS,
    accounts,
    meta_daily_insights,
    weekly_benchmarks,
)
from cronkeeper.storage.upsert import upsert

__all__ = [
    "UNKNOWN_CURRENCY",
    "UNKNOWN_INDUSTRY",
    "AccountWeek",
    "Benchmark",
    "account_metrics",
    "compute_benchmarks",
    "percentile_cont",
    "run",
    "week_window",
]

log = logging.getLogger("cronkeeper.jobs.benchmarks")

UNKNOWN_INDUSTRY = "unknown"
UNKNOWN_CURRENCY = "unknown"
QUANTILES = (0.25, 0.5, 0.75)


def week_window(day: date) -> tuple[date, date]:
    """The 7 complete days ending on the run date ``day``: (``day`` − 6, ``day``)."""
    return day - timedelta(days=6), day


def percentile_cont(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation, as PostgreSQL computes
    ``percentile_cont(q) WITHIN GROUP (ORDER BY v)`` on ``float8`` (same operations, same
    rounding). Raises ``ValueError`` for no values or ``q`` outside [0, 1].

    Not ``statistics.quantiles(method="inclusive")`` (issue 16 suggested it): it interpolates
    in another order, so about one input in six differs from PostgreSQL's figure in the last
    bits (the benchmarks would change with the backend), and on Python 3.11 it refuses a
    single value, which a week with one account has."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"the quantile must be between 0 and 1, got {q!r}")
    if not values:
        raise ValueError("percentile_cont of no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    first = math.floor(position)
    second = math.ceil(position)
    if first == second:
        return float(ordered[first])
    low, high = float(ordered[first]), float(ordered[second])
    return low + (high - low) * (position - first)


@dataclass(frozen=True)
class AccountWeek:
    """One ad account's totals over the window."""

    ad_account_id: str
    industry: str
    spend: Decimal
    impressions: int
    clicks: int
    conversions: Decimal
    currency: str = UNKNOWN_CURRENCY


@dataclass(frozen=True)
class Benchmark:
    industry: str
    currency: str
    metric: str
    p25: float
    p50: float
    p75: float
    sample_size: int


def account_metrics(week: AccountWeek) -> dict[str, float]:
    """The account's metrics whose denominator is not zero (exact in Decimal, then float)."""
    metrics: dict[str, float] = {}
    if week.impressions > 0:
        impressions = Decimal(week.impressions)
        metrics["ctr"] = float(Decimal(week.clicks) / impressions)
        metrics["cpm"] = float(1000 * week.spend / impressions)
    if week.clicks > 0:
        metrics["cpc"] = float(week.spend / Decimal(week.clicks))
    if week.conversions > 0:
        metrics["cpa"] = float(week.spend / week.conversions)
    return metrics


def compute_benchmarks(weeks: Iterable[AccountWeek]) -> dict[str, list[Benchmark]]:
    """Benchmarks by industry (every industry with an account, even without any metric), one
    sample per (industry, currency, metric): money metrics never mix currencies."""
    samples: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    for week in weeks:
        by_metric = samples[week.industry]
        for metric, value in account_metrics(week).items():
            by_metric[(week.currency, metric)].append(value)
    out: dict[str, list[Benchmark]] = {}
    for industry in sorted(samples):
        found: list[Benchmark] = []
        for currency in sorted({c for c, _ in samples[industry]}):
            for metric in BENCHMARK_METRICS:
                values = samples[industry].get((currency, metric))
                if not values:
                    continue
                p25, p50, p75 = (percentile_cont(values, q) for q in QUANTILES)
                found.append(
                    Benchmark(industry, currency, metric, p25, p50, p75, sample_size=len(values))
                )
        out[industry] = found
    return out


def _decimal(value: object) -> Decimal:
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


async def load_weeks(conn: AsyncConnection, start: date, end: date) -> list[AccountWeek]:
    """Each ad account's sums over ``start`` … ``end`` with its industry, in one query."""
    insights = meta_daily_insights
    statement = (
        select(
            insights.c.ad_account_id,
            accounts.c.industry,
            insights.c.currency,
            func.sum(insights.c.spend).label("spend"),
            func.sum(insights.c.impressions).label("impressions"),
            func.sum(insights.c.clicks).label("clicks"),
            func.sum(insights.c.conversions).label("conversions"),
        )
        .select_from(
            insights.outerjoin(accounts, accounts.c.meta_ad_account_id == insights.c.ad_account_id)
        )
        .where(insights.c.date >= start, insights.c.date <= end)
        .group_by(insights.c.ad_account_id, accounts.c.industry, insights.c.currency)
        .order_by(insights.c.ad_account_id)
    )
    return [
        AccountWeek(
            ad_account_id=str(row.ad_account_id),
            industry=(row.industry or "").strip() or UNKNOWN_INDUSTRY,
            spend=_decimal(row.spend),
            impressions=int(row.impressions or 0),
            clicks=int(row.clicks or 0),
            conversions=_decimal(row.conversions),
            currency=(row.currency or "").strip() or UNKNOWN_CURRENCY,
        )
        for row in await conn.execute(statement)
    ]


def _rows(week_start: date, found: list[Benchmark], now: datetime) -> list[dict[str, object]]:
    return [
        {
            "week_start": week_start,
            "industry": b.industry,
            "currency": b.currency,
            "metric": b.metric,
            "p25": b.p25,
            "p50": b.p50,
            "p75": b.p75,
            "sample_size": b.sample_size,
            "computed_at": now,
        }
        for b in found
    ]


CHANGES_MARGIN = timedelta(days=7)
"""How far before the newest benchmark computation changed insights are looked for."""


async def stale_weeks(conn: AsyncConnection, before: date) -> list[date]:
    """Week starts before ``before`` whose insights were collected after their benchmarks
    were computed (a restatement or a backfill rewrote them), oldest first. Two small reads:
    the benchmarked weeks, then the newest ``collected_at`` per insight day among the rows
    collected since the last computation (less :data:`CHANGES_MARGIN`).

    Only rows collected since then can be newer than a week's benchmarks: a row collected
    earlier was seen by that run, which recomputed its week. Read through
    ``idx_meta_daily_insights_collected`` (migration 0009), the cost follows what changed
    since the last run (accounts × restatement days), not the whole insight history, which
    each weekly run used to re-group (issue 17.5). A week a failed run left stale for longer
    than the margin is recomputed by ``cronkeeper backfill collect-benchmarks``."""
    table = weekly_benchmarks
    computed = {
        row.week_start: row.computed
        for row in await conn.execute(
            select(table.c.week_start, func.min(table.c.computed_at).label("computed"))
            .where(table.c.week_start < before)
            .group_by(table.c.week_start)
        )
    }
    if not computed:
        return []
    insights = meta_daily_insights
    since = max(computed.values()) - CHANGES_MARGIN
    # The rows collected since then, alone and first (a materialized CTE: SQLite and
    # PostgreSQL 12+), through the index on collected_at; grouped by date afterwards. Asked as
    # one query, SQLite's planner walks the date index for the GROUP BY instead, which is the
    # whole history.
    recent = (
        select(insights.c.date, insights.c.collected_at)
        .where(insights.c.collected_at > since)
        .cte("recent")
        .prefix_with("MATERIALIZED")
    )
    collected = {
        row.date: row.collected
        for row in await conn.execute(
            select(recent.c.date, func.max(recent.c.collected_at).label("collected")).group_by(
                recent.c.date
            )
        )
    }
    return [
        start
        for start, at in sorted(computed.items())
        if any(
            (seen := collected.get(start + timedelta(days=i))) is not None and seen > at
            for i in range(7)
        )
    ]


async def run(ctx: JobContext, day: date, run: RunTracker) -> None:
    week_start, _ = week_window(day)
    try:
        async with ctx.engine.connect() as conn:
            restated = await stale_weeks(conn, week_start)
    except Exception as exc:
        raise storage_error("could not read which weeks' insights changed", exc) from exc
    for start in restated:
        log.info("recomputing the benchmarks of the week of %s: its insights changed", start)
        await compute_week(ctx, start, run, label=f"week of {start.isoformat()}, ")
    await compute_week(ctx, week_start, run)


async def compute_week(ctx: JobContext, week_start: date, run: RunTracker, label: str = "") -> None:
    """Compute and store the benchmarks of the week that starts on ``week_start``."""
    week_end = week_start + timedelta(days=6)
    table = weekly_benchmarks
    try:
        async with ctx.engine.connect() as conn:
            weeks = await load_weeks(conn, week_start, week_end)
    except Exception as exc:
        raise storage_error("could not read the week's Meta insights", exc) from exc
    if not weeks:
        log.warning(
            "no Meta insights between %s and %s: no benchmark for that week (run collect-daily"
            " for those dates first)",
            week_start.isoformat(),
            week_end.isoformat(),
        )
        return
    by_industry = compute_benchmarks(weeks)
    try:
        async with ctx.writing() as conn:
            await conn.execute(
                delete(table).where(
                    table.c.week_start == week_start, table.c.industry.not_in(list(by_industry))
                )
            )
    except LeaseLost:
        raise
    except Exception as exc:
        raise storage_error("could not clear the week's stale benchmarks", exc) from exc

    async def store(industry: str) -> None:
        found = by_industry[industry]
        async with ctx.writing() as conn:
            await conn.execute(
                delete(table).where(
                    table.c.week_start == week_start,
                    table.c.industry == industry,
                    tuple_(table.c.currency, table.c.metric).not_in(
                        [(b.currency, b.metric) for b in found]
                    ),
                )
            )
            written = await upsert(conn, table, _rows(week_start, found, ctx.clock()))
        run.stored(written)

    def failed(industry: str, exc: Exception) -> None:
        run.skip(f"{label}industry {industry}", describe_failure(exc))

    await for_each(sorted(by_industry), store, limit=1, on_error=failed)
