"""Scheduler presence: which schedulers are alive, from their heartbeats in the database.

"Next run in 4 h" is a promise only a live scheduler keeps (issue 22): ``serve`` without
``--scheduler``, or a replica whose scheduler died, would otherwise show a next run that
never comes — the silent-cron trap cronkeeper exists to close. Every scheduler writes one row
of ``scheduler_heartbeats`` (its host, pid, start) and moves ``last_beat_at`` each watch
interval; health, the status page and ``/metrics`` read the newest beat.

:func:`presence` is the one rule (pure): a scheduler is *alive* while its newest beat is at
most ``SILENT_INTERVALS`` watch intervals old and it did not stop. The only module that
writes SQL for this table is this one.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.redact import Redactor
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.schema import scheduler_heartbeats
from cronkeeper.storage.upsert import upsert

__all__ = [
    "SILENT_INTERVALS",
    "Heartbeat",
    "Heartbeats",
    "Presence",
    "presence",
    "scheduler_id",
]

SILENT_INTERVALS = 3
"""A scheduler silent for more than this many watch intervals is not alive."""
NEWEST = 16
"""Beats read per look: more replicas than this beating at once is not a deployment."""
FORGET_AFTER = timedelta(days=7)
"""Rows of schedulers gone this long are deleted (by the next beat of any scheduler)."""


def scheduler_id() -> tuple[str, str, int]:
    """This process's scheduler id (host, pid and a random suffix: a reused pid is another
    scheduler), its host and its pid."""
    host, pid = socket.gethostname(), os.getpid()
    return f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid


@dataclass(frozen=True)
class Heartbeat:
    """One scheduler's row."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None = None


@dataclass(frozen=True)
class Presence:
    """What health, the page and ``/metrics`` say about the schedulers."""

    alive: bool
    last: Heartbeat | None
    age_seconds: float | None
    """Seconds since the newest beat (``None``: no scheduler ever beat)."""
    limit_seconds: float

    @property
    def ever(self) -> bool:
        return self.last is not None

    @property
    def changes_at(self) -> datetime | None:
        """When this verdict stops being true without a new beat: a live scheduler turns
        not alive, a stopped or silent-to-be one turns silent (``None``: never, by itself)."""
        if self.last is None or self.silent:
            return None
        return self.last.last_beat_at + timedelta(seconds=self.limit_seconds)

    @property
    def silent(self) -> bool:
        """A scheduler was here and none has beaten for more than ``SILENT_INTERVALS`` watch
        intervals (a clean stop counts too once that long has passed: a restart beats at
        once, so only a stop that nobody replaced gets here)."""
        return (
            not self.alive
            and self.age_seconds is not None
            and self.age_seconds > self.limit_seconds
        )

    def as_json(self) -> dict[str, Any]:
        last = self.last
        return {
            "alive": self.alive,
            "host": last.host if last else None,
            "pid": last.pid if last else None,
            "startedAt": last.started_at.isoformat() if last else None,
            "lastBeatAt": last.last_beat_at.isoformat() if last else None,
            "stoppedAt": last.stopped_at.isoformat() if last and last.stopped_at else None,
            "ageSeconds": round(self.age_seconds, 1) if self.age_seconds is not None else None,
        }

    def warning(self) -> str | None:
        """Health's ``warnings`` entry for a scheduler that was there and fell silent."""
        last = self.last
        if not self.silent or last is None:
            return None
        if last.stopped_at is not None:
            return (
                f"scheduler {last.host} (pid {last.pid}) stopped at"
                f" {last.stopped_at.isoformat(timespec='seconds')}: no job runs on its"
                " schedule unless another scheduler or system cron starts it"
            )
        return (
            f"scheduler {last.host} (pid {last.pid}) silent since"
            f" {last.last_beat_at.isoformat(timespec='seconds')} (more than"
            f" {SILENT_INTERVALS} watch intervals): no job runs on its schedule"
        )


def presence(beats: Sequence[Heartbeat], now: datetime, interval: timedelta) -> Presence:
    """Whether a scheduler is alive at ``now``, from the newest heartbeats (any order): the
    newest live one if there is one (a replica that stopped a moment ago does not hide one
    that goes on), else the newest of all (to say since when it is silent or stopped)."""
    limit = (interval * SILENT_INTERVALS).total_seconds()

    def age(beat: Heartbeat) -> float:
        return max((now - beat.last_beat_at).total_seconds(), 0.0)

    newest = sorted(beats, key=lambda b: b.last_beat_at, reverse=True)
    live = [b for b in newest if b.stopped_at is None and age(b) <= limit]
    if live:
        return Presence(True, live[0], age(live[0]), limit)
    if not newest:
        return Presence(False, None, None, limit)
    return Presence(False, newest[0], age(newest[0]), limit)


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

        async def read() -> list[Heartbeat]:
            async with self.engine.connect() as conn:
                result = await conn.execute(
                    select(scheduler_heartbeats)
                    .order_by(scheduler_heartbeats.c.last_beat_at.desc())
                    .limit(limit)
                )
                return [
                    Heartbeat(r.id, r.host, r.pid, r.started_at, r.last_beat_at, r.stopped_at)
                    for r in result
                ]

        return await self.call(read)

    async def read(self, now: datetime, interval: timedelta) -> Presence:
        """:func:`presence` at ``now``; raises :class:`~cronkeeper.errors.StorageError` when
        the database fails."""
        return presence(await self.newest(), now, interval)
