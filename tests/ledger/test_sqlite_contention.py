"""SQLite's "database is locked" is contention, not an outage (issue 20, item 5).

Before: a write lock held past the busy timeout (a long backfill transaction, an analyst's
``sqlite3`` shell) surfaced as the ledger call's own timeout — or as an ``OperationalError``
— which opened the breaker for 30 s: the next runs went unrecorded on a machine whose
database was fine. Here an outside ``sqlite3`` connection holds the write lock
(``BEGIN IMMEDIATE``) while runs start and end on the same file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from cronkeeper.ledger import Ledger
from cronkeeper.ledger.spool import Spool
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_runs
from tests.conftest import FakeClock, migrated

TIMEOUT = 0.5  # the ledger timeout; SQLite's busy timeout is 80 % of it


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """An outside writer: a plain ``sqlite3`` connection inside ``BEGIN IMMEDIATE``."""
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "contended.db"
    migrated(f"sqlite:///{path}")
    return path


async def test_runs_under_an_outside_write_lock_are_spooled_and_the_breaker_stays_closed(
    database: Path, tmp_path: Path, clock: FakeClock
) -> None:
    url = f"sqlite:///{database}"
    engine = create_engine(url, timeout=TIMEOUT)
    breaker = Breaker(cooldown=30)
    ledger = Ledger(
        engine,
        timeout=TIMEOUT,
        clock=clock,
        breaker=breaker,
        spool=Spool.for_database(url, tmp_path / "spool"),
    )
    try:
        first = await ledger.start_cron_run("collect-daily")
        second = await ledger.start_cron_run("sync-notion")
        assert first is not None and second is not None
        with write_lock_held(database):
            clock.advance(minutes=3)
            assert not await ledger.complete_cron_run(
                first, "success", 12, cron_name="collect-daily"
            )
            assert breaker.allow(), "contention opened the breaker"
            assert not await ledger.complete_cron_run(
                second, "partial", 3, "skipped 1 of 4 pages", cron_name="sync-notion"
            )
            assert breaker.allow()
            third = await ledger.start_cron_run("collect-mixpanel")  # starts under the lock
            assert third is not None
            assert breaker.allow()
            assert not await ledger.complete_cron_run(third, "success", 5)
            assert ledger.spool is not None
            assert ledger.spool.run_ids() == {first, second, third}
        assert sorted(await ledger.replay_spool()) == sorted([first, second, third])
        async with engine.connect() as conn:
            rows = {
                r.id: r
                for r in await conn.execute(
                    select(cron_runs.c.id, cron_runs.c.status, cron_runs.c.records_count)
                )
            }
        assert (rows[first].status, rows[first].records_count) == ("success", 12)
        assert (rows[second].status, rows[second].records_count) == ("partial", 3)
        assert (rows[third].status, rows[third].records_count) == ("success", 5)
    finally:
        await engine.dispose()
