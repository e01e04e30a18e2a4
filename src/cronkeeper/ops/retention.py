"""Delete old ledger rows in small batches, never a job's latest run and never a live one.

Each batch is ``DELETE … WHERE id IN (SELECT id … ORDER BY started_at LIMIT n)`` in its own
transaction: one statement for SQLite and PostgreSQL alike, row locks held for one batch
only (health reads and new runs never wait behind a ten-million-row delete), and an
interrupted prune has removed the oldest rows first and can simply be run again.

Kept whatever their age: the newest run of each job (health reads it, and "last ran 200 days
ago" is worth more than "never ran"), and every ``running`` row (the run may be alive, and
an abandoned one is closed by the job's next run, not by the janitor).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import StorageError
from cronkeeper.storage.schema import cron_runs

__all__ = ["prune"]

log = logging.getLogger("cronkeeper.ops.retention")

PruneProgress = Callable[[int], None]
"""Called after each batch with the number of rows deleted so far."""


def _prunable(cron_name: str, cutoff: datetime, latest: datetime) -> ColumnElement[bool]:
    return and_(
        cron_runs.c.cron_name == cron_name,
        cron_runs.c.started_at < cutoff,
        cron_runs.c.started_at < latest,  # rows tied with the newest are kept too
        cron_runs.c.status != "running",
    )


async def prune(
    engine: AsyncEngine,
    *,
    older_than: timedelta,
    now: datetime,
    batch_size: int = 1000,
    progress: PruneProgress | None = None,
    dry_run: bool = False,
) -> int:
    """Delete runs started before ``now - older_than``; the number deleted (or, with
    ``dry_run``, that would be).

    Works job by job along ``idx_cron_runs_name_started``, oldest first. Raises
    :class:`StorageError` (saying how many rows were already deleted) if the database fails.
    """
    if older_than <= timedelta(0):
        raise ValueError("older_than must be a positive duration")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cutoff = now - older_than
    deleted = 0
    try:
        async with engine.connect() as conn:
            newest = (
                await conn.execute(
                    select(cron_runs.c.cron_name, func.max(cron_runs.c.started_at)).group_by(
                        cron_runs.c.cron_name
                    )
                )
            ).all()
        for cron_name, latest in newest:
            condition = _prunable(cron_name, cutoff, latest)
            if dry_run:
                async with engine.connect() as conn:
                    count = select(func.count()).select_from(cron_runs).where(condition)
                    deleted += int((await conn.execute(count)).scalar_one())
                continue
            while True:
                batch = (
                    select(cron_runs.c.id)
                    .where(condition)
                    .order_by(cron_runs.c.started_at)
                    .limit(batch_size)
                    .scalar_subquery()
                )
                async with engine.begin() as conn:
                    result = await conn.execute(delete(cron_runs).where(cron_runs.c.id.in_(batch)))
                deleted += result.rowcount
                if result.rowcount and progress is not None:
                    progress(deleted)
                if result.rowcount < batch_size:
                    break
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StorageError(
            f"prune stopped after deleting {deleted} runs: {type(exc).__name__}: {first[:300]}; "
            "run it again to continue"
        ) from None
    log.info(
        "%s %d runs started before %s",
        "would delete" if dry_run else "deleted",
        deleted,
        cutoff.isoformat(),
    )
    return deleted
