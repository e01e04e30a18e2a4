"""Delete old ledger rows in small batches, never a job's latest run and never a live one.

Each batch is one ``DELETE`` of the oldest prunable rows in its own transaction (the
statements are the ledger's, :mod:`cronkeeper.ledger.retention`): row locks held for one batch
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

from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import StorageError, first_line
from cronkeeper.ledger.retention import count_prunable, delete_prunable, newest_started

__all__ = ["prune"]

log = logging.getLogger("cronkeeper.ledger.prune")

PruneProgress = Callable[[int], None]
"""Called after each batch with the number of rows deleted so far."""


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
        for cron_name, latest in await newest_started(engine):
            if dry_run:
                deleted += await count_prunable(engine, cron_name, cutoff, latest)
                continue
            while True:
                count = await delete_prunable(engine, cron_name, cutoff, latest, batch_size)
                deleted += count
                if count and progress is not None:
                    progress(deleted)
                if count < batch_size:
                    break
    except Exception as exc:
        done = (
            f"prune --dry-run stopped after counting {deleted} runs"
            if dry_run
            else f"prune stopped after deleting {deleted} runs"
        )
        again = "" if dry_run else "; run it again to continue"
        raise StorageError(
            f"{done}: {type(exc).__name__}: {first_line(exc)[:300]}{again}"
        ) from None
    log.info(
        "%s %d runs started before %s",
        "would delete" if dry_run else "deleted",
        deleted,
        cutoff.isoformat(),
    )
    return deleted
