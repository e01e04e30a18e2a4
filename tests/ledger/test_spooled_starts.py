"""Run starts are spooled too (issue 20, item 4).

Before: the spool kept run *ends* only; a run whose start insert failed never appeared in the
ledger, the metrics or the status page, though the README said run ends are never lost.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger import Ledger
from cronkeeper.ledger.models import ABANDONED
from cronkeeper.ledger.spool import Spool, SpooledEnd
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_runs
from tests.conftest import FakeClock

pytestmark = pytest.mark.pooler

DOWN_POSTGRES = "postgresql://nobody@127.0.0.1:9/nothing"  # nothing listens on port 9


async def rows(engine: AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(
                cron_runs.c.id,
                cron_runs.c.cron_name,
                cron_runs.c.status,
                cron_runs.c.records_count,
                cron_runs.c.started_at,
                cron_runs.c.finished_at,
                cron_runs.c.report_date,
            )
        )
        return [(str(r[0]), *r[1:]) for r in result]


async def test_a_run_whose_start_failed_is_recorded_with_its_real_start_once_the_database_is_back(
    database_url: str, engine: AsyncEngine, tmp_path: Path, clock: FakeClock
) -> None:
    spool = Spool.for_database(database_url, tmp_path / "spool")
    down = create_engine(DOWN_POSTGRES, timeout=1.0)
    during_outage = Ledger(down, timeout=1.0, clock=clock, spool=spool)
    started_at = clock()
    try:
        async with during_outage.track("collect-daily", report_date=started_at.date()) as run:
            assert run.run_id is not None  # the run has its id though the database is down
            clock.advance(minutes=7)
            run.stored(40)
    finally:
        await down.dispose()
    assert await rows(engine) == []
    run_id = run.run_id

    clock.advance(minutes=1)
    back = Ledger(engine, clock=clock, spool=spool)  # the next contact (a run, a command)
    assert await back.replay_spool() == [run_id]
    async with engine.connect() as conn:
        created_at = (await conn.execute(select(cron_runs.c.created_at))).scalar_one()
    assert created_at == started_at + timedelta(minutes=8)  # recorded late, and says so
    assert await rows(engine) == [
        (
            run_id,
            "collect-daily",
            "success",
            40,
            started_at,
            started_at + timedelta(minutes=7),
            started_at.date(),
        )
    ]
    assert spool.starts() == [] and spool.pending() == []
    assert await back.replay_spool() == []  # idempotent


async def test_when_the_database_is_back_by_the_runs_end_start_and_end_are_recorded_at_once(
    database_url: str, engine: AsyncEngine, tmp_path: Path, clock: FakeClock
) -> None:
    breaker = Breaker(cooldown=60)
    spool = Spool.for_database(database_url, tmp_path / "spool")
    ledger = Ledger(engine, clock=clock, breaker=breaker, spool=spool)
    breaker.record(TimeoutError())  # a call just went unanswered: the start is not tried
    started_at = clock()
    run_id = await ledger.start_cron_run("sync-notion")
    assert run_id is not None
    assert [start.run_id for start in spool.starts()] == [run_id]
    breaker.record(None)  # the database answers again
    clock.advance(minutes=2)
    assert await ledger.complete_cron_run(
        run_id, "partial", 3, "skipped 1 of 4 pages", cron_name="sync-notion"
    )
    [row] = await rows(engine)
    assert row[:5] == (run_id, "sync-notion", "partial", 3, started_at)
    assert spool.starts() == [] and spool.pending() == []


async def test_without_a_spool_a_failed_start_still_returns_none(clock: FakeClock) -> None:
    down = create_engine(DOWN_POSTGRES, timeout=1.0)
    try:
        assert await Ledger(down, timeout=1.0, clock=clock).start_cron_run("x") is None
    finally:
        await down.dispose()


async def test_a_spooled_end_corrects_a_row_closed_as_abandoned_meanwhile(
    database_url: str, engine: AsyncEngine, tmp_path: Path, clock: FakeClock
) -> None:
    """Another process replayed this run's start while it still ran (or its lease expired
    during an outage) and closed it as abandoned; the end the run itself saw is the truth."""
    spool = Spool.for_database(database_url, tmp_path / "spool")
    ledger = Ledger(engine, clock=clock, spool=spool)
    run_id = await ledger.start_cron_run("collect-daily")
    assert run_id is not None
    clock.advance(minutes=2)  # started without a lease: abandoned once silent for its TTL
    assert await ledger.close_abandoned("collect-daily", reason=ABANDONED) == [run_id]
    spool.write(SpooledEnd(run_id, "collect-daily", "success", 9, None, clock()))
    assert await ledger.replay_spool() == [run_id]
    [row] = await rows(engine)
    assert row[2:4] == ("success", 9)
