"""Benchmark: what fencing (issue 20.2) costs a job's data write.

Every data write of a job is one transaction (one account's rows, one project's, one
industry's, the registry) that, since fencing, ends with the lease check
(:class:`cronkeeper.lease.Fence`: ``SELECT holder, epoch FROM cron_leases … FOR SHARE`` on
PostgreSQL) before its commit. This measures that transaction — an upsert of one day's
insight row for one ad account, as ``collect-daily`` writes per account — with and without
the check, one writer after another and from 8 concurrent writers (``CRONKEEPER_CONCURRENCY``'s
default), on SQLite (a temp file, WAL) and on PostgreSQL (a throwaway cluster with durable
settings), while the lease is held and renewed as a run holds it.

    .venv/bin/python bench/fencing.py [--writes 1000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from benchlib import (
    DURABLE,
    Stats,
    console,
    machine_lines,
    markdown_table,
    ms,
    print_table,
    repo_on_path,
    run_command,
    scratch_dir,
    update_section,
    wait_until_quiet,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

repo_on_path()

from tests.support.pg import start_postgres  # noqa: E402

from cronkeeper.lease import Fence, LeaseManager  # noqa: E402
from cronkeeper.storage.engine import create_engine, upgrade  # noqa: E402
from cronkeeper.storage.schema import meta_daily_insights  # noqa: E402
from cronkeeper.storage.upsert import upsert  # noqa: E402

JOB = "collect-daily"
DAY = date(2026, 11, 19)


@dataclass(frozen=True)
class Result:
    backend: str
    fenced: bool
    tasks: int
    writes: int
    seconds: float
    latency: Stats

    @property
    def per_second(self) -> float:
        return self.writes / self.seconds


def row(account: int) -> dict[str, Any]:
    return {
        "ad_account_id": f"{1_000_000_000 + account}",
        "date": DAY,
        "spend": Decimal("12.34"),
        "impressions": 1000,
        "clicks": 10,
        "reach": 900,
        "conversions": Decimal("1"),
        "collected_at": datetime.now(UTC),
    }


async def writes(
    engine: AsyncEngine, fence: Fence | None, backend: str, count: int, tasks: int
) -> Result:
    samples: list[float] = []
    queue = iter(range(count))

    async def write(account: int) -> None:
        async with engine.begin() as conn:
            await upsert(conn, meta_daily_insights, [row(account)])
            if fence is not None:
                await fence.check(conn)

    async def worker() -> None:
        for account in queue:
            start = time.perf_counter()
            await write(account % 200)
            samples.append(time.perf_counter() - start)

    for account in range(20):  # warm-up: the pool and the statement caches
        await write(account)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return Result(
        backend, fence is not None, tasks, count, time.perf_counter() - began, Stats.of(samples)
    )


async def backend_results(
    engine: AsyncEngine, backend: str, args: argparse.Namespace
) -> list[Result]:
    await upgrade(engine)
    leases = LeaseManager(engine, ttl=60.0)
    results: list[Result] = []
    async with leases.hold(JOB) as lease:
        fence = lease.fence
        assert fence is not None
        for tasks in (1, args.concurrency):
            for checked in (None, fence, None, fence):  # interleaved: drift hits both alike
                console.print(f"{backend}, {tasks} writer(s), fenced={checked is not None}…")
                results.append(await writes(engine, checked, backend, args.writes, tasks))
    return results


def merged(results: list[Result]) -> list[Result]:
    """The two interleaved series of each (backend, fenced, tasks), the better of the two
    (noise only ever slows a series down)."""
    best: dict[tuple[str, bool, int], Result] = {}
    for r in results:
        key = (r.backend, r.fenced, r.tasks)
        if key not in best or r.per_second > best[key].per_second:
            best[key] = r
    return list(best.values())


async def main(args: argparse.Namespace) -> int:
    busy = wait_until_quiet()
    console.print(busy)
    results: list[Result] = []
    workdir = scratch_dir("cronkeeper-bench-fencing-")
    sqlite = create_engine(f"sqlite:///{workdir}/fencing.db", timeout=5.0)
    try:
        results += await backend_results(sqlite, "SQLite", args)
    finally:
        await sqlite.dispose()
    console.print("[bold]starting a throwaway PostgreSQL cluster (durable settings)…[/]")
    cluster = start_postgres(settings=DURABLE)
    try:
        engine = create_engine(cluster.url(), timeout=5.0, concurrency=args.concurrency)
        try:
            results += await backend_results(engine, "PostgreSQL", args)
            async with engine.connect() as conn:
                version = str((await conn.execute(text("SHOW server_version"))).scalar_one())
        finally:
            await engine.dispose()
    finally:
        cluster.cleanup()
    report(merged(results), version, busy, args)
    return 0


def report(results: list[Result], version: str, busy: str, args: argparse.Namespace) -> None:
    headers = ["backend", "writers", "fenced", "writes/s", "median ms", "p99 ms", "cost"]
    plain = {(r.backend, r.tasks): r for r in results if not r.fenced}
    rows = []
    for r in sorted(results, key=lambda r: (r.backend, r.tasks, r.fenced)):
        base = plain[(r.backend, r.tasks)]
        cost = (
            f"+{(r.latency.median - base.latency.median) * 1000:.2f} ms median"
            f" ({(r.latency.median / base.latency.median - 1) * 100:+.0f} %)"
            if r.fenced
            else "—"
        )
        rows.append(
            [
                r.backend,
                str(r.tasks),
                "yes" if r.fenced else "no",
                f"{r.per_second:,.0f}",
                ms(r.latency.median),
                ms(r.latency.p99),
                cost,
            ]
        )
    print_table(
        "fencing: one unit's write transaction, with and without the lease check", headers, rows
    )
    body = "\n".join(
        [
            "## Fencing: what the lease check costs a data write (issue 20.2)",
            "",
            f"Command: `{run_command()}`",
            "",
            *machine_lines(version),
            f"- {busy}",
            f"- {args.writes} write transactions per series (an upsert of one insight row, as"
            " collect-daily writes per ad account), each series run twice interleaved with its"
            " twin and the faster kept; the lease held and renewed as a run holds it; SQLite a"
            " temp file (WAL), PostgreSQL a throwaway cluster with durable settings",
            "",
            markdown_table(headers, rows),
            "",
            "A unit's write is one transaction per account (or project, industry, registry"
            " sync); a run of 1,000 accounts makes 1,000 of them, next to at least 1,000 API"
            " calls of tens to hundreds of milliseconds each.",
        ]
    )
    update_section("fencing", body)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
