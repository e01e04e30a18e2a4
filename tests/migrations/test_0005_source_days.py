"""Migration 0005 on both backends: leads, account details, benchmarks keyed by currency."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.storage.engine import _alembic_config

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def _to(revision: str, *, down: bool = False) -> object:
    def go(connection: Connection) -> None:
        step = command.downgrade if down else command.upgrade
        step(_alembic_config(connection), revision)

    return go


async def test_old_benchmarks_are_kept_as_mixed_and_the_key_takes_the_currency(
    engine: AsyncEngine,
) -> None:
    old = {
        "w": date(2026, 11, 9),
        "i": "Retail",
        "m": "cpc",
        "p": 1.0,
        "n": 3,
        "c": NOW,
    }
    insert_old = text(
        "INSERT INTO weekly_benchmarks (week_start, industry, metric, p25, p50, p75,"
        " sample_size, computed_at) VALUES (:w, :i, :m, :p, :p, :p, :n, :c)"
    )
    async with engine.begin() as conn:
        await conn.run_sync(_to("0004", down=True))  # type: ignore[arg-type]
        await conn.execute(insert_old, old)
        await conn.run_sync(_to("0005"))  # type: ignore[arg-type]
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT industry, currency FROM weekly_benchmarks"))).all()
        assert [tuple(r) for r in rows] == [("Retail", "mixed")]
        leads = await conn.execute(text("SELECT count(*) FROM meta_account_details"))
        assert leads.scalar() == 0
    insert_new = text(
        "INSERT INTO weekly_benchmarks (week_start, industry, currency, metric, p25, p50, p75,"
        " sample_size, computed_at) VALUES (:w, :i, :cur, :m, :p, :p, :p, :n, :c)"
    )
    async with engine.begin() as conn:  # another currency, same week/industry/metric: allowed
        await conn.execute(insert_new, old | {"cur": "KRW"})
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:  # the same four-part key twice: refused
            await conn.execute(insert_new, old | {"cur": "KRW"})
    async with engine.begin() as conn:  # and back down, then up again, keeps working
        await conn.run_sync(_to("0004", down=True))  # type: ignore[arg-type]
        await conn.run_sync(_to("0005"))  # type: ignore[arg-type]
    async with engine.connect() as conn:
        count = await conn.execute(text("SELECT count(*) FROM weekly_benchmarks"))
        assert count.scalar() == 1
