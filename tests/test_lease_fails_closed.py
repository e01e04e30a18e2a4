"""The lease fails closed except when the database cannot be asked (issue 20, item 1).

Before: ``LeaseManager.try_acquire`` caught every exception and let the job run unguarded, so
a schema one migration behind (a rolling deploy), a role without rights on ``cron_leases``
or a bug let every replica run every job. Now only "cannot be asked" (unreachable, no
answer, SQLite locked) runs unguarded; everything else refuses the run in one line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from cronkeeper.cli import app
from cronkeeper.errors import PermissionDenied, SchemaBehind
from cronkeeper.lease import LeaseManager
from cronkeeper.runner import run_job
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine, head_revision, upgrade
from cronkeeper.storage.schema import cron_runs
from tests.conftest import SECRET, make_settings
from tests.support.pg import PgCluster

pytestmark = pytest.mark.sql

JOB = "collect-daily"
POSTGRES = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def _downgrade_one(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", "cronkeeper:migrations")
    config.attributes["connection"] = connection
    command.downgrade(config, "-1")


async def downgrade_one_step(database_url: str) -> None:
    """The copy this test was given, one migration behind head (a rolling deploy's state)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade_one)
    finally:
        await engine.dispose()


async def count_runs(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(cron_runs))).scalar_one())


async def test_a_schema_one_migration_behind_refuses_the_claim_until_upgraded(
    database_url: str,
) -> None:
    await downgrade_one_step(database_url)
    engine = create_engine(database_url)
    leases = LeaseManager(engine, ttl=60)
    try:
        with pytest.raises(SchemaBehind) as refused:
            await leases.try_acquire(JOB)
        message = str(refused.value)
        assert message.startswith(f"refusing to run {JOB}: could not claim its lease: ")
        assert f"this version needs {head_revision()}" in message
        assert "run `cronkeeper db upgrade`" in message
        assert "\n" not in message
        assert leases.breaker.allow()  # a refusal is no outage
        await upgrade(engine)
        assert (await leases.try_acquire(JOB)).acquired  # no restart needed
    finally:
        await engine.dispose()


async def test_run_job_on_a_schema_behind_records_nothing_and_runs_nothing(
    database_url: str,
) -> None:
    await downgrade_one_step(database_url)
    service = Service.from_settings(make_settings(database_url))
    try:
        with pytest.raises(SchemaBehind, match="cronkeeper db upgrade"):
            await run_job(service, JOB)
        assert await count_runs(service.engine) == 0
    finally:
        await service.aclose()


async def test_a_scheduler_on_a_schema_behind_says_so_once_and_fires_nothing(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await downgrade_one_step(database_url)
    service = Service.from_settings(make_settings(database_url))
    caplog.set_level(logging.INFO, logger="cronkeeper")
    try:
        scheduler = CronScheduler(service)
        assert await scheduler.fire(JOB) is None
        assert await scheduler.fire("sync-notion") is None
        assert await scheduler.fire(JOB) is None
        said = [r.getMessage() for r in caplog.records if "not scheduling" in r.getMessage()]
        assert len(said) == 1 and "cronkeeper db upgrade" in said[0]
        assert not any(r.exc_info for r in caplog.records)
        assert await count_runs(service.engine) == 0
    finally:
        await service.aclose()


@POSTGRES
def test_cronkeeper_run_exits_2_for_a_schema_behind_naming_db_upgrade(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the schema is the operator's to migrate (SQLite's first use upgrades
    its own)."""
    import asyncio

    asyncio.run(downgrade_one_step(database_url))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CRON_SECRET", SECRET)
    result = CliRunner().invoke(app, ["run", JOB])
    assert result.exit_code == 2, result.output
    assert "refusing to run collect-daily" in result.stderr
    assert "cronkeeper db upgrade" in result.stderr
    assert "Traceback" not in result.output


@POSTGRES
async def test_a_role_without_rights_on_cron_leases_is_refused_not_run_unguarded(
    database_url: str, pg_cluster: PgCluster
) -> None:
    db = database_url.rsplit("/", 1)[1]
    pg_cluster.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ck_nolease') THEN "
        "CREATE ROLE ck_nolease LOGIN BYPASSRLS; END IF; END $$;"
        "GRANT SELECT ON alembic_version, cron_runs TO ck_nolease;"
        "REVOKE ALL ON cron_leases FROM ck_nolease;",
        db=db,
    )
    engine = create_engine(database_url.replace("postgres@", "ck_nolease@", 1))
    leases = LeaseManager(engine, ttl=60)
    try:
        with pytest.raises(PermissionDenied, match=r"^refusing to run collect-daily: .*privilege"):
            await leases.try_acquire(JOB)
        assert leases.breaker.allow()
    finally:
        await engine.dispose()


async def test_a_database_that_cannot_be_reached_still_runs_the_job_unguarded(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The seed's promise stays: recording must never stop the cron."""
    if backend == "sqlite":
        (tmp_path / "a-directory.db").mkdir()  # SQLite cannot open it: SQLITE_CANTOPEN
        url = f"sqlite:///{tmp_path}/a-directory.db"
    else:
        url = "postgresql://nobody@127.0.0.1:9/nothing"  # nothing listens on port 9
    engine = create_engine(url, timeout=1.0)
    leases = LeaseManager(engine, ttl=60, timeout=1.0)
    caplog.set_level(logging.ERROR, logger="cronkeeper.lease")
    try:
        lease = await leases.try_acquire(JOB)
        assert not lease.acquired
        assert lease.unguarded
        assert any("without the one-at-a-time guard" in m for m in caplog.messages)
    finally:
        await engine.dispose()


@POSTGRES
async def test_a_trigger_refused_for_a_schema_behind_answers_500_with_the_reason(
    database_url: str,
) -> None:
    import httpx

    from cronkeeper.api.app import create_app

    await downgrade_one_step(database_url)
    service = Service.from_settings(make_settings(database_url))
    transport = httpx.ASGITransport(app=create_app(service, own_service=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ck") as http:
            response = await http.post(
                f"/api/cron/{JOB}", headers={"Authorization": f"Bearer {SECRET}"}
            )
        assert response.status_code == 500
        body = response.json()
        assert body["cronName"] == JOB
        assert body["error"].startswith(f"refusing to run {JOB}")
        assert "cronkeeper db upgrade" in body["error"]
        assert await count_runs(service.engine) == 0
    finally:
        await service.aclose()
