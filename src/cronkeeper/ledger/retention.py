"""The statements that prune ``cron_runs``; :mod:`cronkeeper.ledger.prune` drives them.

A run is prunable when it started before the cutoff, is not its job's newest (nor tied with
it) and is not ``running``. Each batch is ``DELETE … WHERE id IN (SELECT id … ORDER BY
started_at LIMIT n)`` in its own transaction: one statement for SQLite and PostgreSQL alike,
row locks held for one batch only, oldest rows first.

Not bounded by the ledger timeout, unlike :class:`~cronkeeper.ledger.Ledger`'s reads: a
dry-run count or the newest-per-job scan over ten million rows may rightly take longer, and
nothing waits on a prune but the operator who started it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.storage.schema import cron_runs

__all__ = ["count_prunable", "delete_prunable", "newest_started"]


def _prunable(cron_name: str, cutoff: datetime, latest: datetime) -> ColumnElement[bool]:
    return and_(
        cron_runs.c.cron_name == cron_name,
        cron_runs.c.started_at < cutoff,
        cron_runs.c.started_at < latest,  # rows tied with the newest are kept too
        cron_runs.c.status != "running",
    )


async def newest_started(engine: AsyncEngine) -> list[tuple[str, datetime]]:
    """Each job that has runs, with the start of its newest one."""
    statement = select(cron_runs.c.cron_name, func.max(cron_runs.c.started_at)).group_by(
        cron_runs.c.cron_name
    )
    async with engine.connect() as conn:
        return [(name, latest) for name, latest in await conn.execute(statement)]


async def count_prunable(
    engine: AsyncEngine, cron_name: str, cutoff: datetime, latest: datetime
) -> int:
    """How many runs of ``cron_name`` a prune would delete (``latest``: its newest start)."""
    count = select(func.count()).select_from(cron_runs).where(_prunable(cron_name, cutoff, latest))
    async with engine.connect() as conn:
        return int((await conn.execute(count)).scalar_one())


async def delete_prunable(
    engine: AsyncEngine, cron_name: str, cutoff: datetime, latest: datetime, limit: int
) -> int:
    """Delete the oldest ``limit`` prunable runs of ``cron_name`` in one transaction; how many."""
    batch = (
        select(cron_runs.c.id)
        .where(_prunable(cron_name, cutoff, latest))
        .order_by(cron_runs.c.started_at)
        .limit(limit)
        .scalar_subquery()
    )
    async with engine.begin() as conn:
        result = await conn.execute(delete(cron_runs).where(cron_runs.c.id.in_(batch)))
    return result.rowcount
