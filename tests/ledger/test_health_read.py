"""The health read as one statement (issue 16): the same answer as the three reads it
replaces, one statement on one connection per health read, and the three reads apart when
the schema is older than the tables it reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.config import Settings
from cronkeeper.errors import DatabaseUnreachable, SchemaBehind
from cronkeeper.ledger import Ledger
from cronkeeper.ledger.job_state import JobStates
from cronkeeper.ledger.presence import NEWEST, Heartbeat, Heartbeats
from cronkeeper.service import Service
from cronkeeper.storage.schema import cron_runs
from tests.conftest import FakeClock
from tests.migrations.test_0009_agency_scale import _to

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ASKED = ["sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks"]


async def _seed(engine: AsyncEngine) -> None:
    """Runs for some jobs (none for ``sync-notion``), one of another job; states (a pause
    with an end, a failed job with a volume verdict, a job not asked for); more beats than
    a health read looks at, one stopped, two at the same instant."""
    rows: list[dict[str, Any]] = []
    for i, (job, status) in enumerate(
        [
            ("collect-daily", "success"),
            ("collect-daily", "partial"),
            ("collect-daily", "error"),
            ("collect-mixpanel", "success"),
            ("collect-mixpanel", "running"),
            ("collect-benchmarks", "success"),
            ("other-job", "success"),
        ]
    ):
        started = T0 + timedelta(minutes=i)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "cron_name": job,
                "started_at": started,
                "finished_at": None if status == "running" else started + timedelta(seconds=30),
                "status": status,
                "records_count": 10 * i if status != "running" else 0,
                "error_message": "boom" if status == "error" else None,
                "report_date": started.date() if job == "collect-daily" else None,
            }
        )
    async with engine.begin() as conn:
        await conn.execute(cron_runs.insert(), rows)
    states = JobStates(engine)
    await states.pause("collect-daily", T0, until=T0 + timedelta(hours=2), reason="r", by="api")
    await states.ensure(["collect-mixpanel", "other-job"], T0)
    [seen] = (await states.read(["collect-mixpanel"])).values()
    assert await states.claim(seen, "failed", T0, alerting=True)
    await states.record_volume("collect-mixpanel", "run-1", "low-volume", (1.5, 9.25), T0)
    beats = Heartbeats(engine)
    for i in range(NEWEST + 2):
        at = T0 + timedelta(seconds=i if i != 5 else 4)
        await beats.beat(Heartbeat(f"host:{i}", "host", 100 + i, T0, at))
    await beats.stop("host:3", T0 + timedelta(seconds=30))


async def _apart(engine: AsyncEngine, names: list[str]) -> tuple[Any, Any, Any]:
    return (
        await Ledger(engine).latest_runs(names),
        await JobStates(engine).read(names),
        await Heartbeats(engine).newest(),
    )


@pytest.mark.sql
async def test_the_one_statement_reads_what_the_three_reads_do(engine: AsyncEngine) -> None:
    ledger = Ledger(engine)
    empty = await ledger.health_read(ASKED)
    assert empty == await _apart(engine, ASKED)
    assert empty[0] == dict.fromkeys(ASKED) and empty[2] == []
    await _seed(engine)
    read = await ledger.health_read(ASKED)
    assert read == await _apart(engine, ASKED)
    latest, states, beats = read
    assert list(latest) == ASKED and latest["sync-notion"] is None
    daily = latest["collect-daily"]
    assert daily is not None and (daily.status, daily.error_message) == ("error", "boom")
    assert daily.report_date == daily.started_at.date() and daily.started_at.tzinfo is not None
    mixpanel = latest["collect-mixpanel"]
    assert mixpanel is not None and (mixpanel.status, mixpanel.finished_at) == ("running", None)
    assert list(states) == ASKED and "other-job" not in states
    assert states["collect-daily"].paused is True and states["collect-daily"].paused_by == "api"
    assert states["collect-daily"].paused_until == T0 + timedelta(hours=2)
    failed = states["collect-mixpanel"]
    assert (failed.state, failed.anomaly, failed.expected_low) == ("failed", "low-volume", 1.5)
    assert states["sync-notion"].state == "ok" and states["sync-notion"].since is None
    assert len(beats) == NEWEST and beats[0].id == f"host:{NEWEST + 1}"
    assert [b.last_beat_at for b in beats] == sorted((b.last_beat_at for b in beats), reverse=True)
    # No jobs: only the beats are read.
    assert await ledger.health_read([]) == ({}, {}, await Heartbeats(engine).newest())


@pytest.mark.sql
async def test_a_health_read_is_one_statement_on_one_connection(
    settings: Settings, clock: FakeClock
) -> None:
    """Before: three statements, each on its own pooled connection (~0.35 ms of client CPU
    each, most of what health cost beside ``/healthz``)."""
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    await _seed(service.engine)
    await service.health()  # connections made, statements compiled
    statements: list[str] = []
    checkouts = 0

    def executed(*args: Any) -> None:
        statements.append(args[2])

    def checked_out(*_args: Any) -> None:
        nonlocal checkouts
        checkouts += 1

    event.listen(service.engine.sync_engine, "before_cursor_execute", executed)
    event.listen(service.engine.sync_engine.pool, "checkout", checked_out)
    report = await service.health()
    await service.aclose()
    assert len(statements) == 1, statements
    assert checkouts == 1
    assert report.scheduler is not None, "the beats were read"


@pytest.mark.sql
@pytest.mark.parametrize("revision", ["0011", "0006"])
async def test_a_schema_without_the_tables_reads_them_apart(
    settings: Settings, clock: FakeClock, revision: str, caplog: pytest.LogCaptureFixture
) -> None:
    """0011: no ``scheduler_heartbeats``, no ``job_state.paused_by``; 0006: no ``job_state``.
    The one statement is refused; health still answers from the ledger, as before it."""
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    run_id = await service.ledger.start_cron_run("collect-daily")
    await service.ledger.complete_cron_run(run_id, "success", 3)
    async with service.engine.begin() as conn:
        await conn.run_sync(_to(revision, down=True))  # type: ignore[arg-type]
    try:
        with pytest.raises(SchemaBehind):
            await service.ledger.health_read(ASKED)
        answer = await service.health_answer()
        latest, states, beats = answer.read
        found = latest["collect-daily"]
        assert found is not None and (found.id, found.status) == (run_id, "success")
        assert (states, beats) == ({}, None)
        assert answer.report.scheduler is None
        assert "health without scheduler presence" in caplog.text
    finally:
        await service.aclose()


async def test_an_outage_is_not_read_again_apart(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that does not answer fails the health read once: reading apart would
    only wait out the timeout again (three times at once)."""
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    apart = 0

    async def down(_names: list[str]) -> object:
        raise DatabaseUnreachable("database unavailable (no answer within 5 s)")

    async def counted(_names: list[str]) -> object:
        nonlocal apart
        apart += 1
        return {}

    monkeypatch.setattr(service.ledger, "health_read", down)
    monkeypatch.setattr(service.ledger, "latest_runs", counted)
    with pytest.raises(DatabaseUnreachable):
        await service.health()
    assert apart == 0
    assert service._latest_in_flight is None, "the next request reads again"
    await service.aclose()
