"""Benchmark 5: a ``/metrics`` scrape as ``cron_runs`` grows, when collect-daily is always
``partial`` (one dead ad account is enough), with and without the partial index of successes.

Starts a throwaway PostgreSQL cluster (the test suite's harness), migrates it, and fills
``cron_runs`` server-side up to each requested size, round-robin over the four job names and
20 other job names (like benchmark 1), except that every collect-daily run is ``partial``:
collect-daily has never succeeded, so ``cronkeeper_last_success_timestamp_seconds`` has no
success to stop at. Then ``VACUUM ANALYZE``. At each size it measures the median and p99 of

  (a) ``read_snapshot(service)``: what a scrape reads from the ledger (latest run of each job
      and last success of each job, run concurrently), in-process;
  (b) ``GET /metrics`` over HTTP against ``cronkeeper serve`` (a real uvicorn in its own
      process), one keep-alive client with the bearer;
  (c) the last-success statement alone (``cronkeeper.ledger.reads``);

first with ``idx_cron_runs_success`` dropped (the schema before migration 0008: the statement
walks ``idx_cron_runs_name_started`` back through every collect-daily run), then with it.

    .venv/bin/python bench/metrics_scrape.py                      # 10³, 10⁵, 10⁶ rows
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

repo_on_path()

from tests.support.pg import PgCluster, start_postgres  # noqa: E402

from cronkeeper.config import JOB_NAMES, Settings  # noqa: E402
from cronkeeper.ledger.reads import last_success_statement  # noqa: E402
from cronkeeper.metrics import read_snapshot  # noqa: E402
from cronkeeper.service import Service  # noqa: E402
from cronkeeper.storage.engine import create_engine, upgrade  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
ALL_JOBS = JOB_NAMES + OTHER_JOBS
ALWAYS_PARTIAL = (
    "CASE WHEN job = 'collect-daily' THEN 'partial' "
    "WHEN g % 37 = 0 THEN 'error' WHEN g % 41 = 0 THEN 'partial' ELSE 'success' END"
)
"""Every collect-daily run ``partial`` (it never succeeded), the other jobs mostly ``success``."""
GOAL_RATIO = 1.5
INDEX = "idx_cron_runs_success"
CREATE_INDEX = (
    f"CREATE INDEX {INDEX} ON cron_runs (cron_name, started_at DESC) WHERE status = 'success'"
)
PHASES = (("without", f"without {INDEX} (before 0008)"), ("with", f"with {INDEX}"))
MEASURES = (
    ("snapshot", "(a) read_snapshot()"),
    ("http", "(b) GET /metrics"),
    ("statement", "(c) last-success statement"),
)


class Size:
    """One history size: its own database, service and ``cronkeeper serve``."""

    def __init__(self, cluster: PgCluster, size: int) -> None:
        self.size = size
        self.db = f"bench_{size}"
        cluster.create_database(self.db)
        self.url = cluster.url(self.db)
        self.settings = Settings(_env_file=None, database_url=self.url, cron_secret=SECRET)  # type: ignore[call-arg]
        self.engine = create_engine(self.url)
        self.service = Service.from_settings(self.settings, engine=self.engine)
        self.names = [spec.name for spec in self.settings.jobs]
        self.base_url: str | None = None
        self.samples: dict[str, list[float]] = {
            f"{phase}:{key}": [] for phase, _ in PHASES for key, _ in MEASURES
        }

    def calls(self, client: httpx.AsyncClient) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        async def snapshot() -> None:
            snap = await read_snapshot(self.service)
            assert snap.database_up, "the ledger did not answer"
            assert snap.last_success["collect-daily"] is None

        async def over_http() -> None:
            response = await client.get(f"{self.base_url}/metrics")
            if response.status_code != 200 or "cronkeeper_database_up 1.0" not in response.text:
                raise RuntimeError(f"/metrics answered {response.status_code}")

        async def statement() -> None:
            async with self.engine.connect() as conn:
                (await conn.execute(last_success_statement(self.names))).all()

        out: list[tuple[str, Callable[[], Awaitable[None]]]] = [("snapshot", snapshot)]
        if self.base_url is not None:
            out.append(("http", over_http))
        out.append(("statement", statement))
        return out

    async def aclose(self) -> None:
        await self.service.aclose()


def explain(cluster: PgCluster, db: str, names: list[str]) -> str:
    sql = str(
        last_success_statement(names).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    return cluster.psql(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", db=db)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000,100000,1000000", help="comma list of sizes")
    parser.add_argument("--iterations", type=int, default=200, help="per measurement")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds over the sizes")
    parser.add_argument("--budget", type=float, default=8.0, help="max seconds per measurement")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()})
    rounds = max(1, args.rounds)

    console.print("[bold]starting a throwaway PostgreSQL cluster…[/]")
    cluster = start_postgres(settings={"shared_buffers": "256MB", "work_mem": "16MB"})
    workdir = scratch_dir("cronkeeper-bench-")
    plans: dict[str, str] = {}
    try:
        levels: list[Size] = []
        for size in sizes:
            level = Size(cluster, size)
            await upgrade(level.engine)
            seconds = await fill_runs(
                level.engine, cluster, level.db, size, ALL_JOBS, ALWAYS_PARTIAL
            )
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
            for phase, title in PHASES:
                for level in levels:
                    ddl = CREATE_INDEX if phase == "with" else f"DROP INDEX IF EXISTS {INDEX}"
                    cluster.psql(f"{ddl}; ANALYZE cron_runs", db=level.db, timeout=3600)
                plans[phase] = explain(cluster, levels[-1].db, levels[-1].names)
                console.print(f"[bold]{title}[/]")
                for r in range(rounds):
                    console.print(f"round {r + 1}/{rounds}")
                    for level in levels:
                        for key, call in level.calls(client):
                            level.samples[f"{phase}:{key}"] += await measure(
                                call,
                                iterations=max(1, args.iterations // rounds),
                                warmup=5,
                                budget=args.budget / rounds,
                                minimum=5,
                            )
            await client.aclose()
        busy_after = f"{cpu_busy():.0%} busy just after"
        for level in levels:
            await level.aclose()
    finally:
        cluster.cleanup()

    results = [
        {"rows": level.size, **{k: Stats.of(v) for k, v in level.samples.items() if v}}
        for level in levels
    ]
    load = f"- machine load: {busy}; {busy_after}"
    report(results, sizes, pg_version, http_note, plans, load, args.no_doc)
    return 0


def report(
    results: list[dict[str, Any]],
    sizes: list[int],
    pg_version: str,
    http_note: str,
    plans: dict[str, str],
    load: str,
    no_doc: bool,
) -> None:
    base = results[0]
    headers = ["measure", *(f"{s:,} rows" for s in sizes)]
    rows: list[list[str]] = []
    for phase, title in PHASES:
        for key, label in MEASURES:
            name = f"{phase}:{key}"
            if name not in base:
                continue
            cells = [f"{label}, {title}"]
            for r in results:
                st: Stats = r[name]
                ratio = st.median / base[name].median
                cells.append(f"{ms(st.median, 3)} / {ms(st.p99, 3)} ms (×{ratio:.2f}, n={st.n})")
            rows.append(cells)
    print_table("median / p99 (ratio of medians to the smallest size)", headers, rows)

    target = next((r for r in results if r["rows"] == 1_000_000), results[-1])
    verdicts: list[str] = []
    met = True
    for key, label in MEASURES:
        name = f"with:{key}"
        if name not in base:
            continue
        ratio = target[name].median / base[name].median
        ok = ratio <= GOAL_RATIO
        met &= ok
        verdicts.append(
            f"{label}, with the index: ×{ratio:.2f} at {target['rows']:,} rows vs "
            f"{base['rows']:,} ({'met' if ok else 'MISSED'}, goal ≤ ×{GOAL_RATIO})"
        )
    for key, label in MEASURES:
        name = f"without:{key}"
        if name in base:
            ratio = target[name].median / base[name].median
            verdicts.append(f"{label}, without it: ×{ratio:.1f} over the same range")
    executions = {
        phase: found.group(1)
        for phase, plan in plans.items()
        if (found := re.search(r"Execution Time: ([\d.]+) ms", plan))
    }
    if len(executions) == 2:
        verdicts.append(
            f"server-side execution of the last-success statement at {sizes[-1]:,} rows "
            f"(EXPLAIN ANALYZE, unaffected by client load): {executions['without']} ms without "
            f"the index, {executions['with']} ms with it"
        )
    if "with:http" not in base:
        met = False
        verdicts.append("HTTP latency not measured (see note): goal not verified")
    for line in verdicts:
        console.print(line)
    console.print(f"[bold]{'goal met' if met else 'goal MISSED'}[/]")
    if no_doc:
        return

    body = [
        "## 5. `/metrics` scrape vs history size, a job that is always `partial`",
        "",
        f"Command: `{run_command()}`",
        "",
        *machine_lines(pg_version),
        load,
        "- one database per size, 24 job names round-robin, **every collect-daily run"
        " `partial`** (it never succeeded), the other jobs mostly `success`; filled with"
        " `INSERT … SELECT generate_series` then `VACUUM ANALYZE`; the index dropped for the"
        " first phase and created for the second; sizes interleaved in rounds",
        "",
        "Cells: median / p99 in ms, (×ratio of medians to the smallest size, samples).",
        "",
        markdown_table(headers, rows),
        "",
        f"**Goal (flat with the index) {'met' if met else 'missed'}.**",
        "",
        *(f"- {v}" for v in verdicts),
    ]
    if http_note:
        body += ["", http_note]
    for phase, title in PHASES:
        body += [
            "",
            f"<details><summary>last-success plan at the largest size, {title}</summary>",
            "",
            "```",
            plans.get(phase, ""),
            "```",
            "</details>",
        ]
    update_section("metrics", "\n".join(body))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
