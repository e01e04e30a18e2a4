"""Benchmark: a 90-day collect-daily backfill of 200 ad accounts, in ranges versus per date.

``cronkeeper backfill`` plans collect-daily runs in windows of ``META_LOOKBACK_DAYS`` (28)
days (:func:`cronkeeper.backfill.plan_runs`); each run reads its window for every ad
account in one ``time_increment=1`` request chain (following ``paging.next``). The reference
is the loop it replaced: one run per date, each reading one day (``meta_lookback_days=1``,
one ``run_job`` per date).

Both run the real job through the runner (lease, ledger, HTTP client, retries) on a fresh
SQLite database against the Meta simulator (a real uvicorn on loopback) answering every call
after ``--latency`` (20 ms: the comparison is about request counts, not the simulator). The
simulator's request log counts, per ad account, the insights requests, the request chains
(requests without a paging cursor) and the account-details requests (time zone and currency).

The per-date loop over all 90 dates would take minutes on this machine, so it runs over the
first ``--per-date-days`` dates of the range (all accounts) and its time is extrapolated
linearly to the whole range (each date is an independent run of the same size); its request
counts per account are exact for the dates run and are scaled the same way.

    .venv/bin/python bench/backfill_ranges.py [--accounts 200] [--days 90] [--per-date-days 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    console,
    machine_lines,
    markdown_table,
    print_table,
    run_command,
    scratch_dir,
    update_section,
    wait_until_quiet,
)

from cronkeeper.backfill import backfill
from cronkeeper.config import Settings
from cronkeeper.runner import run_job
from cronkeeper.sandbox import MetaSimulator, serve_app
from cronkeeper.sandbox.meta import DETAILS_KEY
from cronkeeper.service import Service

TOKEN = "bench-meta-token-0123456789"


@dataclass(frozen=True)
class Counts:
    """Requests per ad account, from the simulator's log."""

    insights: list[int]
    chains: list[int]
    details: list[int]
    rows: int
    runs: int
    wall: float
    statuses: dict[str, int]

    @staticmethod
    def of(
        sim: MetaSimulator,
        accounts: list[str],
        rows: int,
        runs: int,
        wall: float,
        st: Sequence[str],
    ) -> Counts:
        insights, chains, details = [], [], []
        for account in accounts:
            records = sim.log.records_for(account)
            insights.append(len(records))
            chains.append(sum(1 for r in records if "after" not in r.query))
            details.append(len(sim.log.records_for(f"{DETAILS_KEY}{account}")))
        statuses: dict[str, int] = {}
        for s in st:
            statuses[s] = statuses.get(s, 0) + 1
        return Counts(insights, chains, details, rows, runs, wall, statuses)


def settings_for(base_url: str, db: Path, accounts: list[str], lookback: int, conc: int) -> Any:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{db}",
        meta_access_token=TOKEN,
        meta_api_base=base_url,
        meta_ad_account_ids=tuple(accounts),
        meta_lookback_days=lookback,
        concurrency=conc,
        timezone="UTC",
    )


async def count_rows(service: Service) -> int:
    import sqlalchemy as sa

    from cronkeeper.storage.schema import meta_daily_insights

    async with service.engine.connect() as conn:
        value = await conn.scalar(sa.select(sa.func.count()).select_from(meta_daily_insights))
    return int(value or 0)


async def run_ranges(
    accounts: list[str], since: date, until: date, latency: float, conc: int, workdir: Path
) -> Counts:
    sim = MetaSimulator(accounts, access_token=TOKEN, latency=latency)
    with serve_app(sim.app) as base_url:
        settings = settings_for(base_url, workdir / "ranges.db", accounts, 28, conc)
        service = Service.from_settings(settings)
        try:
            await service.prepare()
            start = time.perf_counter()
            report = await backfill(service, "collect-daily", since, until)
            wall = time.perf_counter() - start
            rows = await count_rows(service)
        finally:
            await service.aclose()
    statuses = [o.status for o in report.outcomes]
    return Counts.of(sim, accounts, rows, len(report.outcomes), wall, statuses)


async def run_per_date(
    accounts: list[str], days: list[date], latency: float, conc: int, workdir: Path
) -> Counts:
    sim = MetaSimulator(accounts, access_token=TOKEN, latency=latency)
    statuses = []
    with serve_app(sim.app) as base_url:
        settings = settings_for(base_url, workdir / "per-date.db", accounts, 1, conc)
        service = Service.from_settings(settings)
        try:
            await service.prepare()
            start = time.perf_counter()
            for day in days:
                statuses.append((await run_job(service, "collect-daily", day)).status)
            wall = time.perf_counter() - start
            rows = await count_rows(service)
        finally:
            await service.aclose()
    return Counts.of(sim, accounts, rows, len(days), wall, statuses)


def spread(values: list[int], scale: float = 1.0) -> str:
    low, high = min(values) * scale, max(values) * scale
    fmt = "{:.0f}" if float(low).is_integer() and float(high).is_integer() else "{:.1f}"
    text = fmt.format(low) if low == high else f"{fmt.format(low)}–{fmt.format(high)}"
    return text


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--per-date-days", type=int, default=10, help="dates the old loop runs")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per simulator call")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.accounts <= 2000 or not 1 <= args.days <= 400:
        parser.error("--accounts must be 1-2000 and --days 1-400")
    sample = max(1, min(args.per_date_days, args.days))
    logging.getLogger("cronkeeper").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    accounts = [str(2_000_000_000 + i) for i in range(args.accounts)]
    until = datetime.now(UTC).date() - timedelta(days=1)
    since = until - timedelta(days=args.days - 1)
    workdir = scratch_dir("cronkeeper-bench-backfill-")
    busy = wait_until_quiet()
    console.print(busy)
    console.print(f"backfill in ranges: {args.accounts} accounts × {args.days} days…")
    ranges = await run_ranges(accounts, since, until, args.latency, args.concurrency, workdir)
    days = [since + timedelta(days=i) for i in range(sample)]
    console.print(f"per-date loop: {args.accounts} accounts × {sample} of {args.days} dates…")
    per_date = await run_per_date(accounts, days, args.latency, args.concurrency, workdir)
    scale = args.days / sample
    report(args, ranges, per_date, scale, sample, busy)
    return 0


def report(
    args: argparse.Namespace, ranges: Counts, per_date: Counts, scale: float, sample: int, busy: str
) -> None:
    goal = math.ceil(args.days / 28)
    headers = [
        "run",
        "runs",
        "insights requests / account",
        "request chains / account",
        "details requests / account",
        "Meta requests, all accounts",
        "rows stored",
        "wall s",
        "run statuses",
    ]

    def total(c: Counts) -> str:
        return f"{sum(c.insights) + sum(c.details):,}"

    extrapolated = sample < args.days
    rows = [
        [
            "backfill in 28-day ranges",
            str(ranges.runs),
            spread(ranges.insights),
            spread(ranges.chains),
            spread(ranges.details),
            total(ranges),
            f"{ranges.rows:,}",
            f"{ranges.wall:.1f}",
            ", ".join(f"{n} {s}" for s, n in ranges.statuses.items()),
        ],
        [
            f"per-date loop, {sample} dates measured",
            str(per_date.runs),
            spread(per_date.insights),
            spread(per_date.chains),
            spread(per_date.details),
            total(per_date),
            f"{per_date.rows:,}",
            f"{per_date.wall:.1f}",
            ", ".join(f"{n} {s}" for s, n in per_date.statuses.items()),
        ],
    ]
    if extrapolated:
        rows.append(
            [
                f"per-date loop, {args.days} dates (×{scale:g}, extrapolated)",
                str(args.days),
                spread(per_date.insights, scale),
                spread(per_date.chains, scale),
                spread(per_date.details),
                f"{sum(per_date.insights) * scale + sum(per_date.details):,.0f}",
                "—",
                f"{per_date.wall * scale:.1f}",
                "—",
            ]
        )
    full_wall = per_date.wall * scale
    chains_ok = max(ranges.chains) <= goal
    complete = ranges.rows == args.accounts * args.days
    met = chains_ok and complete and set(ranges.statuses) == {"success"}
    print_table(
        f"collect-daily backfill, {args.accounts} accounts × {args.days} days,"
        f" latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}",
        headers,
        rows,
    )
    verdict = (
        f"at most {max(ranges.chains)} request chains per account (goal ≤ ⌈{args.days}/28⌉ ="
        f" {goal}; the per-date loop makes {args.days}), {statistics.fmean(ranges.insights):.1f}"
        f" insights requests per account against {statistics.fmean(per_date.insights) * scale:.0f};"
        f" wall {ranges.wall:.1f} s against {full_wall:.1f} s"
        f" (×{full_wall / ranges.wall:.1f} faster); every day stored"
        f" {'yes' if complete else 'NO'} ({ranges.rows:,} rows)"
    )
    console.print(verdict)
    console.print(f"[bold]goal {'met' if met else 'MISSED'}[/]")
    if args.no_doc:
        return
    body = [
        "## 6. Backfill in ranges (issue 10)",
        "",
        f"Command: `{run_command()}`",
        "",
        *machine_lines(),
        f"- machine load: {busy}",
        f"- {args.accounts} ad accounts × {args.days} days of collect-daily, Meta simulator"
        f" in-process (uvicorn thread) answering every call after"
        f" {args.latency * 1000:.0f} ms, no faults; concurrency {args.concurrency}; SQLite ledger"
        " and data, a fresh database for each run; Meta pages insights 25 rows at a time, so a"
        " 28-day chain is 2 requests",
        "- *backfill in ranges*: `cronkeeper.backfill.backfill` (what `cronkeeper backfill"
        " collect-daily` runs), `META_LOOKBACK_DAYS=28`: one run per 28-day window, one"
        " `time_increment=1` request chain per account per run. A run for date D reads"
        " D−27 … D, so the last run of a range that is not a multiple of 28 days re-reads a"
        " full window (here 2 pages) too",
        "- *per-date loop*: the old backfill, one `run_job` per date with"
        " `META_LOOKBACK_DAYS=1` (one request per account per date)"
        + (
            f"; run over the first {sample} of the {args.days} dates (all accounts) to keep the"
            f" bench short, its time and requests extrapolated linearly (×{scale:g}): each date"
            " is an independent run of the same size (details requests are not scaled: they are"
            " refreshed at most daily)"
            if extrapolated
            else ""
        ),
        "- counted from the simulator's request log, per ad account: insights requests, request"
        " chains (requests without a paging cursor) and account-details requests (time zone,"
        " currency; kept in the database, refreshed at most daily)",
        "",
        markdown_table(headers, rows),
        "",
        f"**Goal {'met' if met else 'missed'}** (at most ⌈{args.days}/28⌉ = {goal} request chains"
        f" per account): {verdict}.",
    ]
    update_section("backfill_ranges", "\n".join(body))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
