"""SQLite under contention with several writers (issue 20, item 5).

One SQLite file; three writers as a deployment has them — the scheduler firing a job, an HTTP
trigger through the real app, a ``cronkeeper run`` — and an outside ``sqlite3`` connection
(an analyst's shell, a long backfill) holding the write lock with ``BEGIN IMMEDIATE`` past
the busy timeout, then letting go. "database is locked" is contention, not an outage: no
breaker opens, health never answers "database unavailable", and every run ends up in the
ledger (those whose start or end met the lock were spooled, then replayed).

Each writer has a service of its own (its own engine, breaker and pool, as separate
processes would); the jobs talk to the demo world's simulators on loopback. No timing is
asserted: the lock is released once each writer has met it (its run's start spooled).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cronkeeper.api.app import create_app
from cronkeeper.ledger.spool import Spool
from cronkeeper.sandbox import demo_world
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_runs
from tests.conftest import SECRET, make_settings
from tests.support.cli import run_cli
from tests.support.databases import migrated
from tests.support.waiting import eventually

AUTH = {"Authorization": f"Bearer {SECRET}"}
LEDGER_TIMEOUT = "1"  # SQLite's busy timeout is 80 % of it: the lock outlasts it
SCHEDULED, TRIGGERED, BY_HAND = "collect-mixpanel", "collect-daily", "sync-notion"


@pytest.fixture
def world_env() -> Iterator[dict[str, str]]:
    sim = demo_world(seed=11, latency=0.0)
    with sim.serve() as endpoints:
        env = sim.environment(endpoints)
        env["META_AD_ACCOUNT_IDS"] = ",".join(sim.credentials.meta_ad_account_ids)
        yield env


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shared.db"
    migrated(f"sqlite:///{path}")
    return path


@pytest.fixture
def breaker_opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time any breaker of this process (the CLI's too) opened, what opened it."""
    opened: list[str] = []
    record = Breaker.record

    def spy(self: Breaker, exc: BaseException | None) -> None:
        record(self, exc)
        if exc is not None and not self.allow():
            opened.append(f"{type(exc).__name__}: {exc}")

    monkeypatch.setattr(Breaker, "record", spy)
    return opened


async def test_scheduler_api_and_cli_writing_under_an_outside_lock_lose_no_run(
    database: Path, tmp_path: Path, world_env: dict[str, str], breaker_opened: list[str]
) -> None:
    url = f"sqlite:///{database}"
    spool_dir = tmp_path / "spool"
    env = world_env | {
        "DATABASE_URL": url,
        "CRON_SECRET": SECRET,
        "CRONKEEPER_LEDGER_TIMEOUT": LEDGER_TIMEOUT,
        "CRONKEEPER_SPOOL_DIR": str(spool_dir),
        "CRONKEEPER_MAX_RETRIES": "0",
        "CRONKEEPER_TRIGGER_WAIT": "60s",  # the answer carries the run's end (202 is item 6's)
    }

    def service() -> Service:
        settings = make_settings(url, **{k: v for k, v in env.items() if k != "DATABASE_URL"})
        return Service.from_settings(
            settings, engine=create_engine(url, timeout=settings.ledger_timeout)
        )

    scheduler_side, api_side = service(), service()
    assert await scheduler_side.prepare() and await api_side.prepare()
    scheduler = CronScheduler(scheduler_side, heartbeat=False)
    spool = Spool.for_database(url, spool_dir)
    health: list[tuple[int, Any]] = []
    transport = httpx.ASGITransport(app=create_app(api_side))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def look_at_health() -> None:
                answer = await client.get("/api/cron/health", headers=AUTH)
                health.append((answer.status_code, answer.json()))

            async def keep_looking(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    await look_at_health()
                    await asyncio.sleep(0.05)

            outsider = sqlite3.connect(database, isolation_level=None)
            outsider.execute("BEGIN IMMEDIATE")  # the analyst's shell takes the write lock
            stop = asyncio.Event()
            looking = asyncio.create_task(keep_looking(stop))
            try:
                fired = asyncio.create_task(scheduler.fire(SCHEDULED))
                triggered = asyncio.create_task(client.post(f"/api/cron/{TRIGGERED}", headers=AUTH))
                by_hand = asyncio.create_task(
                    asyncio.to_thread(run_cli, "run", BY_HAND, env=env, timeout=120)
                )
                met: set[str] = set()

                def all_met_the_lock() -> bool:
                    met.update(s.cron_name for s in spool.starts())
                    return met >= {SCHEDULED, TRIGGERED, BY_HAND}

                # Each writer waited out the busy timeout and spooled its run's start.
                await eventually(all_met_the_lock, what="every writer met the lock", within=60)
                await look_at_health()
            finally:
                outsider.execute("ROLLBACK")  # … and lets go
                outsider.close()
                stop.set()
                await looking

            scheduled = await asyncio.wait_for(fired, 120)
            answer = await asyncio.wait_for(triggered, 120)
            cli = await asyncio.wait_for(by_hand, 120)
            await look_at_health()
    finally:
        await scheduler_side.aclose()
        await api_side.aclose()

    assert scheduled is not None, "the scheduler's fire ran nothing"
    assert answer.status_code in (200, 500), answer.text  # a run's answer, whatever its end
    assert cli.returncode in (0, 1, 3), cli.stderr
    run_ids = {
        SCHEDULED: scheduled.run_id,
        TRIGGERED: answer.json()["runId"],
        BY_HAND: json.loads(cli.stdout)["runId"],
    }
    assert all(run_ids.values()), run_ids

    # The next contact replays what is still spooled; then every run is in the ledger, closed.
    last = service()
    try:
        assert await last.prepare()
        async with last.engine.connect() as conn:
            rows = {
                str(r.id): r
                for r in await conn.execute(
                    select(cron_runs.c.id, cron_runs.c.cron_name, cron_runs.c.status)
                )
            }
    finally:
        await last.aclose()
    assert {job: rows[run_id].cron_name for job, run_id in run_ids.items()} == {
        job: job for job in run_ids
    }
    assert [r for r in rows.values() if r.status == "running"] == []
    assert spool.starts() == [] and spool.pending() == []
    # Contention, never an outage.
    assert breaker_opened == []
    assert [code for code, _ in health if code != 200] == [], health
    assert all(body.get("error") != "database unavailable" for _, body in health)
