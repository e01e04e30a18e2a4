"""Migration 0013 on both backends: the lease's epoch, each run's lease epoch and heartbeat
(issue 20.2). A lease row from before 0013 counts on from epoch 0."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.lease import LeaseManager
from cronkeeper.storage.dbclock import db_now_plus
from cronkeeper.storage.schema import cron_leases
from tests.migrations.test_0009_agency_scale import _to

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

NOW = datetime(2026, 11, 20, tzinfo=UTC)


async def _columns(engine: AsyncEngine) -> tuple[set[str], set[str]]:
    async with engine.connect() as conn:

        def read(sync: object) -> tuple[set[str], set[str]]:
            found = inspect(sync)
            leases = {c["name"] for c in found.get_columns("cron_leases")}
            runs = {c["name"] for c in found.get_columns("cron_runs")}
            return leases, runs

        return await conn.run_sync(read)  # type: ignore[arg-type]


async def test_columns_go_up_and_down_and_an_old_lease_counts_on(engine: AsyncEngine) -> None:
    leases, runs = await _columns(engine)
    assert "epoch" in leases and {"lease_epoch", "heartbeat_at"} <= runs
    async with engine.begin() as conn:
        await conn.run_sync(_to("0012", down=True))  # type: ignore[arg-type]
    leases, runs = await _columns(engine)
    assert "epoch" not in leases and not {"lease_epoch", "heartbeat_at"} & runs
    run = {"id": str(uuid.uuid4()), "cron_name": "collect-daily", "started_at": NOW}
    async with engine.begin() as conn:  # rows written by a version before 0013
        # Through the table's columns of that time (``epoch`` did not exist).
        await conn.execute(
            cron_leases.insert().values(
                job_name="collect-daily",
                holder="old-version",
                acquired_at=db_now_plus(-120),
                expires_at=db_now_plus(-60),
            ),
        )
        await conn.execute(
            text(
                "INSERT INTO cron_runs (id, cron_name, started_at, status)"
                " VALUES (:id, :cron_name, :started_at, 'running')"
            ),
            run,
        )
        await conn.run_sync(_to("head"))  # type: ignore[arg-type]
        kept = await conn.execute(text("SELECT epoch FROM cron_leases"))
        assert [tuple(r) for r in kept] == [(0,)]
        old = await conn.execute(text("SELECT lease_epoch, heartbeat_at FROM cron_runs"))
        assert [tuple(r) for r in old] == [(None, None)]
    lease = await LeaseManager(engine).try_acquire("collect-daily")
    assert (lease.acquired, lease.epoch) == (True, 1)
