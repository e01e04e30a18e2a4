"""Migration 0009 on both backends: ``meta_account_details.account_status`` and the partial
index of running runs that closing abandoned runs reads (issue 17)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger import Ledger
from cronkeeper.ledger.reads import abandoned_statement
from cronkeeper.storage.engine import _alembic_config
from cronkeeper.storage.schema import cron_runs

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def _to(revision: str, *, down: bool = False) -> object:
    def go(connection: Connection) -> None:
        step = command.downgrade if down else command.upgrade
        step(_alembic_config(connection), revision)

    return go


async def _index_sql(engine: AsyncEngine) -> str | None:
    if engine.dialect.name == "postgresql":
        sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_cron_runs_running'"
    else:
        sql = "SELECT sql FROM sqlite_master WHERE name = 'idx_cron_runs_running'"
    async with engine.connect() as conn:
        found = (await conn.execute(text(sql))).scalar_one_or_none()
    return None if found is None else str(found)


async def test_status_column_and_running_index_go_up_and_down(engine: AsyncEngine) -> None:
    definition = await _index_sql(engine)
    assert definition is not None
    assert re.search(r"WHERE \(?status = 'running'", definition), definition
    insert = text(
        "INSERT INTO meta_account_details (ad_account_id, timezone_name, fetched_at,"
        " account_status) VALUES ('1', 'UTC', :at, 101)"
    )
    async with engine.begin() as conn:
        await conn.execute(insert, {"at": NOW})
        await conn.run_sync(_to("0008", down=True))  # type: ignore[arg-type]
    assert await _index_sql(engine) is None
    async with engine.begin() as conn:
        await conn.run_sync(_to("0009"))  # type: ignore[arg-type]
        rows = await conn.execute(
            text("SELECT ad_account_id, account_status FROM meta_account_details")
        )
        assert [tuple(r) for r in rows] == [("1", None)]  # read again at the next run
    assert await _index_sql(engine) is not None


async def test_closing_abandoned_runs_reads_the_partial_index(engine: AsyncEngine) -> None:
    statement = abandoned_statement("collect-daily", finished_at=NOW, reason="gone")
    compiled = str(statement.compile(dialect=engine.dialect))
    assert "status = 'running'" in compiled  # a literal: the planner sees the index applies
    explain = (
        "EXPLAIN UPDATE cron_runs SET status = 'error'"
        " WHERE cron_name = 'collect-daily' AND status = 'running'"
    )
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
        else:
            explain = explain.replace("EXPLAIN", "EXPLAIN QUERY PLAN")
        plan = " ".join(str(r) for r in await conn.execute(text(explain)))
    assert "idx_cron_runs_running" in plan, plan


async def test_close_abandoned_closes_only_the_jobs_running_rows(engine: AsyncEngine) -> None:
    rows = [
        {"id": str(uuid.uuid4()), "cron_name": name, "started_at": NOW, "status": status}
        for name, status in [
            ("collect-daily", "running"),
            ("collect-daily", "success"),
            ("sync-notion", "running"),
        ]
    ]
    async with engine.begin() as conn:
        await conn.execute(cron_runs.insert(), rows)
    later = NOW + timedelta(minutes=5)  # rows without a lease: abandoned once silent for a TTL
    closed = await Ledger(engine, clock=lambda: later).close_abandoned("collect-daily", reason="x")
    assert closed == [rows[0]["id"]]
    async with engine.connect() as conn:
        left = await conn.execute(text("SELECT count(*) FROM cron_runs WHERE status = 'running'"))
        assert left.scalar_one() == 1
