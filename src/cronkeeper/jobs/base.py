"""What every job is given, and what it must do.

A job is ``async def run(ctx: JobContext, day: date, run: RunTracker) -> None``. It collects
the data of ``day`` (always explicit: re-runs and backfills pass their own), writes it with
idempotent upserts in one transaction per unit, and reports each unit to ``run``:
``run.stored(records)`` after a unit was committed, ``run.skip(unit, reason)`` when a unit
failed after its retries. The ledger turns that into ``success``/``partial``/``error``. A job
raises only when it cannot work at all (missing configuration, database down); the run is
then ``error`` with that message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cronkeeper.clock import Clock
from cronkeeper.config import Settings
from cronkeeper.http import HttpContext
from cronkeeper.lease import Fence
from cronkeeper.ledger import RunTracker
from cronkeeper.reportday import lookback, source_day  # the jobs' day rule lives there

__all__ = ["Job", "JobContext", "JobFunc", "lookback", "source_day"]


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    engine: AsyncEngine
    http: HttpContext
    clock: Clock
    explicit_day: bool = True
    """``False`` when the caller gave no date: each source then collects up to *its own*
    yesterday (its own time zone), not the configured zone's."""
    deadline: datetime | None = None
    """The run's start + ``CRONKEEPER_RUN_BUDGET``: until then, units may be set aside."""
    fence: Fence | None = None
    """The run's lease (``None``: it runs without one): every data write checks it."""

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """One transaction of the job's data writes, fenced (issue 20.2).

        After the block's writes and before the commit, the lease must still be this run's:
        if another run took it over (this one was paused, or cut off past the lease's TTL),
        the writes roll back and :class:`~cronkeeper.errors.LeaseLost` ends the run — a
        holder that lost its lease never overwrites the new holder's rows.
        """
        async with self.engine.begin() as conn:
            yield conn
            if self.fence is not None:
                await self.fence.check(conn)


JobFunc = Callable[[JobContext, date, RunTracker], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    name: str
    unit_label: str
    """What one unit is, for messages: ``accounts``, ``projects``, ``pages``, ``industries``."""
    run: JobFunc
    description: str
