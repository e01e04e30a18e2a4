"""What the status page reads: only the newest runs of each job, never the whole history.

Every read is one ``WHERE cron_name = … ORDER BY started_at DESC LIMIT n`` arm per job, glued
with ``UNION ALL`` (the pattern of the health query): each arm is a short walk down
``idx_cron_runs_name_started``, on SQLite and PostgreSQL alike, so the page costs the same with
a thousand rows or ten million.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import StorageError
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.store import last_runs_statement, row_to_run

__all__ = ["FILTER_DEPTH", "last_runs_statement", "read_runs", "recent_runs_statement"]

FILTER_DEPTH = 1000
"""How far back a status filter looks, in runs per job."""


def recent_runs_statement(
    cron_names: Sequence[str], limit: int, *, status: str | None = None, depth: int = FILTER_DEPTH
) -> Select[Any]:
    """The newest ``limit`` runs across ``cron_names``, optionally of one ``status``.

    Not a plain ``ORDER BY started_at DESC LIMIT n`` over the table: no index leads with
    ``started_at``, so that would sort the whole history. The newest ``limit`` overall are
    among the newest ``limit`` of each job, and each of those is an index walk.

    A status filter looks among the newest ``depth`` runs of each job (about three years of
    a daily job): a rare status filtered over the whole history would make the database read
    every run of the job to find fifty, and the cost of the page would grow with the history.
    """
    per_job = limit if status is None else max(limit, depth)
    arms = last_runs_statement(cron_names, per_job).subquery("recent")
    statement = select(arms)
    if status is not None:
        statement = statement.where(arms.c.status == status)
    return statement.order_by(arms.c.started_at.desc()).limit(limit)


async def read_runs(
    engine: AsyncEngine, statements: Sequence[Any], *, seconds: float
) -> list[list[RunRow]]:
    """Run ``statements`` on one connection within ``seconds``; rows of each, in order.

    Raises :class:`StorageError` (with no driver text) when the database cannot answer.
    """

    async def query() -> list[list[RunRow]]:
        async with engine.connect() as conn:
            return [[row_to_run(r) for r in await conn.execute(s)] for s in statements]

    try:
        return await asyncio.wait_for(query(), seconds)
    except Exception as exc:
        raise StorageError(f"database unavailable ({type(exc).__name__})") from None
