"""Run ends the database could not take: spooled on disk, replayed once it answers
(issue 12, item 2)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger import Ledger
from cronkeeper.ledger.spool import Spool, SpooledEnd
from cronkeeper.redact import Redactor
from cronkeeper.runner import ABANDONED
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.url import database_identity, default_spool_dir
from tests.conftest import FakeClock, make_settings

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

SECRET_TOKEN = "SECRETTOKEN123"
END = SpooledEnd(
    run_id="6f1c2a52-5d0f-4a43-9d3c-2f5b3f1d9e01",
    cron_name="collect-daily",
    status="partial",
    records_count=7,
    error_message="skipped 1 of 8 accounts:\n- act_1: HTTP 500",
    finished_at=datetime(2026, 11, 20, 12, 5, tzinfo=UTC),
)


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def spool(tmp_path: Path, database_url: str) -> Spool:
    return Spool.for_database(database_url, tmp_path / "spool")


def test_a_spooled_end_is_one_private_json_file_that_reads_back_equal(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", "db1")
    path = spool.write(END)
    assert path.parent == tmp_path / "spool"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [path.name]  # no temp file
    assert spool.pending() == [END]
    assert Spool(tmp_path / "spool", "db2").pending() == []  # another database's spool
    spool.discard(END.run_id)
    spool.discard(END.run_id)  # twice is fine: another process replayed it
    assert spool.pending() == []


def test_an_unreadable_spool_file_is_kept_and_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "db1")
    (tmp_path / "db1.broken.json").write_text("{not json")
    spool.write(END)
    assert spool.pending() == [END]
    assert (tmp_path / "db1.broken.json").exists()


def test_the_default_spool_sits_beside_the_sqlite_file_and_in_the_working_directory(
    tmp_path: Path,
) -> None:
    assert default_spool_dir(f"sqlite:///{tmp_path}/data/ck.db") == tmp_path / "data/ck.db-spool"
    assert default_spool_dir("postgresql://u:pw@db:5432/ck") == tmp_path / "cronkeeper-spool"
    # The same database under another user or password is the same spool; another is not.
    same = database_identity("postgres://other:pw2@db:5432/ck")
    assert database_identity("postgresql://u:pw@db:5432/ck") == same
    assert database_identity("postgresql://u:pw@db:5432/other") != same


async def test_an_end_the_database_did_not_take_is_spooled_and_replayed_with_its_outcome(
    engine: AsyncEngine, database_url: str, spool: Spool, dead_port: int, clock: FakeClock
) -> None:
    redactor = Redactor((SECRET_TOKEN,))
    ledger = Ledger(engine, clock=clock, redactor=redactor, spool=spool)
    run_id = await ledger.start_cron_run("collect-daily")
    assert run_id is not None

    # The same run, finishing while its database is unreachable.
    down = create_engine(f"postgresql://u:pw@127.0.0.1:{dead_port}/db", timeout=0.5)
    cut_off = Ledger(down, timeout=0.5, clock=clock, redactor=redactor, spool=spool)
    clock.advance(minutes=3)
    try:
        assert not await cut_off.complete_cron_run(
            run_id, "partial", 5, f"- act_1: token {SECRET_TOKEN}", cron_name="collect-daily"
        )
    finally:
        await down.dispose()
    (path,) = spool.directory.iterdir()
    spooled = json.loads(path.read_text())
    assert (spooled["run_id"], spooled["status"], spooled["records_count"]) == (
        run_id,
        "partial",
        5,
    )
    assert SECRET_TOKEN not in path.read_text()  # redacted before it reached the disk
    assert (await ledger.get_run(run_id)).status == "running"  # type: ignore[union-attr]

    assert await ledger.replay_spool() == [run_id]
    row = await ledger.get_run(run_id)
    assert row is not None
    assert (row.status, row.records_count) == ("partial", 5)
    assert row.error_message == redactor.message(f"- act_1: token {SECRET_TOKEN}")
    assert SECRET_TOKEN not in row.error_message
    assert row.finished_at == clock.now
    assert spool.pending() == []
    assert await ledger.replay_spool() == []  # nothing left, nothing changed


async def test_replay_closes_only_a_row_still_running(
    engine: AsyncEngine, spool: Spool, clock: FakeClock
) -> None:
    ledger = Ledger(engine, clock=clock, spool=spool)
    run_id = await ledger.start_cron_run("collect-daily")
    assert run_id is not None
    assert await ledger.complete_cron_run(run_id, "success", 9)  # recorded after all
    spool.write(SpooledEnd(run_id, "collect-daily", "error", 0, "late", clock.now))
    assert await ledger.replay_spool() == []
    row = await ledger.get_run(run_id)
    assert row is not None
    assert (row.status, row.records_count, row.error_message) == ("success", 9, None)
    assert spool.pending() == []


async def test_a_run_whose_end_is_spooled_is_recorded_not_abandoned(
    engine: AsyncEngine, spool: Spool, clock: FakeClock
) -> None:
    ledger = Ledger(engine, clock=clock, spool=spool)
    finished = await ledger.start_cron_run("collect-daily")
    dead = await ledger.start_cron_run("collect-daily")
    assert finished is not None and dead is not None
    spool.write(SpooledEnd(finished, "collect-daily", "success", 12, None, clock.now))

    clock.advance(minutes=2)  # both started without a lease: abandoned once silent for its TTL
    assert await ledger.close_abandoned("collect-daily", reason=ABANDONED) == [dead]
    row = await ledger.get_run(finished)
    assert row is not None
    assert (row.status, row.records_count) == ("success", 12)


async def test_opening_the_service_records_what_was_spooled(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """Any command that opens the service (serve, scheduler, run, health …) replays."""
    settings = make_settings(database_url, spool_dir=tmp_path / "spool")
    first = Service.from_settings(settings, clock=clock)
    try:
        run_id = await first.ledger.start_cron_run("sync-notion")
        assert run_id is not None
        assert first.ledger.spool is not None
        first.ledger.spool.write(SpooledEnd(run_id, "sync-notion", "error", 0, "boom", clock.now))
    finally:
        await first.aclose()

    second = Service.from_settings(settings, clock=clock)
    try:
        assert await second.prepare()
        row = await second.ledger.get_run(run_id)
        assert row is not None
        assert (row.status, row.error_message) == ("error", "boom")
    finally:
        await second.aclose()
