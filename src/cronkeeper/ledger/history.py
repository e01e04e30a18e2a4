"""Reads of ``cron_runs`` that the watchdog needs: recent runs per job, and the successes a
volume baseline is learned from. Index walks on ``idx_cron_runs_name_started``, bounded by a
``LIMIT``, so their cost does not grow with the history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from cronkeeper.ledger.models import RunRow
from cronkeeper.ledger.store import RUN_COLUMNS, Ledger, last_runs_statement
from cronkeeper.storage.schema import cron_runs

__all__ = ["BASELINE_LIMIT", "last_runs", "successes_since"]

BASELINE_LIMIT = 400
"""Successes read for one baseline: 17 weeks of a daily job with re-runs to spare."""


async def last_runs(ledger: Ledger, names: Sequence[str], per_job: int) -> dict[str, list[RunRow]]:
    """The newest ``per_job`` runs of each job, newest first, in one statement."""
    found: dict[str, list[RunRow]] = {name: [] for name in names}
    if not names:
        return found
    rows = await ledger._read(last_runs_statement(names, per_job))  # the ledger's own bounded read
    for row in sorted(rows, key=lambda r: r.started_at, reverse=True):
        found[row.cron_name].append(row)
    return found


async def successes_since(
    ledger: Ledger, name: str, since: datetime | None, *, limit: int = BASELINE_LIMIT
) -> list[RunRow]:
    """The newest ``success`` runs of ``name`` started at or after ``since``, newest first."""
    statement = select(*RUN_COLUMNS).where(
        cron_runs.c.cron_name == name, cron_runs.c.status == "success"
    )
    if since is not None:
        statement = statement.where(cron_runs.c.started_at >= since)
    statement = statement.order_by(cron_runs.c.started_at.desc()).limit(limit)
    return await ledger._read(statement)  # the ledger's own bounded read
