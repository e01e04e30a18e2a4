"""job_state: one conditional UPDATE per change, so N claimants win exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger.job_state import JobState, JobStates
from cronkeeper.storage.engine import create_engine

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


async def test_a_job_without_a_row_reads_as_ok_and_rows_are_created_once(
    engine: AsyncEngine,
) -> None:
    states = JobStates(engine)
    fresh = (await states.read(["collect-daily"]))["collect-daily"]
    assert fresh == JobState("collect-daily")
    await asyncio.gather(*(states.ensure(["collect-daily", "sync-notion"], T0) for _ in range(4)))
    read = await states.read(["collect-daily", "sync-notion"])
    assert read["collect-daily"].state == "ok" and read["collect-daily"].since == T0
    assert read["sync-notion"].version == 0


async def test_of_many_concurrent_claims_of_one_change_exactly_one_wins(
    database_url: str,
) -> None:
    """Eight engines (eight replicas' pools) claim the same change at once: one wins."""
    engines = [create_engine(database_url) for _ in range(8)]
    try:
        stores = [JobStates(e) for e in engines]
        await stores[0].ensure(["collect-daily"], T0)
        seen = (await stores[0].read(["collect-daily"]))["collect-daily"]
        won = await asyncio.gather(*(s.claim(seen, "missing", T0, alerting=True) for s in stores))
        assert sorted(won) == [False] * 7 + [True]
        now = (await stores[0].read(["collect-daily"]))["collect-daily"]
        assert (now.state, now.version, now.last_alerted_at) == ("missing", 1, T0)
        # Back and forth: each change is its own claim, a stale reader never wins.
        assert await stores[1].claim(now, "ok", T0, alerting=True)
        assert not await stores[2].claim(now, "ok", T0, alerting=True)
        later = (await stores[0].read(["collect-daily"]))["collect-daily"]
        assert later.version == 2
        reminders = await asyncio.gather(*(s.claim_reminder(later, T0) for s in stores))
        assert sorted(reminders) == [False] * 7 + [True]
    finally:
        for e in engines:
            await e.dispose()


async def test_a_pause_with_an_end_ends_by_itself_and_resume_ends_any(
    engine: AsyncEngine,
) -> None:
    states = JobStates(engine)
    row = await states.pause(
        "collect-daily", T0, until=T0 + timedelta(hours=2), reason="Meta outage", by="cli"
    )
    assert row.is_paused(T0 + timedelta(hours=1))
    assert not row.is_paused(T0 + timedelta(hours=2))
    assert row.pause_json(T0) == {
        "paused": True,
        "pausedUntil": "2026-11-20T03:00:00+00:00",
        "pauseReason": "Meta outage",
        "pausedBy": "cli",
    }
    assert row.pause_json(T0 + timedelta(hours=3))["paused"] is False
    forever = await states.pause("collect-mixpanel", T0, until=None, reason=None)
    assert forever.is_paused(T0 + timedelta(days=365))
    resumed = await states.resume("collect-mixpanel", T0 + timedelta(hours=1))
    assert not resumed.is_paused(T0 + timedelta(hours=1))
    assert resumed.resumed_at == T0 + timedelta(hours=1)


async def test_the_volume_verdict_is_stored_per_run(engine: AsyncEngine) -> None:
    states = JobStates(engine)
    await states.ensure(["collect-daily"], T0)
    await states.record_volume("collect-daily", "run-1", "low-volume", (165.0, 235.0), T0)
    row = (await states.read(["collect-daily"]))["collect-daily"]
    assert (row.evaluated_run_id, row.anomaly) == ("run-1", "low-volume")
    assert (row.expected_low, row.expected_high) == (165.0, 235.0)


async def test_the_baseline_read_walks_a_per_job_index(engine: AsyncEngine) -> None:
    """The watchdog's volume baseline costs a bounded index walk, whatever the history: the
    per-job index, or the partial index of successes (0008) or of ok runs (0012) where the
    planner prefers it."""
    from cronkeeper.ledger import Ledger
    from cronkeeper.ledger.reads import successes_statement
    from tests.support.plans import fill_history, query_plan

    await fill_history(engine)
    since = datetime.now(UTC) - timedelta(weeks=17)
    for statement in (
        successes_statement("collect-daily", since, 400),
        successes_statement("collect-daily", None, 60),
    ):
        shown = await query_plan(engine, statement)
        assert any(
            index in shown
            for index in ("idx_cron_runs_name_started", "idx_cron_runs_success", "idx_cron_runs_ok")
        ), shown
        if engine.dialect.name == "postgresql":
            assert "Seq Scan" not in shown and "Sort" not in shown, shown
        else:
            assert "TEMP B-TREE" not in shown, shown
    ledger = Ledger(engine)
    for status in ("success", "error", "success", "partial", "success"):
        await ledger.complete_cron_run(await ledger.start_cron_run("collect-daily"), status, 1)
    rows = await ledger.successes("collect-daily", None, limit=2)
    # successes and partial runs: the pure rule keeps the partials within the tolerance
    assert [r.status for r in rows] == ["success", "partial"]
    assert rows == sorted(rows, key=lambda r: r.started_at, reverse=True)
