"""Prune on SQLite and PostgreSQL: old rows go in batches, each job's latest run and every
running row stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import StorageError
from cronkeeper.ledger.prune import prune
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_runs
from tests.support.fakes import insert_run

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NINETY_DAYS = timedelta(days=90)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


async def remaining(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return {str(r[0]) for r in await conn.execute(select(cron_runs.c.id))}


async def test_deletes_old_rows_and_keeps_recent_latest_and_running_ones(
    engine: AsyncEngine,
) -> None:
    old = [await insert_run(engine, "collect-daily", days_ago(100 + i)) for i in range(3)]
    recent = await insert_run(engine, "collect-daily", days_ago(10))
    boundary = await insert_run(engine, "collect-daily", days_ago(90))  # not *before* the cutoff
    # sync-notion has not run for 200 days: its latest run stays, however old.
    notion_old = await insert_run(engine, "sync-notion", days_ago(300))
    notion_latest = await insert_run(engine, "sync-notion", days_ago(200), status="error")
    # A row still `running` is never the janitor's to remove.
    stuck = await insert_run(engine, "collect-mixpanel", days_ago(150), status="running")
    mixpanel_latest = await insert_run(engine, "collect-mixpanel", days_ago(1))

    deleted = await prune(engine, older_than=NINETY_DAYS, now=NOW)

    assert deleted == 4
    assert await remaining(engine) == {recent, boundary, notion_latest, stuck, mixpanel_latest}
    assert not set(old) & await remaining(engine)
    assert notion_old not in await remaining(engine)


async def test_a_job_whose_every_run_is_ancient_keeps_exactly_its_latest(
    engine: AsyncEngine,
) -> None:
    runs = [await insert_run(engine, "collect-benchmarks", days_ago(400 + 7 * i)) for i in range(5)]
    assert await prune(engine, older_than=NINETY_DAYS, now=NOW) == 4
    assert await remaining(engine) == {runs[0]}


async def test_batches_delete_every_eligible_row_and_report_progress(engine: AsyncEngine) -> None:
    eligible = [await insert_run(engine, "collect-daily", days_ago(100 + i)) for i in range(10)]
    latest = await insert_run(engine, "collect-daily", days_ago(2))
    seen: list[int] = []
    deleted = await prune(
        engine, older_than=NINETY_DAYS, now=NOW, batch_size=3, progress=seen.append
    )
    assert deleted == 10
    assert seen == [3, 6, 9, 10]  # four transactions of at most three rows
    assert await remaining(engine) == {latest}
    assert not set(eligible) & await remaining(engine)


async def test_batches_run_across_jobs(engine: AsyncEngine) -> None:
    for name in ("collect-daily", "collect-mixpanel"):
        for i in range(4):
            await insert_run(engine, name, days_ago(120 + i))
    assert await prune(engine, older_than=NINETY_DAYS, now=NOW, batch_size=3) == 6
    assert len(await remaining(engine)) == 2  # each job's latest


async def test_dry_run_counts_without_deleting(engine: AsyncEngine) -> None:
    for i in range(5):
        await insert_run(engine, "collect-daily", days_ago(95 + i))
    assert await prune(engine, older_than=NINETY_DAYS, now=NOW, dry_run=True) == 4
    assert len(await remaining(engine)) == 5
    assert await prune(engine, older_than=NINETY_DAYS, now=NOW) == 4


async def test_nothing_to_prune_on_an_empty_ledger(engine: AsyncEngine) -> None:
    assert await prune(engine, older_than=NINETY_DAYS, now=NOW) == 0


async def test_rows_tied_with_the_latest_start_are_kept(engine: AsyncEngine) -> None:
    a = await insert_run(engine, "collect-daily", days_ago(200))
    b = await insert_run(engine, "collect-daily", days_ago(200))
    await insert_run(engine, "collect-daily", days_ago(300))
    assert await prune(engine, older_than=NINETY_DAYS, now=NOW) == 1
    assert await remaining(engine) == {a, b}


@pytest.mark.parametrize(
    ("older_than", "batch_size"), [(timedelta(0), 1000), (NINETY_DAYS, 0)], ids=["age", "batch"]
)
async def test_rejects_a_zero_age_or_batch(older_than: timedelta, batch_size: int) -> None:
    engine = create_engine("sqlite:///unused.db")
    try:
        with pytest.raises(ValueError, match="must be"):
            await prune(engine, older_than=older_than, now=NOW, batch_size=batch_size)
    finally:
        await engine.dispose()


async def test_a_database_failure_is_a_storage_error_that_says_how_far_it_got() -> None:
    engine = create_engine("postgresql://cronkeeper:pw@127.0.0.1:1/nothing", timeout=1)
    try:
        with pytest.raises(StorageError, match="prune stopped after deleting 0 runs"):
            await prune(engine, older_than=NINETY_DAYS, now=NOW)
    finally:
        await engine.dispose()
