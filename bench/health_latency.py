"""Benchmark 1: health latency as ``cron_runs`` grows, beside the naive "latest per job" query.

Starts a throwaway PostgreSQL cluster (the test suite's harness), migrates it, and fills
``cron_runs`` server-side (``INSERT … SELECT generate_series``) up to each requested size,
round-robin over the four job names and 20 other job names, newest run of every job a few
seconds old; then ``VACUUM ANALYZE``. At each size it measures the median and p99 of

  (a) ``Service.health()`` in-process (ledger query + evaluation),
  (b) ``GET /api/cron/health`` over HTTP against ``cronkeeper serve`` (a real uvicorn in its
      own process), one keep-alive httpx client, requests one after another,
  (c) the bare health query (``latest_runs_statement``) executed through the engine,
  (c1) the same statement in one round trip: an AUTOCOMMIT engine without pool pre-ping (the
      production engine adds a pre-ping, a ``BEGIN`` and a ``ROLLBACK``: four round trips),
  (d) the naive query on the same data, with index scans switched off for its sessions
      (``enable_indexscan``, ``enable_bitmapscan``, ``enable_indexonlyscan`` = off, set as
      connection options): ``DISTINCT ON (cron_name) … ORDER BY cron_name, started_at DESC``
      and ``GROUP BY cron_name`` + join back on ``max(started_at)``;
  (e) the same ``DISTINCT ON`` with the index allowed (what an ORM user would write).

    .venv/bin/python bench/health_latency.py                      # 10³, 10⁵, 10⁶ rows
    .venv/bin/python bench/health_latency.py --rows 1000,100000,1000000,10000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from benchlib import (
    OTHER_JOBS,
    Stats,
    console,
    cpu_busy,
    fill_runs,
    machine_lines,
    markdown_table,
    measure,
    ms,
    print_table,
    repo_on_path,
    run_command,
    scratch_dir,
    serve_each,
    update_section,
    wait_until_quiet,
)
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

repo_on_path()

from tests.support.pg import PgCluster, start_postgres  # noqa: E402

from cronkeeper.config import JOB_NAMES, Settings  # noqa: E402
from cronkeeper.ledger.reads import latest_runs_statement  # noqa: E402
from cronkeeper.service import Service  # noqa: E402
from cronkeeper.storage.engine import create_engine, upgrade  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
ALL_JOBS = JOB_NAMES + OTHER_JOBS
GOAL_RATIO = 1.5
COLUMNS = "id, cron_name, started_at, finished_at, status, records_count, error_message"
NO_INDEX = "-c enable_indexscan=off -c enable_bitmapscan=off -c enable_indexonlyscan=off"


def naive_distinct_on(names: tuple[str, ...]) -> str:
    in_list = ", ".join(f"'{n}'" for n in names)
    return (
        f"SELECT DISTINCT ON (cron_name) {COLUMNS} FROM cron_runs "
        f"WHERE cron_name IN ({in_list}) ORDER BY cron_name, started_at DESC"
    )


def naive_group_by(names: tuple[str, ...]) -> str:
    in_list = ", ".join(f"'{n}'" for n in names)
    cols = ", ".join(f"r.{c.strip()}" for c in COLUMNS.split(","))
    return (
        f"SELECT {cols} FROM cron_runs r JOIN ("
        f"SELECT cron_name, max(started_at) AS started_at FROM cron_runs "
        f"WHERE cron_name IN ({in_list}) GROUP BY cron_name) m "
        "ON r.cron_name = m.cron_name AND r.started_at = m.started_at"
    )


def explain(cluster: PgCluster, db: str, sql: str, options: str = "") -> str:
    return cluster.psql(f"{options}EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", db=db)


def plan_summary(plan: str) -> str:
    scans = re.findall(r"(Index Scan|Index Only Scan|Seq Scan|Bitmap Heap Scan)", plan)
    counts = {name: scans.count(name) for name in dict.fromkeys(scans)}
    hits = re.search(r"Buffers: shared hit=(\d+)", plan)
    execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
    parts = [", ".join(f"{n}× {name}" for name, n in counts.items()) or "no scan node"]
    if hits:
        parts.append(f"{hits.group(1)} shared buffers touched")
    if execution:
        parts.append(f"execution {execution.group(1)} ms server-side")
    return "; ".join(parts)


class Size:
    """One history size: its own database, engines, service and ``cronkeeper serve``."""

    def __init__(self, cluster: PgCluster, size: int) -> None:
        self.size = size
        self.db = f"bench_{size}"
        cluster.create_database(self.db)
        self.url = cluster.url(self.db)
        self.settings = Settings(_env_file=None, database_url=self.url, cron_secret=SECRET)  # type: ignore[call-arg]
        self.engine = create_engine(self.url)
        self.service = Service.from_settings(self.settings, engine=self.engine)
        self.names = tuple(spec.name for spec in self.settings.monitored)
        self.statement = latest_runs_statement(self.names)
        async_url = self.url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.naive_engine = create_async_engine(
            async_url, connect_args={"options": NO_INDEX, "prepare_threshold": None}
        )
        self.one_trip_engine = create_async_engine(
            async_url, connect_args={"prepare_threshold": None}, isolation_level="AUTOCOMMIT"
        )
        self.base_url: str | None = None
        self.samples: dict[str, list[float]] = {key: [] for key, _ in MEASURES}

    def calls(
        self, client: httpx.AsyncClient
    ) -> list[tuple[str, Callable[[], Awaitable[None]], bool]]:
        """(measure, call, is_naive) for every measure at this size."""

        async def in_process() -> None:
            report = await self.service.health()
            assert report.healthy, report.as_json()

        async def over_http() -> None:
            response = await client.get(f"{self.base_url}/api/cron/health")
            if response.status_code != 200 or not response.json()["healthy"]:
                raise RuntimeError(f"health answered {response.status_code}: {response.text}")

        def run(statement: Any, engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                async with engine.connect() as conn:
                    (await conn.execute(statement)).all()

            return call

        out: list[tuple[str, Callable[[], Awaitable[None]], bool]] = [
            ("in_process", in_process, False)
        ]
        if self.base_url is not None:
            out.append(("http", over_http, False))
        out += [
            ("bare", run(self.statement, self.engine), False),
            ("one_trip", run(self.statement, self.one_trip_engine), False),
            ("distinct_on", run(text(naive_distinct_on(self.names)), self.naive_engine), True),
            ("group_by", run(text(naive_group_by(self.names)), self.naive_engine), True),
            ("distinct_on_idx", run(text(naive_distinct_on(self.names)), self.engine), True),
        ]
        return out

    async def aclose(self) -> None:
        await self.service.aclose()
        await self.naive_engine.dispose()
        await self.one_trip_engine.dispose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000,100000,1000000", help="comma list of sizes")
    parser.add_argument("--iterations", type=int, default=300, help="per health measurement")
    parser.add_argument("--naive-iterations", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the sizes")
    parser.add_argument("--budget", type=float, default=10.0, help="max seconds per measurement")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()})
    rounds = max(1, args.rounds)

    console.print("[bold]starting a throwaway PostgreSQL cluster…[/]")
    cluster = start_postgres(settings={"shared_buffers": "256MB", "work_mem": "16MB"})
    workdir = scratch_dir("cronkeeper-bench-")
    try:
        levels: list[Size] = []
        for size in sizes:
            level = Size(cluster, size)
            await upgrade(level.engine)
            seconds = await fill_runs(level.engine, cluster, level.db, size, ALL_JOBS)
            console.print(f"{size:>12,} rows in database {level.db} (filled in {seconds:.1f} s)")
            levels.append(level)
        async with levels[0].engine.connect() as conn:
            pg_version = str((await conn.execute(text("SHOW server_version"))).scalar_one())

        busy = wait_until_quiet()
        console.print(busy)
        with contextlib.ExitStack() as stack:
            urls, http_note = serve_each(stack, [lv.url for lv in levels], SECRET, workdir)
            for level, base_url in zip(levels, urls, strict=True):
                level.base_url = base_url
            client = httpx.AsyncClient(headers={"Authorization": f"Bearer {SECRET}"}, timeout=60)
            # Rounds interleave the sizes so that a slow spell of the machine (another process
            # waking up) lands on every size alike instead of on whichever ran then.
            for r in range(rounds):
                console.print(f"round {r + 1}/{rounds}")
                for level in levels:
                    for key, call, naive in level.calls(client):
                        wanted = (args.naive_iterations if naive else args.iterations) // rounds
                        level.samples[key] += await measure(
                            call,
                            iterations=max(1, wanted),
                            warmup=1 if naive else 5,
                            budget=args.budget / rounds,
                            minimum=2 if naive else 5,
                        )
            await client.aclose()
        busy_after = f"{cpu_busy():.0%} busy just after"
        largest = levels[-1]
        compiled = str(
            largest.statement.compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
            )
        )
        health_plan = explain(cluster, largest.db, compiled)
        naive_plan = explain(
            cluster,
            largest.db,
            naive_distinct_on(largest.names),
            "SET enable_indexscan=off; SET enable_bitmapscan=off; SET enable_indexonlyscan=off; ",
        )
        for level in levels:
            await level.aclose()
    finally:
        cluster.cleanup()

    results = [
        {"rows": level.size, **{k: Stats.of(v) for k, v in level.samples.items() if v}}
        for level in levels
    ]
    load = f"- machine load: {busy}; {busy_after}"
    report(results, sizes, pg_version, http_note, health_plan, naive_plan, load, args.no_doc)
    return 0


MEASURES = (
    ("in_process", "(a) Service.health()"),
    ("http", "(b) GET /api/cron/health"),
    ("bare", "(c) bare health query"),
    ("one_trip", "(c1) same, 1 round trip"),
    ("distinct_on", "(d) naive DISTINCT ON, no index"),
    ("group_by", "(d) naive GROUP BY + join, no index"),
    ("distinct_on_idx", "(e) DISTINCT ON, index allowed"),
)


def report(
    results: list[dict[str, Any]],
    sizes: list[int],
    pg_version: str,
    http_note: str,
    health_plan: str,
    naive_plan: str,
    load: str,
    no_doc: bool,
) -> None:
    base = results[0]
    headers = ["measure", *(f"{s:,} rows" for s in sizes)]
    rows: list[list[str]] = []
    for key, label in MEASURES:
        if key not in base:
            continue
        cells = [label]
        for r in results:
            st: Stats = r[key]
            ratio = st.median / base[key].median
            cells.append(f"{ms(st.median, 3)} / {ms(st.p99, 3)} ms (×{ratio:.2f}, n={st.n})")
        rows.append(cells)
    print_table("median / p99 (ratio of medians to the smallest size)", headers, rows)

    target = next((r for r in results if r["rows"] == 1_000_000), results[-1])
    verdicts: list[str] = []
    met = True
    for key in ("in_process", "http", "bare", "one_trip"):
        if key not in base:
            continue
        ratio = target[key].median / base[key].median
        ok = ratio <= GOAL_RATIO
        met &= ok
        verdicts.append(
            f"{dict(MEASURES)[key]}: ×{ratio:.2f} at {target['rows']:,} rows vs "
            f"{base['rows']:,} ({'met' if ok else 'MISSED'}, goal ≤ ×{GOAL_RATIO})"
        )
    naive_growth = target["distinct_on"].median / base["distinct_on"].median
    grows = naive_growth > 5
    verdicts.append(
        f"naive DISTINCT ON grows ×{naive_growth:.0f} over the same range "
        f"({'grows with the table' if grows else 'does NOT grow much'})"
    )
    if "http" not in base:
        met = False
        verdicts.append("HTTP latency not measured (see note): goal not verified")
    for line in verdicts:
        console.print(line)
    console.print(f"[bold]{'goal met' if met and grows else 'goal MISSED'}[/]")
    if no_doc:
        return

    body = [
        "## 1. Health latency vs history size",
        "",
        f"Command: `{run_command()}`",
        "",
        *machine_lines(pg_version),
        load,
        "- cluster: `shared_buffers=256MB`, `work_mem=16MB`, one database per size, filled"
        " with `INSERT … SELECT generate_series` then `VACUUM ANALYZE`; sizes measured in"
        " interleaved rounds",
        "",
        "Cells: median / p99 in ms, (×ratio of medians to the smallest size, samples).",
        "",
        markdown_table(headers, rows),
        "",
        f"**Goal {'met' if met and grows else 'missed'}.**",
        "",
        *(f"- {v}" for v in verdicts),
    ]
    if http_note:
        body += ["", http_note]
    body += [
        "",
        "Plan of the health query at the largest size (EXPLAIN ANALYZE, BUFFERS): "
        + plan_summary(health_plan),
        "",
        "<details><summary>health query plan</summary>",
        "",
        "```",
        health_plan,
        "```",
        "</details>",
        "",
        "<details><summary>naive DISTINCT ON plan (index scans off)</summary>",
        "",
        "```",
        naive_plan,
        "```",
        "</details>",
    ]
    update_section("health", "\n".join(body))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
