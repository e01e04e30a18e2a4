"""Migration 0012 on both backends: scheduler heartbeats, who paused, each run's retries, and
the partial index of ok runs that ``cronkeeper_last_ok_timestamp_seconds`` reads (issue 22)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger import Ledger
from cronkeeper.storage.schema import cron_runs
from tests.migrations.test_0009_agency_scale import _to

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

NOW = datetime(2026, 11, 20, tzinfo=UTC)


async def _shape(engine: AsyncEngine) -> tuple[set[str], set[str], set[str]]:
    async with engine.connect() as conn:

        def read(sync: object) -> tuple[set[str], set[str], set[str]]:
            found = inspect(sync)
            tables = set(found.get_table_names())
            runs = {c["name"] for c in found.get_columns("cron_runs")}
            indexes = {i["name"] for i in found.get_indexes("cron_runs") if i["name"]}
            return tables, runs, indexes

        return await conn.run_sync(read)  # type: ignore[arg-type]


async def test_tables_columns_and_index_go_up_and_down(engine: AsyncEngine) -> None:
    tables, runs, indexes = await _shape(engine)
    assert "scheduler_heartbeats" in tables and "retry_counts" in runs
    assert "idx_cron_runs_ok" in indexes
    row = {"id": str(uuid.uuid4()), "cron_name": "collect-daily", "started_at": NOW}
    async with engine.begin() as conn:
        await conn.execute(cron_runs.insert(), [{**row, "status": "partial"}])
        await conn.run_sync(_to("0011", down=True))  # type: ignore[arg-type]
    tables, runs, indexes = await _shape(engine)
    assert "scheduler_heartbeats" not in tables and "retry_counts" not in runs
    assert "idx_cron_runs_ok" not in indexes
    async with engine.begin() as conn:
        await conn.run_sync(_to("0012"))  # type: ignore[arg-type]
        kept = await conn.execute(text("SELECT status, retry_counts FROM cron_runs"))
        assert [tuple(r) for r in kept] == [("partial", None)]


async def test_the_last_ok_run_reads_the_partial_index(engine: AsyncEngine) -> None:
    explain = (
        "EXPLAIN SELECT started_at FROM cron_runs WHERE cron_name = 'collect-daily'"
        " AND status IN ('success', 'partial') ORDER BY started_at DESC LIMIT 1"
    )
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
        else:
            explain = explain.replace("EXPLAIN", "EXPLAIN QUERY PLAN")
        plan = " ".join(str(r) for r in await conn.execute(text(explain)))
    assert "idx_cron_runs_ok" in plan, plan
    # And the ledger's own statement finds the partial run, not the later error.
    ledger = Ledger(engine, clock=lambda: NOW)
    rows = [
        {"id": str(uuid.uuid4()), "cron_name": "collect-daily", "started_at": at, "status": s}
        for at, s in [
            (datetime(2026, 11, 18, tzinfo=UTC), "partial"),
            (datetime(2026, 11, 19, tzinfo=UTC), "error"),
        ]
    ]
    async with engine.begin() as conn:
        await conn.execute(cron_runs.insert(), rows)
    oks = await ledger.last_oks(["collect-daily", "collect-mixpanel"])
    assert [r.started_at for r in oks["collect-daily"]] == [datetime(2026, 11, 18, tzinfo=UTC)]
    assert oks["collect-mixpanel"] == []
