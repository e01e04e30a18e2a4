"""Benchmark: an agency's scale (issue 17). Two parts, each rewrites its own doc section.

**collect** — collect-daily of the documented agency scenario
(:func:`cronkeeper.sandbox.agency_scenario`): 1,000 ad accounts over six time zones and three
currencies, 3 % inactive (statuses 2, 101, 3, 7, 100; the closed ones refuse insights, the
others answer with no delivery), 1 % without permission (Meta error 200), a 28-day lookback.
Details *and* insights calls draw on one binding quota (rolling windows scaled from Meta's hour
to ``--window`` seconds). The real job runs through ``cronkeeper.runner.run_job`` (lease,
ledger, pacer, deferral) on a fresh SQLite database, with ``CRONKEEPER_PACING_PAUSE`` = the
window. Reported: active accounts lost to throttling (goal 0), inactive accounts reported as
such, wall time against the quota's lower bound (goal ≤ ×1.2), the process's peak memory.

Lower bound: a complete run needs N admitted calls (each permitted account's details call,
plus 2 insights pages for a delivering account, 1 for an account without delivery, none for a
closed one: it is refused before the quota); a rolling window admits at most A calls in any
W seconds, so N calls take at least (⌈N/A⌉ − 1)·W.

**ledger** — what a run costs the ledger as ``cron_runs`` grows: ``close_abandoned`` +
``start_cron_run`` (the start) and ``complete_cron_run`` (the end) on SQLite at each
``--sizes`` (rows filled in one ``INSERT … SELECT``, four jobs, every status), median of
``--repeat`` runs; at the largest size also without ``idx_cron_runs_running`` (the plan before
migration 0009).

    .venv/bin/python bench/agency_scale.py collect [--accounts 1000] [--window 20]
    .venv/bin/python bench/agency_scale.py ledger [--sizes 1000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import resource
import sqlite3
import statistics
import sys
import time
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

from cronkeeper.config import Settings
from cronkeeper.ledger import Ledger
from cronkeeper.runner import run_job
from cronkeeper.sandbox import AgencyScenario, QuotaPolicy, agency_scenario, serve_app
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine, upgrade

TOKEN = "bench-meta-token-0123456789"
LOOKBACK = 28
PAGE = 25
GOAL = 1.2


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def needed_calls(world: AgencyScenario) -> int:
    """The calls the quota must admit for a complete run (see the module's docstring)."""
    total = 0
    for account in world.accounts:
        if not account.permitted:
            continue
        total += 1  # details
        if account.account_status == 101:
            continue
        total += 1 if account.no_delivery else math.ceil(LOOKBACK / PAGE)
    return total


async def collect(args: argparse.Namespace) -> None:
    world = agency_scenario(
        args.accounts,
        policy=QuotaPolicy(
            account_calls=args.account_calls, app_calls=args.app_calls, window=args.window
        ),
    )
    calls = needed_calls(world)
    bound = (math.ceil(calls / args.app_calls) - 1) * args.window + args.latency
    workdir = scratch_dir("cronkeeper-bench-agency-")
    busy = wait_until_quiet()
    console.print(busy)
    sim = world.simulator(access_token=TOKEN, latency=args.latency)
    rss_before = peak_rss_mb()
    with serve_app(sim.app) as base_url:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite:///{workdir}/agency.db",
            meta_access_token=TOKEN,
            meta_api_base=base_url,
            meta_ad_account_ids=world.ids,
            meta_lookback_days=LOOKBACK,
            concurrency=args.concurrency,
            timezone="UTC",
            pacing_pause=args.window,
            run_budget=f"{args.budget}s",
        )
        service = Service.from_settings(settings)
        try:
            await service.prepare()
            start = time.perf_counter()
            result = await run_job(service, "collect-daily", None)
            wall = time.perf_counter() - start
        finally:
            await service.aclose()
    db = sqlite3.connect(workdir / "agency.db")
    stored = {r[0] for r in db.execute("SELECT DISTINCT ad_account_id FROM meta_account_details")}
    with_rows = {r[0] for r in db.execute("SELECT DISTINCT ad_account_id FROM meta_daily_insights")}
    message = result.error_message or ""
    lines = message.splitlines()
    failed = int(lines[0].split()[1]) if lines and lines[0].startswith("skipped ") else 0
    inactive_line = next((line for line in lines if "inactive at the source" in line), "")
    inactive_reported = int(inactive_line.split()[0]) if inactive_line else 0
    delivering = {a.account_id for a in world.accounts if a.account_status == 1 and a.permitted}
    lost = sorted(delivering - with_rows)
    refusals: dict[int, int] = {}
    assert sim.quota is not None
    for _, _, code in sim.quota.refusals:
        refusals[code] = refusals.get(code, 0) + 1
    rss = peak_rss_mb()
    headers = [
        "accounts",
        "status",
        "active lost to throttling",
        "failures (no permission)",
        "inactive reported",
        "details stored",
        "quota refusals",
        "calls needed N",
        "wall s",
        "lower bound s",
        "wall / bound",
        "peak RSS MB",
    ]
    row = [
        f"{len(world.accounts):,} ({len(world.active)} active, {len(world.inactive)} inactive,"
        f" {len(world.forbidden)} forbidden)",
        result.status,
        str(len(lost)),
        str(failed),
        str(inactive_reported),
        str(len(stored)),
        ", ".join(f"{n} × {c}" for c, n in sorted(refusals.items())) or "0",
        f"{calls:,}",
        f"{wall:.1f}",
        f"{bound:.1f}",
        f"×{wall / bound:.2f}",
        f"{rss:.0f} (+{rss - rss_before:.0f} during the run)",
    ]
    title = (
        f"collect-daily, agency scenario, A = {args.app_calls} app / {args.account_calls}"
        f" account calls per {args.window:g} s, concurrency {args.concurrency}"
    )
    print_table(title, headers, [row])
    met = not lost and wall / bound <= GOAL
    verdict = (
        f"**Goal {'met' if met else 'MISSED'}**: {len(lost)} active accounts lost to throttling"
        f" (goal 0), {inactive_reported} inactive accounts reported as inactive (not failures),"
        f" {failed} failures (the accounts without permission), {wall:.1f} s against the"
        f" quota's lower bound {bound:.1f} s (×{wall / bound:.2f}, goal ≤ ×{GOAL})."
    )
    console.print(verdict)
    console.print(message[:2000])
    if args.no_doc:
        return
    first_lines = "\n".join(f"    {line[:160]}" for line in lines[:6])
    update_section(
        "agency-collect",
        "\n".join(
            [
                "## An agency's scale: collect-daily of 1,000 accounts (issue 17)",
                "",
                f"Command: `{run_command()}`",
                "",
                *machine_lines(),
                f"- machine load: {busy}",
                "- the documented agency scenario (`cronkeeper.sandbox.agency_scenario`):"
                " six time zones, three currencies, 3 % inactive (statuses 2/101/3/7/100; the"
                " closed ones refuse insights, the others have no delivery), 1 % without"
                " permission (error 200); a 28-day lookback (2 insights pages per delivering"
                " account) plus the account-details call, **both counted by the quota**",
                f"- Meta simulator in-process, {args.latency * 1000:.0f} ms per call; quota"
                f" scaled from Meta's hour to W = {args.window:g} s: A = {args.app_calls} app"
                f" calls and {args.account_calls} per ad account per window (binding: N > A);"
                f" `run_job` with concurrency {args.concurrency},"
                f" `CRONKEEPER_PACING_PAUSE` = W, `CRONKEEPER_RUN_BUDGET={args.budget}s`",
                "- *lower bound* = (⌈N/A⌉ − 1)·W + one latency; *active lost to throttling* ="
                " delivering accounts with no stored row; *peak RSS* is the whole process's"
                " (the simulator serves from the same process)",
                "",
                markdown_table(headers, [row]),
                "",
                verdict,
                "",
                f"Of the {len(world.inactive)} inactive accounts, the closed ones refuse"
                ' insights and are reported under "inactive at the source, not counted as'
                ' failures"; the others answered (no delivery) and were stored like any'
                " account. The status is `partial` only because of the accounts without"
                " permission, which are failures (one grouped line).",
                "",
                "The run's message (first lines):",
                "",
                first_lines,
            ]
        ),
    )


# -- ledger ------------------------------------------------------------------------------------

FILL = """WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)
INSERT INTO cron_runs (id, cron_name, started_at, finished_at, status, records_count, created_at)
SELECT printf('%032x', n),
  CASE n % 4 WHEN 0 THEN 'collect-daily' WHEN 1 THEN 'collect-mixpanel'
    WHEN 2 THEN 'sync-notion' ELSE 'collect-benchmarks' END,
  strftime('%Y-%m-%d %H:%M:%f000', 1500000000 + n * 10, 'unixepoch'),
  strftime('%Y-%m-%d %H:%M:%f000', 1500000005 + n * 10, 'unixepoch'),
  CASE WHEN n % 37 = 0 THEN 'error' WHEN n % 41 = 0 THEN 'partial' ELSE 'success' END,
  n % 1000,
  strftime('%Y-%m-%d %H:%M:%f000', 1500000000 + n * 10, 'unixepoch')
FROM g"""


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _overhead(url: str, repeat: int) -> tuple[float, float]:
    """Median seconds of a run's start (close abandoned + start) and of its end."""
    engine = create_engine(url)
    ledger = Ledger(engine, timeout=60.0)
    starts: list[float] = []
    ends: list[float] = []
    try:
        for _ in range(repeat + 2):
            t0 = time.perf_counter()
            await ledger.close_abandoned("collect-daily", reason="abandoned (bench)")
            run_id = await ledger.start_cron_run("collect-daily")
            t1 = time.perf_counter()
            await ledger.complete_cron_run(run_id, "partial", 10, "skipped 1 of 2 accounts:")
            t2 = time.perf_counter()
            starts.append(t1 - t0)
            ends.append(t2 - t1)
    finally:
        await engine.dispose()
    return statistics.median(starts[2:]), statistics.median(ends[2:])


async def ledger(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = scratch_dir("cronkeeper-bench-ledger-scale-")
    busy = wait_until_quiet()
    console.print(busy)
    rows: list[list[str]] = []
    measured: list[tuple[int, float, float]] = []
    for size in sizes:
        path = workdir / f"ledger-{size}.db"
        url = f"sqlite:///{path}"
        await _migrate(url)
        conn = sqlite3.connect(path)
        t = time.perf_counter()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(FILL, (size,))
        conn.commit()
        conn.execute("ANALYZE")
        fill = time.perf_counter() - t
        start, end = await _overhead(url, args.repeat)
        measured.append((size, start, end))
        rows.append(
            [
                f"{size:,}",
                "idx_cron_runs_running",
                f"{start * 1000:.2f}",
                f"{end * 1000:.2f}",
                f"{fill:.0f}",
            ]
        )
        console.print(rows[-1])
        if size == sizes[-1]:
            conn.execute("DROP INDEX idx_cron_runs_running")
            conn.execute("ANALYZE")
            conn.commit()
            old_start, old_end = await _overhead(url, args.repeat)
            rows.append(
                [
                    f"{size:,}",
                    "without it (before 0009)",
                    f"{old_start * 1000:.2f}",
                    f"{old_end * 1000:.2f}",
                    "—",
                ]
            )
            console.print(rows[-1])
        conn.close()
        path.unlink()
    headers = ["cron_runs rows", "index", "run start ms", "run end ms", "fill s"]
    print_table("ledger overhead per run, SQLite", headers, rows)
    small, large = measured[0], measured[-1]
    verdict = (
        f"Start {small[1] * 1000:.2f} → {large[1] * 1000:.2f} ms (×{large[1] / small[1]:.2f}),"
        f" end {small[2] * 1000:.2f} → {large[2] * 1000:.2f} ms (×{large[2] / small[2]:.2f})"
        f" from {small[0]:,} to {large[0]:,} rows."
    )
    console.print(verdict)
    if args.no_doc:
        return
    update_section(
        "agency-ledger",
        "\n".join(
            [
                "## Ledger overhead per run as the history grows (issue 17)",
                "",
                f"Command: `{run_command()}`",
                "",
                *machine_lines(),
                f"- machine load: {busy}",
                "- SQLite (WAL, `synchronous=NORMAL` as the engine sets it), `cron_runs` filled"
                " in one `INSERT … SELECT` (four jobs, 1/37 error, 1/41 partial), then"
                f" `ANALYZE`; median of {args.repeat} runs after 2 warm-ups",
                "- *run start* = `Ledger.close_abandoned` (the holder of the lease closes the"
                " job's `running` rows) + `start_cron_run`; *run end* = `complete_cron_run`",
                "",
                markdown_table(headers, rows),
                "",
                verdict,
            ]
        ),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    one = sub.add_parser("collect")
    one.add_argument("--accounts", type=int, default=1000)
    one.add_argument("--window", type=float, default=20.0, help="quota window, seconds")
    one.add_argument("--app-calls", type=int, default=700, help="app calls per window")
    one.add_argument("--account-calls", type=int, default=10)
    one.add_argument("--latency", type=float, default=0.01)
    one.add_argument("--concurrency", type=int, default=8)
    one.add_argument("--budget", type=int, default=900, help="CRONKEEPER_RUN_BUDGET, seconds")
    one.add_argument("--no-doc", action="store_true")
    two = sub.add_parser("ledger")
    two.add_argument("--sizes", default="1000,1000000")
    two.add_argument("--repeat", type=int, default=30)
    two.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    logging.getLogger("cronkeeper").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    work: Any = collect(args) if args.part == "collect" else ledger(args)
    asyncio.run(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
