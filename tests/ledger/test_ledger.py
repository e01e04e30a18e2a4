"""The ledger on SQLite and PostgreSQL: rows, statuses, redaction, and never failing a cron."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.lease import LeaseManager
from cronkeeper.ledger import Ledger
from cronkeeper.redact import Redactor
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_runs
from tests.conftest import FakeClock
from tests.support.blackhole import Blackhole

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer


@pytest.fixture
def ledger(engine: AsyncEngine, clock: FakeClock) -> Ledger:
    return Ledger(engine, timeout=5.0, clock=clock, redactor=Redactor(("SECRETTOKEN123",)))


async def test_start_inserts_a_running_row_and_complete_closes_it(
    ledger: Ledger, clock: FakeClock
) -> None:
    run_id = await ledger.start_cron_run("collect-daily")
    assert run_id is not None
    row = await ledger.get_run(run_id)
    assert row is not None
    assert (row.status, row.records_count, row.finished_at) == ("running", 0, None)
    assert row.started_at == clock.now

    clock.advance(seconds=42)
    assert await ledger.complete_cron_run(run_id, "success", 17) is True
    row = await ledger.get_run(run_id)
    assert row is not None
    assert (row.status, row.records_count, row.error_message) == ("success", 17, None)
    assert row.duration_seconds == 42


async def test_complete_with_none_does_nothing(ledger: Ledger) -> None:
    assert await ledger.complete_cron_run(None, "success", 1) is False
    assert await ledger.count_runs() == 0


async def test_complete_rejects_a_status_that_is_not_final(ledger: Ledger) -> None:
    run_id = await ledger.start_cron_run("collect-daily")
    with pytest.raises(ValueError, match="status must be one of"):
        await ledger.complete_cron_run(run_id, "running", 0)


async def test_error_message_is_redacted_and_truncated(ledger: Ledger) -> None:
    run_id = await ledger.start_cron_run("collect-daily")
    message = (
        "GET https://graph.facebook.com/v24.0/act_1/insights?access_token=SECRETTOKEN123 failed; "
        "Authorization: Bearer abcdefghijklmnop " + "x" * 5000
    )
    await ledger.complete_cron_run(run_id, "error", 0, message)
    row = await ledger.get_run(str(run_id))
    assert row is not None and row.error_message is not None
    assert "SECRETTOKEN123" not in row.error_message
    assert "abcdefghijklmnop" not in row.error_message
    assert len(row.error_message) <= 4000
    assert row.error_message.endswith("[truncated]")


async def test_database_check_constraints_reject_bad_rows(engine: AsyncEngine) -> None:
    with pytest.raises(Exception, match=r"(?i)check"):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO cron_runs (id, cron_name, started_at, status) "
                    "VALUES ('00000000000000000000000000000001', 'x', CURRENT_TIMESTAMP, 'weird')"
                    if engine.dialect.name == "sqlite"
                    else "INSERT INTO cron_runs (cron_name, status) VALUES ('x', 'weird')"
                )
            )
    with pytest.raises(Exception, match=r"(?i)check"):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO cron_runs (id, cron_name, started_at, records_count) VALUES "
                    "('00000000000000000000000000000002', 'x', CURRENT_TIMESTAMP, -1)"
                    if engine.dialect.name == "sqlite"
                    else "INSERT INTO cron_runs (cron_name, records_count) VALUES ('x', -1)"
                )
            )


async def test_track_marks_success_with_the_records_counted(ledger: Ledger) -> None:
    async with ledger.track("collect-mixpanel", unit_label="projects") as run:
        run.stored(3)
        run.stored(4)
    row = await ledger.get_run(str(run.run_id))
    assert row is not None
    assert (row.status, row.records_count, row.error_message) == ("success", 7, None)


async def test_track_marks_partial_naming_each_skipped_unit(ledger: Ledger) -> None:
    async with ledger.track("collect-daily", unit_label="accounts") as run:
        run.stored(1)
        run.skip("act_2", "HTTP 500 after 3 attempts")
        run.skip("act_3", "Meta code 190: token expired")
    row = await ledger.get_run(str(run.run_id))
    assert row is not None and row.error_message is not None
    assert row.status == "partial"
    assert "skipped 2 of 3 accounts" in row.error_message
    assert "act_2: HTTP 500" in row.error_message
    assert "act_3: Meta code 190" in row.error_message


async def test_track_marks_error_when_every_unit_was_skipped(ledger: Ledger) -> None:
    async with ledger.track("collect-daily", unit_label="accounts") as run:
        run.skip("act_2", "boom")
    row = await ledger.get_run(str(run.run_id))
    assert row is not None and row.status == "error"


async def test_track_records_the_exception_and_lets_it_propagate(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError, match="kaboom"):
        async with ledger.track("sync-notion") as run:
            run.stored(2)
            raise RuntimeError("kaboom access_token=SECRETTOKEN123")
    row = await ledger.get_run(str(run.run_id))
    assert row is not None
    assert row.status == "error"
    assert row.error_message is not None
    assert "RuntimeError: kaboom" in row.error_message
    assert "SECRETTOKEN123" not in row.error_message


async def test_latest_runs_returns_the_newest_run_per_job_and_none_for_jobs_never_run(
    ledger: Ledger, clock: FakeClock
) -> None:
    for _ in range(3):
        await ledger.start_cron_run("collect-daily")
        clock.advance(hours=1)
    newest = await ledger.start_cron_run("collect-daily")
    other = await ledger.start_cron_run("collect-mixpanel")
    latest = await ledger.latest_runs(["collect-daily", "collect-mixpanel", "collect-benchmarks"])
    assert list(latest) == ["collect-daily", "collect-mixpanel", "collect-benchmarks"]
    assert latest["collect-daily"] is not None and latest["collect-daily"].id == newest
    assert latest["collect-mixpanel"] is not None and latest["collect-mixpanel"].id == other
    assert latest["collect-benchmarks"] is None


async def test_recent_runs_filters_by_job_and_status(ledger: Ledger, clock: FakeClock) -> None:
    a = await ledger.start_cron_run("collect-daily")
    await ledger.complete_cron_run(a, "error", 0, "x")
    clock.advance(minutes=1)
    b = await ledger.start_cron_run("collect-daily")
    await ledger.complete_cron_run(b, "success", 3)
    clock.advance(minutes=1)
    await ledger.start_cron_run("sync-notion")
    assert [r.id for r in await ledger.recent_runs(cron_name="collect-daily")] == [b, a]
    assert [r.id for r in await ledger.recent_runs(status="error")] == [a]
    assert len(await ledger.recent_runs(limit=2)) == 2


# -- the database is down: the cron is delayed by at most the timeout, and nothing raises --


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def blackhole_port(blackhole: Blackhole) -> int:
    return blackhole.port


@pytest.mark.timeout(30)  # without the bound a silent database hangs the call: the test fails
@pytest.mark.parametrize("kind", ["refused", "silent"])
async def test_ledger_calls_with_the_database_down_return_within_the_timeout(
    kind: str, blackhole: Blackhole, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
    else:
        port = blackhole.port
    engine = create_engine(f"postgresql://u:pw@127.0.0.1:{port}/db", timeout=0.5)
    ledger = Ledger(engine, timeout=0.5)
    try:
        run_id = await ledger.start_cron_run("collect-daily")
        closed = await ledger.complete_cron_run(
            "8d7a3c1e-1111-4c1e-9a6e-000000000001", "success", 1
        )
        async with ledger.track("collect-daily") as run:
            run.stored(1)
    finally:
        await asyncio.wait_for(engine.dispose(), 5)
    assert run_id is None
    assert closed is False
    assert run.run_id is None
    if kind == "silent":
        # Two calls reached the silent server (closing a recorded run is never gated) and
        # each was ended by the ledger's own 0.5 s bound, the only thing that could end it;
        # the third was not attempted.
        assert blackhole.connections == 2
        assert caplog.text.count("no answer within 0.5 s") == 2
        assert "not attempted" in caplog.text


async def test_ledger_failure_is_logged_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = create_engine("postgresql://u:hunter2hunter2@127.0.0.1:1/db", timeout=0.5)
    ledger = Ledger(engine, timeout=0.5, redactor=Redactor(("hunter2hunter2",)))
    try:
        assert await ledger.start_cron_run("collect-daily") is None
    finally:
        await engine.dispose()
    assert "could not record the start of collect-daily" in caplog.text
    assert "hunter2hunter2" not in caplog.text


async def test_rows_are_stored_in_utc_and_read_back_aware(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    run_id = await ledger.start_cron_run("collect-daily")
    async with engine.connect() as conn:
        started = (await conn.execute(select(cron_runs.c.started_at))).scalar_one()
    assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0
    assert run_id is not None


@pytest.mark.timeout(30)
async def test_after_one_unanswered_call_the_runs_bookkeeping_fails_fast(
    blackhole: Blackhole, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreachable database costs a run one ledger timeout, not one per call: after the
    first call waited its bound out, the others do not even connect."""
    engine = create_engine(f"postgresql://u:pw@127.0.0.1:{blackhole.port}/db", timeout=0.5)
    breaker = Breaker(cooldown=60)
    ledger = Ledger(engine, timeout=0.5, breaker=breaker)
    leases = LeaseManager(engine, timeout=0.5, breaker=breaker)
    try:
        assert await ledger.start_cron_run("collect-daily") is None
        assert "no answer within 0.5 s" in caplog.text  # the one timeout paid
        assert not breaker.allow()
        reached = blackhole.connections
        assert reached == 1
        caplog.clear()
        assert await ledger.start_cron_run("collect-daily") is None
        assert await ledger.close_abandoned("collect-daily", reason="x") == []
        assert (await leases.try_acquire("collect-daily")).acquired is False
        assert blackhole.connections == reached  # everything after it: not attempted
        assert "no answer within" not in caplog.text
        assert "not attempted" in caplog.text
    finally:
        await asyncio.wait_for(engine.dispose(), 5)


def test_the_breaker_closes_on_success_and_ignores_refused_rows() -> None:
    now = [100.0]
    breaker = Breaker(cooldown=30, monotonic=lambda: now[0])
    breaker.record(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert breaker.allow()  # a refused row says nothing about reachability
    breaker.record(TimeoutError())
    assert not breaker.allow()
    now[0] += 31
    assert breaker.allow()
    breaker.record(OSError("connection refused"))
    assert not breaker.allow()
    breaker.record(None)
    assert breaker.allow()
