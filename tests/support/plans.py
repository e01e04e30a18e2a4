"""Query plans for the "it rides the index" tests, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["fill_history", "query_plan"]


async def fill_history(engine: AsyncEngine, rows: int = 20_000) -> None:
    """On PostgreSQL, a history large enough that a sequential scan would be the planner's
    choice if the index did not serve (23 job names, every third run an error), analysed.
    SQLite's planner picks indexes by shape, not statistics: nothing to fill there."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO cron_runs (cron_name, started_at, status) "
                "SELECT 'job-' || (g % 23), now() - g * interval '1 minute',"
                " CASE WHEN g % 3 = 0 THEN 'error' ELSE 'success' END "
                "FROM generate_series(1, :rows) AS g"
            ),
            {"rows": rows},
        )
        await conn.execute(text("ANALYZE cron_runs"))


async def query_plan(engine: AsyncEngine, statement: Any) -> str:
    """``EXPLAIN`` (PostgreSQL) or ``EXPLAIN QUERY PLAN`` (SQLite) of ``statement``, as text."""
    sql = str(statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return "\n".join(r[0] for r in await conn.execute(text("EXPLAIN " + sql)))
        return "\n".join(str(r[-1]) for r in await conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
