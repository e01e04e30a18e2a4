"""Scheduler presence: which schedulers are alive, from their heartbeats in the database.

"Next run in 4 h" is a promise only a live scheduler keeps (issue 22): ``serve`` without
``--scheduler``, or a replica whose scheduler died, would otherwise show a next run that
never comes — the silent-cron trap cronkeeper exists to close. Every scheduler writes one row
of ``scheduler_heartbeats`` (its host, pid, start) and moves ``last_beat_at`` each watch
interval; health, the status page and ``/metrics`` read the newest beat.

The rule itself (pure) is :func:`cronkeeper.presence.presence`: a scheduler is *alive* while
its newest beat is at most ``SILENT_INTERVALS`` watch intervals old and it did not stop. The
only module that writes SQL for this table is this one.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cronkeeper.presence import SILENT_INTERVALS, Heartbeat, Presence, presence
from cronkeeper.redact import Redactor
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import run_read
from cronkeeper.storage.schema import scheduler_heartbeats
from cronkeeper.storage.upsert import upsert

__all__ = [
    "HEARTBEAT_COLUMNS",
    "NEWEST",
    "SILENT_INTERVALS",
    "Heartbeat",
    "Heartbeats",
    "Presence",
    "newest_statement",
    "presence",
    "row_to_heartbeat",
    "scheduler_id",
]

NEWEST = 16
"""Beats read per look: more replicas than this beating at once is not a deployment."""
FORGET_AFTER = timedelta(days=7)
"""Rows of schedulers gone this long are deleted (by the next beat of any scheduler)."""


def scheduler_id() -> tuple[str, str, int]:
    """This process's scheduler id (host, pid and a random suffix: a reused pid is another
    scheduler), its host and its pid."""
    host, pid = socket.gethostname(), os.getpid()
    return f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid


HEARTBEAT_COLUMNS = tuple(scheduler_heartbeats.c[key] for key in Heartbeat.__dataclass_fields__)
"""What a :class:`Heartbeat` holds, in the order of its fields."""


def row_to_heartbeat(row: Sequence[Any]) -> Heartbeat:
    """A beat from the values of :data:`HEARTBEAT_COLUMNS`, in their order: a row of
    :func:`newest_statement`, or the beats' share of a row of the health read
    (:mod:`.health_read`)."""
    return Heartbeat(*row)


@functools.lru_cache(maxsize=8)
def newest_statement(limit: int = NEWEST) -> Select[Any]:
    """The newest ``limit`` beats, newest first (one index read).

    Built once: a statement built per call costs SQLAlchemy its cache key again, ~0.1 ms
    of every health read (issue 16)."""
    return (
        select(*HEARTBEAT_COLUMNS).order_by(scheduler_heartbeats.c.last_beat_at.desc()).limit(limit)
    )


class Heartbeats:
    """Reads and writes of ``scheduler_heartbeats``, each bounded by ``timeout``."""

    def __init__(
        self, engine: AsyncEngine, *, timeout: float = 5.0, breaker: Breaker | None = None
    ) -> None:
        self.engine = engine
        self.call = BoundedCall(timeout, breaker or Breaker(), Redactor())

    async def beat(self, beat: Heartbeat) -> None:
        """Record ``beat`` (insert or move ``last_beat_at``); forget long-gone schedulers."""
        row = {
            "id": beat.id,
            "host": beat.host,
            "pid": beat.pid,
            "started_at": beat.started_at,
            "last_beat_at": beat.last_beat_at,
            "stopped_at": None,
        }

        async def write() -> None:
            async with self.engine.begin() as conn:
                await upsert(conn, scheduler_heartbeats, [row])
                await conn.execute(
                    delete(scheduler_heartbeats).where(
                        scheduler_heartbeats.c.last_beat_at < beat.last_beat_at - FORGET_AFTER
                    )
                )

        await self.call(write)

    async def stop(self, beat_id: str, now: datetime) -> None:
        """A clean stop: the page says "stopped", not "silent"."""

        async def write() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(scheduler_heartbeats)
                    .where(scheduler_heartbeats.c.id == beat_id)
                    .values(stopped_at=now)
                )

        await self.call(write)

    async def newest(self, limit: int = NEWEST) -> list[Heartbeat]:
        """The newest beats, newest first (one index read)."""

        statement = newest_statement(limit)

        async def read(conn: AsyncConnection) -> list[Heartbeat]:
            return [row_to_heartbeat(row) for row in await conn.execute(statement)]

        # Part of every health read: no ping, no BEGIN/ROLLBACK (storage.engine.run_read).
        return await self.call(lambda: run_read(self.engine, read))

    async def read(self, now: datetime, interval: timedelta) -> Presence:
        """:func:`presence` at ``now``; raises :class:`~cronkeeper.errors.StorageError` when
        the database fails."""
        return presence(await self.newest(), now, interval)
