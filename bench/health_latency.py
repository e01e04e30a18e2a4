"""Benchmark 1: health latency as ``cron_runs`` grows, beside the naive "latest per job" query.

Starts a throwaway PostgreSQL cluster (the test suite's harness), migrates it, and fills
``cron_runs`` server-side (``INSERT … SELECT generate_series``) up to each requested size,
round-robin over the four job names and 20 other job names, newest run of every job a few
seconds old; then ``VACUUM ANALYZE``. At each size it measures the median and p99 of

  (a) ``Service.health()`` in-process (ledger query + evaluation),
  (b) ``GET /api/cron/health`` over HTTP against ``cronkeeper serve`` (a real uvicorn in its
      own process), one keep-alive httpx client, requests one after another,
  (c) the bare health query (``latest_runs_statement``) executed through the engine,
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
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from benchlib import (
    Stats,
    console,
    machine_lines,
    markdown_table,
    measure,
    ms,
    print_table,
    repo_on_path,
    run_command,
    serve_cronkeeper,
    update_section,
)
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

repo_on_path()

from tests.support.pg import PgCluster, start_postgres  # noqa: E402

from cronkeeper.config import JOB_NAMES, Settings  # noqa: E402
from cronkeeper.ledger.store import latest_runs_statement  # noqa: E402
from cronkeeper.service import Service  # noqa: E402
from cronkeeper.storage.engine import create_engine, upgrade  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
OTHER_JOBS = tuple(f"other-job-{i:02d}" for i in range(1, 21))
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


async def fill(engine: AsyncEngine, cluster: PgCluster, low: int, high: int) -> float:
    """Add rows ``low``..``high``; row g starts g×10 s ago on job ``g mod 24``. Seconds taken."""
    names = ", ".join(f"'{n}'" for n in ALL_JOBS)
    statement = text(
        "INSERT INTO cron_runs "
        "(cron_name, started_at, finished_at, status, records_count, created_at) "
        f"SELECT (ARRAY[{names}])[1 + g % {len(ALL_JOBS)}], "
        "now() - g * interval '10 seconds', "
        "now() - g * interval '10 seconds' + interval '5 seconds', "
        "CASE WHEN g % 37 = 0 THEN 'error' WHEN g % 41 = 0 THEN 'partial' ELSE 'success' END, "
        "g % 1000, now() - g * interval '10 seconds' "
        "FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint)) AS g"
    )
    start = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(statement, {"low": low, "high": high})
    cluster.psql("VACUUM ANALYZE cron_runs", timeout=1800)
    return time.perf_counter() - start


def explain(cluster: PgCluster, sql: str, options: str = "") -> str:
    return cluster.psql(f"{options}EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")


def plan_summary(plan: str) -> str:
    nodes = sorted({m.strip() for m in re.findall(r"->\s+([A-Za-z ]+?)(?: using| on|  |\n)", plan)})
    hits = sum(int(x) for x in re.findall(r"shared hit=(\d+)", plan.split("\n")[0]))
    reads = sum(int(x) for x in re.findall(r"read=(\d+)", plan.split("\n")[0]))
    execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
    parts = [f"nodes: {', '.join(nodes) or '—'}"]
    if hits or reads:
        parts.append(f"buffers at the top: {hits} hit, {reads} read")
    if execution:
        parts.append(f"execution {execution.group(1)} ms")
    return "; ".join(parts)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000,100000,1000000", help="comma list of sizes")
    parser.add_argument("--iterations", type=int, default=300, help="per health measurement")
    parser.add_argument("--naive-iterations", type=int, default=60)
    parser.add_argument("--budget", type=float, default=8.0, help="max seconds per measurement")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()})

    console.print("[bold]starting a throwaway PostgreSQL cluster…[/]")
    cluster = start_postgres(settings={"shared_buffers": "256MB", "work_mem": "16MB"})
    workdir = Path(tempfile.mkdtemp(prefix="cronkeeper-bench-"))
    results: list[dict[str, Any]] = []
    health_plan = ""
    naive_plan = ""
    http_note = ""
    try:
        url = cluster.url()
        settings = Settings(_env_file=None, database_url=url, cron_secret=SECRET)  # type: ignore[call-arg]
        engine = create_engine(url)
        await upgrade(engine)
        service = Service.from_settings(settings, engine=engine)
        names = tuple(spec.name for spec in settings.monitored)
        statement = latest_runs_statement(names)
        async_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        naive_engine = create_async_engine(
            async_url, connect_args={"options": NO_INDEX, "prepare_threshold": None}
        )
        async with engine.connect() as conn:
            pg_version = str((await conn.execute(text("SHOW server_version"))).scalar_one())

        async def bare() -> None:
            async with engine.connect() as conn:
                (await conn.execute(statement)).all()

        def raw(sql: str, eng: AsyncEngine) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                async with eng.connect() as conn:
                    (await conn.execute(text(sql))).all()

            return call

        async def in_process() -> None:
            report = await service.health()
            assert report.healthy, report.as_json()

        with contextlib.ExitStack() as stack:
            served = None
            try:
                served = stack.enter_context(
                    serve_cronkeeper({"DATABASE_URL": url, "CRON_SECRET": SECRET}, workdir)
                )
            except Exception as exc:
                http_note = f"HTTP not measured: `cronkeeper serve` did not start ({exc!s:.300})"
                console.print(f"[yellow]{http_note}[/]")
            async_client = httpx.AsyncClient(
                headers={"Authorization": f"Bearer {SECRET}"}, timeout=30
            )

            async def over_http() -> None:
                assert served is not None
                response = await async_client.get(f"{served.base_url}/api/cron/health")
                if response.status_code != 200 or not response.json()["healthy"]:
                    raise RuntimeError(f"health answered {response.status_code}: {response.text}")

            filled = 0
            for size in sizes:
                seconds = await fill(engine, cluster, filled + 1, size)
                filled = size
                console.print(f"{size:>10,} rows (filled in {seconds:.1f} s)")
                row: dict[str, Any] = {"rows": size}
                row["in_process"] = Stats.of(
                    await measure(in_process, iterations=args.iterations, budget=args.budget)
                )
                if served is not None:
                    row["http"] = Stats.of(
                        await measure(over_http, iterations=args.iterations, budget=args.budget)
                    )
                row["bare"] = Stats.of(
                    await measure(bare, iterations=args.iterations, budget=args.budget)
                )
                for key, sql, eng in (
                    ("distinct_on", naive_distinct_on(names), naive_engine),
                    ("group_by", naive_group_by(names), naive_engine),
                    ("distinct_on_idx", naive_distinct_on(names), engine),
                ):
                    row[key] = Stats.of(
                        await measure(
                            raw(sql, eng),
                            iterations=args.naive_iterations,
                            warmup=2,
                            budget=args.budget,
                        )
                    )
                results.append(row)
            await async_client.aclose()
        compiled = str(
            statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        )
        health_plan = explain(cluster, compiled)
        naive_plan = explain(
            cluster,
            naive_distinct_on(names),
            "SET enable_indexscan=off; SET enable_bitmapscan=off; SET enable_indexonlyscan=off; ",
        )
        await service.aclose()
        await naive_engine.dispose()
    finally:
        cluster.cleanup()

    report(results, sizes, pg_version, http_note, health_plan, naive_plan, args.no_doc)
    return 0


MEASURES = (
    ("in_process", "(a) Service.health()"),
    ("http", "(b) GET /api/cron/health"),
    ("bare", "(c) bare health query"),
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
    for key in ("in_process", "http", "bare"):
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
