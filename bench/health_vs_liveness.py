"""Benchmark 11: ``GET /api/cron/health`` beside ``GET /healthz`` on one worker at 10⁶ rows.

Issue 16 asks health to answer at the speed of liveness: side by side on one uvicorn worker
(``cronkeeper serve``, one process), 16 concurrent keep-alive clients, a PostgreSQL ledger of
10⁶ runs. Goal: health ≥ 0.8 × ``/healthz`` in requests per second; never below 0.5.

A throwaway PostgreSQL cluster (the test suite's harness) is filled server-side
(``INSERT … SELECT generate_series``, 24 job names, the monitored jobs' newest runs a few
seconds old), then ``cronkeeper serve`` is started on it with ``CRON_SECRET`` set. The load is
the Python keep-alive generator of ``bench/api_throughput.py`` (``--workers`` processes).
The two endpoints are measured in alternating rounds (liveness, health, liveness, health,
…) so that a change in the machine's load hits both alike; the ratio is taken over the sums.

The load generator shares the 2 cores with the server: the requests/s are floors, and the
server's CPU per request (``/proc/PID/stat``) says what one core can do.

    .venv/bin/python bench/health_vs_liveness.py [--rows 1000000] [--clients 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

import httpx
from api_throughput import Load, process_cpu, python_load, uvicorn_version
from benchlib import (
    OTHER_JOBS,
    console,
    cpu_busy,
    fill_runs,
    machine_lines,
    markdown_table,
    print_table,
    repo_on_path,
    run_command,
    scratch_dir,
    serve_cronkeeper,
    update_section,
    wait_until_quiet,
)

repo_on_path()

from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402
from tests.support.pg import start_postgres  # noqa: E402

from cronkeeper.config import JOB_NAMES  # noqa: E402
from cronkeeper.storage.engine import create_engine, upgrade  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
GOAL = 0.8
FLOOR = 0.5
LIVENESS, HEALTH = "/healthz", "/api/cron/health"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="runs in the ledger")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="per endpoint and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--backend",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="the ledger's database (SQLite: the embedded default)",
    )
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        parser.error("keep the load bounded: 1-256 clients, 1-60 s, 1-10 rounds")

    cluster = (
        start_postgres(settings={"shared_buffers": "256MB"}) if args.backend != "sqlite" else None
    )
    try:
        workdir = scratch_dir("cronkeeper-bench-hvl-")
        db = "bench_health_vs_liveness"
        if cluster is not None:
            cluster.create_database(db)
            url = cluster.url(db)
        else:
            url = f"sqlite:///{workdir}/ledger.db"

        async def fill() -> float:
            engine = create_engine(url)
            await upgrade(engine)
            if cluster is not None:
                taken = await fill_runs(engine, cluster, db, args.rows, JOB_NAMES + OTHER_JOBS)
            else:
                taken = await fill_sqlite(engine, args.rows, JOB_NAMES + OTHER_JOBS)
            await engine.dispose()
            return taken

        console.print(f"filling cron_runs with {args.rows:,} rows ({args.backend})…")
        filled = asyncio.run(fill())
        console.print(f"filled in {filled:.1f} s")
        auth = {"Authorization": f"Bearer {SECRET}"}
        busy = wait_until_quiet()
        console.print(busy)
        loads: dict[str, list[Load]] = {LIVENESS: [], HEALTH: []}
        with serve_cronkeeper({"DATABASE_URL": url, "CRON_SECRET": SECRET}, workdir) as served:
            answer = httpx.get(served.base_url + HEALTH, headers=auth, timeout=10)
            if answer.status_code != 200 or "checks" not in answer.json():
                raise RuntimeError(f"health answered {answer.status_code}: {answer.text[:300]}")
            if httpx.get(served.base_url + HEALTH, timeout=10).status_code != 401:
                raise RuntimeError("health without the bearer did not answer 401")
            for round_ in range(1, args.rounds + 1):
                for path, headers in ((LIVENESS, {}), (HEALTH, auth)):
                    console.print(f"round {round_}: {args.clients} clients on {path}")
                    cpu_before = process_cpu(served.process.pid)
                    began = time.perf_counter()
                    load = python_load(
                        served.base_url + path, headers, args.clients, args.seconds, args.workers
                    )
                    wall = time.perf_counter() - began
                    load.endpoint = path
                    load.server_cpu = (process_cpu(served.process.pid) - cpu_before) / wall
                    loads[path].append(load)
            alive = served.process.poll() is None
        note = f"{busy}; {cpu_busy():.0%} busy just after"
    finally:
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.cleanup()
    return report(loads, args, note, alive)


async def fill_sqlite(engine: AsyncEngine, size: int, names: tuple[str, ...]) -> float:
    """:func:`benchlib.fill_runs` for SQLite: rows 1..``size`` in one ``INSERT … SELECT``
    over a recursive CTE, row g starting g×10 s ago on job ``names[g mod len]``."""
    from sqlalchemy import text

    cases = " ".join(f"WHEN {i} THEN '{n}'" for i, n in enumerate(names))
    statement = text(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :size) "
        "INSERT INTO cron_runs "
        "(id, cron_name, started_at, finished_at, status, records_count, created_at) "
        "SELECT lower(hex(randomblob(16))), "
        f"CASE n % {len(names)} {cases} END, "
        "strftime('%Y-%m-%d %H:%M:%f', 'now', -(n * 10) || ' seconds'), "
        "strftime('%Y-%m-%d %H:%M:%f', 'now', -(n * 10 - 5) || ' seconds'), "
        "CASE WHEN n % 37 = 0 THEN 'error' WHEN n % 41 = 0 THEN 'partial' ELSE 'success' END, "
        "n % 1000, strftime('%Y-%m-%d %H:%M:%f', 'now', -(n * 10) || ' seconds') FROM g"
    )
    start = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(statement, {"size": size})
        await conn.execute(text("ANALYZE"))
    return time.perf_counter() - start


def _sum(loads: list[Load]) -> tuple[float, int, int, float]:
    """Requests/s over all rounds, errors, requests, server CPU ms per request."""
    requests = sum(load.requests for load in loads)
    seconds = sum(load.seconds for load in loads)
    errors = sum(load.errors for load in loads)
    cpu = sum(load.server_cpu * load.seconds for load in loads)  # CPU-seconds, roughly
    per_request = cpu / requests * 1000 if requests else float("nan")
    return requests / seconds if seconds else 0.0, errors, requests, per_request


def report(loads: dict[str, list[Load]], args: argparse.Namespace, note: str, alive: bool) -> int:
    headers = ["round", "endpoint", "requests/s", "p50 ms", "p99 ms", "errors", "server CPU"]
    rows = []
    for i in range(args.rounds):
        for path in (LIVENESS, HEALTH):
            load = loads[path][i]
            rows.append(
                [
                    str(i + 1),
                    f"`{path}`",
                    f"{load.rate:,.0f}",
                    f"{load.p50 * 1000:.2f}",
                    f"{load.p99 * 1000:.2f}",
                    str(load.errors),
                    f"{load.server_cpu:.0%}",
                ]
            )
    live_rate, live_errors, _, live_cpu = _sum(loads[LIVENESS])
    health_rate, health_errors, _, health_cpu = _sum(loads[HEALTH])
    ratio = health_rate / live_rate if live_rate else 0.0
    errors = live_errors + health_errors
    verdict = (
        "met"
        if ratio >= GOAL and errors == 0 and alive
        else (
            "above the floor, below the goal"
            if ratio >= FLOOR and errors == 0 and alive
            else "MISSED"
        )
    )
    print_table(f"{args.clients} clients, {args.rows:,} rows", headers, rows)
    summary = (
        f"health {health_rate:,.0f} req/s vs /healthz {live_rate:,.0f} req/s: ratio "
        f"**{ratio:.2f}** (goal ≥ {GOAL}, floor {FLOOR}), {errors} errors; server CPU per "
        f"request {health_cpu:.2f} ms (health) vs {live_cpu:.2f} ms (liveness): {verdict}"
    )
    console.print(summary)
    if not args.no_doc:
        body = [
            f"## 11{'b' if args.backend == 'sqlite' else ''}. Health beside liveness, one worker,"
            f" {args.rows:,} rows, {'SQLite' if args.backend == 'sqlite' else 'PostgreSQL'}"
            " (issue 16)",
            "",
            f"Command: `{run_command()}`",
            "",
            *machine_lines(),
            f"- machine load: {note}",
            f"- server: `cronkeeper serve` (uvicorn {uvicorn_version()}, one process),"
            f" {'SQLite' if args.backend == 'sqlite' else 'PostgreSQL'} ledger of"
            f" {args.rows:,} runs over 24 job names, `CRON_SECRET` set",
            f"- load: {args.clients} keep-alive connections ({args.workers} Python generator"
            f" processes on the same 2 cores), {args.seconds:g} s per endpoint per round after a"
            f" 1 s warm-up, {args.rounds} alternating rounds",
            "",
            markdown_table(headers, rows),
            "",
            f"Over all rounds: {summary}.",
        ]
        name = "health-vs-liveness" + ("-sqlite" if args.backend == "sqlite" else "")
        update_section(name, "\n".join(body))
    return 0 if verdict != "MISSED" else 1


if __name__ == "__main__":
    sys.exit(main())
