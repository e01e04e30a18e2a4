"""Benchmark 4: what the ledger costs a cron, and how long an unreachable database delays it.

Part 1, overhead: ``start_cron_run`` + ``complete_cron_run`` pairs through :class:`Ledger`, on
SQLite (a temp file, WAL, ``synchronous=NORMAL`` as the engine sets it) and on PostgreSQL (a
throwaway cluster with *durable* settings: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` on, unlike the test suite's cluster), one after another and from 8
concurrent tasks: pairs per second and per-pair latency.

Part 2, outage: the delay ``Ledger.track`` (start + complete around an empty job) adds when
PostgreSQL is (a) refused (nothing listens on the port) or (b) a blackhole (a socket that
listens but never accepts or answers), with the ledger timeout at 5 s; and a lone
``complete_cron_run`` of a known id against the blackhole (the database lost mid-run). Each
must stay at about the timeout, never hang; every call has an outer 30 s guard.

    .venv/bin/python bench/ledger_overhead.py [--pairs 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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

from cronkeeper.ledger import Ledger  # noqa: E402
from cronkeeper.storage.engine import create_engine, upgrade  # noqa: E402

TIMEOUT = 5.0
GUARD = 30.0


@dataclass(frozen=True)
class Throughput:
    backend: str
    tasks: int
    pairs: int
    seconds: float
    latency: Stats
    cpu: float
    """CPU seconds this process (the client side: ledger, SQLAlchemy, driver) spent."""

    @property
    def per_second(self) -> float:
        return self.pairs / self.seconds


async def pairs(ledger: Ledger, backend: str, total: int, tasks: int, budget: float) -> Throughput:
    """``total`` start+complete pairs from ``tasks`` tasks (or as many as fit in ``budget``)."""
    samples: list[float] = []
    failures = 0
    remaining = total
    deadline = time.perf_counter() + budget

    async def worker(n: int) -> None:
        nonlocal remaining, failures
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            start = time.perf_counter()
            run_id = await ledger.start_cron_run(f"bench-{n % 4}")
            ok = await ledger.complete_cron_run(run_id, "success", 1)
            samples.append(time.perf_counter() - start)
            failures += run_id is None or not ok

    for _ in range(20):  # warm up the pool and the caches
        await ledger.complete_cron_run(await ledger.start_cron_run("warmup"), "success", 0)
    begin, cpu = time.perf_counter(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for n in range(tasks):
            group.create_task(worker(n))
    elapsed, cpu = time.perf_counter() - begin, time.process_time() - cpu
    if failures:
        raise RuntimeError(f"{failures} ledger writes failed on {backend}")
    return Throughput(backend, tasks, len(samples), elapsed, Stats.of(samples), cpu)


@dataclass(frozen=True)
class Outage:
    case: str
    call: str
    seconds: float
    outcome: str


async def timed(call: Callable[[], Awaitable[object]]) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        result = await asyncio.wait_for(call(), GUARD)
        outcome = f"returned {result!r}"
    except TimeoutError:
        outcome = f"HUNG (cut by the bench's {GUARD:g} s guard)"
    except Exception as exc:
        outcome = f"raised {type(exc).__name__}"
    return time.perf_counter() - start, outcome


async def outage(case: str, url: str) -> list[Outage]:
    engine = create_engine(url, timeout=TIMEOUT)
    ledger = Ledger(engine, timeout=TIMEOUT)
    out: list[Outage] = []

    async def tracked() -> str | None:
        async with ledger.track("collect-daily") as run:
            run.stored(1)
        return run.summary.status if run.summary else None

    seconds, outcome = await timed(tracked)
    out.append(Outage(case, "track(): start + complete around an empty job", seconds, outcome))
    seconds, outcome = await timed(lambda: ledger.start_cron_run("collect-daily"))
    out.append(Outage(case, "start_cron_run", seconds, outcome))
    known = str(uuid.uuid4())
    seconds, outcome = await timed(lambda: ledger.complete_cron_run(known, "success", 1))
    out.append(Outage(case, "complete_cron_run(known id)", seconds, outcome))
    await asyncio.wait_for(engine.dispose(), GUARD)
    return out


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs per measurement")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--budget", type=float, default=15.0, help="max seconds per measurement")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    # The outage part logs one error per failed write by design; keep the table readable.
    logging.getLogger("cronkeeper.ledger").setLevel(logging.CRITICAL)

    busy = wait_until_quiet()
    console.print(busy)
    results: list[Throughput] = []
    workdir = scratch_dir("cronkeeper-bench-ledger-")
    sqlite = create_engine(f"sqlite:///{workdir}/ledger.db", timeout=TIMEOUT)
    await upgrade(sqlite)
    for tasks in (1, args.concurrency):
        console.print(f"SQLite, {tasks} task(s)…")
        results.append(await pairs(Ledger(sqlite), "SQLite", args.pairs, tasks, args.budget))
    await sqlite.dispose()

    console.print("[bold]starting a throwaway PostgreSQL cluster (durable settings)…[/]")
    cluster = start_postgres(settings=DURABLE)
    try:
        engine: AsyncEngine = create_engine(cluster.url(), timeout=TIMEOUT)
        await upgrade(engine)
        async with engine.connect() as conn:
            version = str((await conn.execute(text("SHOW server_version"))).scalar_one())
        for tasks in (1, args.concurrency):
            console.print(f"PostgreSQL, {tasks} task(s)…")
            results.append(
                await pairs(Ledger(engine), "PostgreSQL", args.pairs, tasks, args.budget)
            )
        await engine.dispose()
    finally:
        cluster.cleanup()

    outages: list[Outage] = []
    console.print("database unreachable: refused port…")
    outages += await outage("refused port", f"postgresql://postgres@127.0.0.1:{refused_port()}/x")
    console.print("database unreachable: blackhole port…")
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # the kernel completes handshakes; nobody ever accepts or answers
        port = hole.getsockname()[1]
        outages += await outage("blackhole port", f"postgresql://postgres@127.0.0.1:{port}/x")

    report(results, outages, version, busy, args)
    return 0


def report(
    results: list[Throughput],
    outages: list[Outage],
    version: str,
    busy: str,
    args: argparse.Namespace,
) -> None:
    headers = [
        "backend",
        "tasks",
        "pairs",
        "pairs/s",
        "pair median ms",
        "pair p99 ms",
        "client CPU ms/pair",
    ]
    rows = [
        [
            r.backend,
            str(r.tasks),
            str(r.pairs),
            f"{r.per_second:,.0f}",
            ms(r.latency.median),
            ms(r.latency.p99),
            ms(r.cpu / r.pairs),
        ]
        for r in results
    ]
    print_table("ledger overhead: start_cron_run + complete_cron_run", headers, rows)
    out_headers = ["database", "call", "seconds", "outcome"]
    out_rows = [[o.case, o.call, f"{o.seconds:.2f}", o.outcome] for o in outages]
    print_table(f"unreachable database, ledger timeout {TIMEOUT:g} s", out_headers, out_rows)

    bounded = all(o.seconds <= TIMEOUT + 1.0 and "HUNG" not in o.outcome for o in outages)
    worst = max(o.seconds for o in outages)
    verdict = (
        f"every ledger call against an unreachable database returned within {worst:.2f} s "
        f"(timeout {TIMEOUT:g} s): {'met' if bounded else 'MISSED'}"
    )
    console.print(f"[bold]{verdict}[/]")
    if args.no_doc:
        return
    body = [
        "## 4. Ledger overhead and unreachable database",
        "",
        f"Command: `{run_command()}`",
        "",
        *machine_lines(version),
        f"- machine load: {busy}",
        "- PostgreSQL with durable settings (fsync, synchronous_commit, full_page_writes on);"
        " SQLite in WAL with synchronous=NORMAL (the engine's settings)",
        "",
        "A pair is one `start_cron_run` (INSERT) and one `complete_cron_run` (UPDATE), each in"
        " its own transaction, through `Ledger` as a job uses it.",
        "",
        markdown_table(headers, rows),
        "",
        f"Unreachable database (`CRONKEEPER_LEDGER_TIMEOUT` = {TIMEOUT:g} s). A `track()` whose"
        " start failed skips the complete (`complete_cron_run(None, …)` does nothing), so an"
        " outage costs a cron one timeout; a database lost mid-run costs the complete's"
        " timeout.",
        "",
        markdown_table(out_headers, out_rows),
        "",
        f"**Goal {'met' if bounded else 'missed'}**: {verdict}.",
    ]
    update_section("ledger", "\n".join(body))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
