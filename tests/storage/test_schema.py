"""The schema as the design asks for it: DDL, RLS, and a health query that rides the index."""

from __future__ import annotations

import re

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger import Ledger
from cronkeeper.ledger.reads import latest_runs_statement
from cronkeeper.storage.engine import current_revision, head_revision, upgrade
from cronkeeper.storage.schema import metadata
from tests.support.pg import PgCluster
from tests.support.plans import fill_history, query_plan

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer


async def test_upgrade_is_idempotent_and_reaches_head(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head_revision()
    assert await upgrade(engine) == head_revision()


async def test_the_migrated_schema_is_the_declared_one(engine: AsyncEngine) -> None:
    """What the migrations create and what ``storage/schema.py`` declares (the tables every
    query is built from) must not drift apart: same tables, columns, types, indexes —
    ``idx_cron_runs_name_started`` with ``started_at DESC`` in both — and constraints."""
    async with engine.connect() as conn:
        drift = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )
    assert drift == []


async def test_health_query_uses_the_name_started_index(engine: AsyncEngine) -> None:
    await fill_history(engine)
    names = ["collect-daily", "collect-mixpanel", "collect-benchmarks"]
    await Ledger(engine).latest_runs(names)  # it runs
    plan = await query_plan(engine, latest_runs_statement(names))
    assert "idx_cron_runs_name_started" in plan
    if engine.dialect.name == "postgresql":
        assert "Seq Scan" not in plan
        assert "Sort" not in plan
    else:
        assert "TEMP B-TREE" not in plan


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_postgres_ddl_matches_the_design(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        columns = {
            r.column_name: (r.data_type, r.column_default, r.is_nullable)
            for r in await conn.execute(
                text(
                    "SELECT column_name, data_type, column_default, is_nullable "
                    "FROM information_schema.columns WHERE table_name = 'cron_runs'"
                )
            )
        }
        index = (
            await conn.execute(
                text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_cron_runs_name_started'"
                )
            )
        ).scalar_one()
        rls = (
            await conn.execute(
                text("SELECT relrowsecurity FROM pg_class WHERE relname = 'cron_runs'")
            )
        ).scalar_one()
    assert columns["id"][:2] == ("uuid", "gen_random_uuid()")
    assert columns["started_at"] == ("timestamp with time zone", "now()", "NO")
    assert columns["status"][1] == "'running'::text"
    assert columns["records_count"][:2] == ("integer", "0")
    assert columns["created_at"][:2] == ("timestamp with time zone", "now()")
    assert "(cron_name, started_at DESC)" in index
    assert rls is True


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_rls_keeps_a_role_without_bypassrls_from_reading_cron_runs(
    database_url: str, pg_cluster: PgCluster
) -> None:
    db = database_url.rsplit("/", 1)[1]
    pg_cluster.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ck_anon') THEN "
        "CREATE ROLE ck_anon LOGIN NOBYPASSRLS; END IF; END $$;",
        db=db,
    )
    pg_cluster.psql(
        "INSERT INTO cron_runs (cron_name, status) VALUES ('collect-daily', 'success');"
        "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO ck_anon;",
        db=db,
    )
    owner_url = pg_cluster.url(db)
    anon_url = owner_url.replace("postgres@", "ck_anon@", 1)
    with psycopg.connect(owner_url) as owner:
        assert owner.execute("SELECT count(*) FROM cron_runs").fetchone() == (1,)
    with psycopg.connect(anon_url) as anon:
        assert anon.execute("SELECT count(*) FROM cron_runs").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            anon.execute("INSERT INTO cron_runs (cron_name) VALUES ('forged')")


async def test_successes_have_a_partial_index_on_both_backends(engine: AsyncEngine) -> None:
    """Migration 0008: what ``cronkeeper_last_success_timestamp_seconds`` reads."""
    if engine.dialect.name == "postgresql":
        sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_cron_runs_success'"
    else:
        sql = "SELECT sql FROM sqlite_master WHERE name = 'idx_cron_runs_success'"
    async with engine.connect() as conn:
        definition = str((await conn.execute(text(sql))).scalar_one())
    assert "(cron_name, started_at DESC)" in definition
    assert re.search(r"WHERE \(?status = 'success'", definition), definition
