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

from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import StorageError
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.store import (
    FILTER_DEPTH,
    last_runs_statement,
    recent_runs_statement,
    row_to_run,
)

__all__ = ["FILTER_DEPTH", "last_runs_statement", "read_runs", "recent_runs_statement"]


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
