"""The ``job_state`` table: each job's alert state, its pause, and its latest volume verdict.

The only module that writes SQL for this table. A change of alert state is *claimed*: one
``UPDATE … WHERE cron_name = :job AND version = :seen`` whose row count says whether this
process won, so any number of replicas evaluating the same job send exactly one alert per
change (the ``version`` column makes A → B → A two claims, never a lost one). Rows are created
on first use with ``INSERT … ON CONFLICT DO NOTHING``.

Reads and writes raise :class:`~cronkeeper.errors.StorageError` (the callers decide: the
watchdog logs and tries again at its next tick, the API answers 500, the scheduler fires).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, Text, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cronkeeper.errors import StorageError
from cronkeeper.ledger.outbox import OutboxMessage, insert_messages
from cronkeeper.records import JobState
from cronkeeper.redact import Redactor
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import is_sqlite, run_read
from cronkeeper.storage.schema import job_state
from cronkeeper.storage.upsert import insert_missing

__all__ = ["STATE_COLUMNS", "JobState", "JobStates", "read_statement", "row_to_state"]

T = TypeVar("T")


STATE_COLUMNS = tuple(job_state.c[key] for key in JobState.__dataclass_fields__)
"""What a :class:`JobState` holds, in the order of its fields (``updated_at`` is not read)."""


def row_to_state(row: Sequence[Any]) -> JobState:
    """A job's state from the values of :data:`STATE_COLUMNS`, in their order: a row of
    :func:`read_statement`, or the states' share of a row of the health read
    (:mod:`.health_read`)."""
    return JobState(*row)


def read_statement(names: Sequence[str]) -> Select[Any]:
    """The rows of ``names`` (jobs without one have none)."""
    return _read_statement(tuple(names))


@functools.lru_cache(maxsize=64)
def _read_statement(names: tuple[str, ...]) -> Select[Any]:
    """Built once per tuple of names, like the ledger's health statement: a statement built
    per call costs SQLAlchemy its cache key again, ~0.1 ms of every health read (issue 16).
    One bound parameter per name, not an "expanding" one: that one SQLAlchemy renders into
    the SQL text again at every execution (~0.03 ms of every health read)."""
    wanted = [literal(name, Text) for name in names]
    return select(*STATE_COLUMNS).where(job_state.c.cron_name.in_(wanted))


class JobStates:
    """Reads and conditional writes of ``job_state``, each bounded by ``timeout``."""

    def __init__(
        self, engine: AsyncEngine, *, timeout: float = 5.0, breaker: Breaker | None = None
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.breaker = breaker or Breaker()
        self.call = BoundedCall(timeout, self.breaker, Redactor(), local=is_sqlite(engine))

    async def _bounded(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            # Not gated: a pause or a health read must always try.
            return await self.call(work)
        except StorageError as exc:
            raise type(exc)(f"database unavailable ({exc})") from None

    async def read(self, names: Sequence[str]) -> dict[str, JobState]:
        """The state of each of ``names`` (fresh ``ok`` rows for jobs without one)."""
        found = {name: JobState(name) for name in names}
        if not names:
            return found

        statement = read_statement(names)

        async def query(conn: AsyncConnection) -> None:
            for row in await conn.execute(statement):
                state = row_to_state(row)
                found[state.cron_name] = state

        # Autocommit on PostgreSQL: no BEGIN/ROLLBACK round trips around a health read, and
        # read again once on a dropped connection (storage.engine.run_read).
        await self._bounded(lambda: run_read(self.engine, query))
        return found

    async def ensure(self, names: Sequence[str], now: datetime) -> None:
        """Create the rows of ``names`` that do not exist yet (every replica may try)."""
        rows = [
            {"cron_name": n, "state": "ok", "since": now, "version": 0, "updated_at": now}
            for n in names
        ]

        async def insert() -> None:
            async with self.engine.begin() as conn:
                await insert_missing(conn, job_state, rows)

        await self._bounded(insert)

    async def _update(
        self,
        name: str,
        values: Mapping[str, Any],
        *where: Any,
        messages: Sequence[OutboxMessage] = (),
    ) -> bool:
        async def run() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(job_state).where(job_state.c.cron_name == name, *where).values(**values)
                )
                if result.rowcount == 1:  # the change and its messages: one transaction
                    await insert_messages(conn, messages)
                return int(result.rowcount)

        return await self._bounded(run) == 1

    async def claim(
        self,
        seen: JobState,
        new_state: str,
        now: datetime,
        *,
        alerting: bool,
        messages: Sequence[OutboxMessage] = (),
    ) -> bool:
        """Move ``seen.cron_name`` from ``seen`` to ``new_state``; whether this call won.

        Conditional on the version read: if another process moved the job since, nothing
        changes and the answer is ``False`` (that process sends the alert, not this one).
        ``messages`` go into ``alert_outbox`` in the same transaction, only if this call won.
        """
        values: dict[str, Any] = {
            "state": new_state,
            "since": now,
            "version": job_state.c.version + 1,
            "updated_at": now,
        }
        if alerting:
            values["last_alerted_at"] = now
        return await self._update(
            seen.cron_name, values, job_state.c.version == seen.version, messages=messages
        )

    async def claim_reminder(
        self, seen: JobState, now: datetime, *, messages: Sequence[OutboxMessage] = ()
    ) -> bool:
        """Take the right to send ``CRONKEEPER_ALERT_REPEAT``'s reminder; whether this call won.
        ``messages`` go into ``alert_outbox`` in the same transaction, only if this call won."""
        values = {"last_alerted_at": now, "version": job_state.c.version + 1, "updated_at": now}
        return await self._update(
            seen.cron_name,
            values,
            job_state.c.version == seen.version,
            job_state.c.state == seen.state,
            messages=messages,
        )

    async def record_volume(
        self,
        name: str,
        run_id: str,
        anomaly: str | None,
        band: tuple[float, float] | None,
        now: datetime,
    ) -> None:
        """Store the volume verdict on ``run_id`` (the same for every replica: no claim)."""
        low, high = band if band is not None else (None, None)
        await self._update(
            name,
            {
                "evaluated_run_id": run_id,
                "anomaly": anomaly,
                "expected_low": low,
                "expected_high": high,
                "updated_at": now,
            },
        )

    async def pause(
        self,
        name: str,
        now: datetime,
        *,
        until: datetime | None,
        reason: str | None,
        by: str | None = None,
    ) -> JobState:
        """Pause ``name`` (``until`` ``None``: until resumed) on behalf of ``by`` (``api``,
        ``cli``); the row as it is now."""
        await self.ensure([name], now)
        await self._update(
            name,
            {
                "paused": True,
                "paused_until": until,
                "pause_reason": reason,
                "paused_by": by,
                "updated_at": now,
            },
        )
        return (await self.read([name]))[name]

    async def resume(self, name: str, now: datetime, *, grace: bool = True) -> JobState:
        """End the pause of ``name`` (nothing happens if it was not paused); ``grace``: record
        ``resumed_at`` (not ``missing`` for one window), else clear it."""
        await self.ensure([name], now)
        await self._update(
            name,
            {
                "paused": False,
                "paused_until": None,
                "pause_reason": None,
                "paused_by": None,
                "resumed_at": now if grace else None,
                "updated_at": now,
            },
            job_state.c.paused.is_(True),
        )
        return (await self.read([name]))[name]
