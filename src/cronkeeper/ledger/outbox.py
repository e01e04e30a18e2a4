"""The ``alert_outbox`` table: alert messages until the webhook took them (issue 20.3).

The only module that writes SQL for this table. A message is inserted in the transaction of
the ``job_state`` change that owes it (:meth:`~cronkeeper.ledger.job_state.JobStates.claim`
calls :func:`insert_messages` on its connection), so a change is never claimed without its
message, nor a message written for a change another replica claimed. A sender takes a due
message with one conditional UPDATE (``claimed_until`` past or unset, checked by its row
count: one replica wins), records the outcome, and on failure sets the next attempt.

Reads and writes raise :class:`~cronkeeper.errors.StorageError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cronkeeper.errors import StorageError
from cronkeeper.redact import Redactor
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.schema import alert_outbox

__all__ = ["Outbox", "OutboxMessage", "insert_messages"]

T = TypeVar("T")


@dataclass(frozen=True)
class OutboxMessage:
    """One alert message. ``id`` is also its idempotency key (in the webhook's payload)."""

    id: str
    cron_name: str
    channel: str
    """Which webhook it is for: a digest of its URL (``alerting.outbox.channel_of``)."""
    kind: str
    text: str
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None


def _message(row: Any) -> OutboxMessage:
    return OutboxMessage(**{key: getattr(row, key) for key in OutboxMessage.__dataclass_fields__})


async def insert_messages(conn: AsyncConnection, messages: Sequence[OutboxMessage]) -> None:
    """Insert ``messages`` on ``conn``, inside the caller's transaction; due at once."""
    if messages:
        await conn.execute(
            insert(alert_outbox),
            [
                {
                    "id": m.id,
                    "cron_name": m.cron_name,
                    "channel": m.channel,
                    "kind": m.kind,
                    "text": m.text,
                    "created_at": m.created_at,
                    "attempts": 0,
                    "next_attempt_at": m.next_attempt_at or m.created_at,
                }
                for m in messages
            ],
        )


class Outbox:
    """Reads and conditional writes of ``alert_outbox``, each bounded by ``timeout``."""

    def __init__(
        self, engine: AsyncEngine, *, timeout: float = 5.0, breaker: Breaker | None = None
    ) -> None:
        self.engine = engine
        self.call = BoundedCall(timeout, breaker or Breaker(), Redactor())

    async def _bounded(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self.call(work)
        except StorageError as exc:
            raise type(exc)(f"database unavailable ({exc})") from None

    async def add(self, messages: Sequence[OutboxMessage]) -> None:
        """Messages owed by no state change (a ``partial`` run's warning)."""

        async def run() -> None:
            async with self.engine.begin() as conn:
                await insert_messages(conn, messages)

        await self._bounded(run)

    async def add_once(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        """Insert the ``messages`` whose id (their idempotency key) is not stored yet; those
        inserted. A message owed by a change written elsewhere (runs closed as abandoned by
        the ledger) carries a key derived from that change: writing it twice writes it once."""

        async def run() -> list[OutboxMessage]:
            ids = [m.id for m in messages]
            try:
                async with self.engine.begin() as conn:
                    stored = await conn.execute(
                        select(alert_outbox.c.id).where(alert_outbox.c.id.in_(ids))
                    )
                    known = {str(row[0]) for row in stored}
                    fresh = [m for m in messages if m.id not in known]
                    await insert_messages(conn, fresh)
                    return fresh
            except IntegrityError:  # another writer inserted them between our read and write
                return []

        if not messages:
            return []
        return await self._bounded(run)

    async def due(
        self, now: datetime, channels: Sequence[str] | None, limit: int = 50
    ) -> list[OutboxMessage]:
        """Undelivered messages for ``channels`` (``None``: any) whose next attempt is due
        and that nobody holds, oldest first."""

        async def query() -> list[OutboxMessage]:
            async with self.engine.connect() as conn:
                where = [
                    alert_outbox.c.delivered_at.is_(None),
                    alert_outbox.c.next_attempt_at <= now,
                    _free(now),
                ]
                if channels is not None:
                    where.append(alert_outbox.c.channel.in_(list(channels)))
                result = await conn.execute(
                    select(alert_outbox)
                    .where(*where)
                    .order_by(alert_outbox.c.next_attempt_at, alert_outbox.c.created_at)
                    .limit(limit)
                )
                return [_message(row) for row in result]

        return await self._bounded(query)

    async def claim(self, message_id: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take ``message_id`` for one delivery until ``until``; whether this call won."""
        return await self._update(
            message_id,
            {"claimed_by": holder, "claimed_until": until},
            alert_outbox.c.delivered_at.is_(None),
            alert_outbox.c.next_attempt_at <= now,
            _free(now),
        )

    async def delivered(self, message_id: str, holder: str, now: datetime) -> bool:
        return await self._update(
            message_id,
            {
                "delivered_at": now,
                "attempts": alert_outbox.c.attempts + 1,
                "claimed_until": None,
                "last_error": None,
            },
            alert_outbox.c.claimed_by == holder,
        )

    async def failed(self, message_id: str, holder: str, retry_at: datetime, error: str) -> bool:
        return await self._update(
            message_id,
            {
                "attempts": alert_outbox.c.attempts + 1,
                "next_attempt_at": retry_at,
                "claimed_until": None,
                "last_error": error,
            },
            alert_outbox.c.claimed_by == holder,
            alert_outbox.c.delivered_at.is_(None),
        )

    async def forget_delivered(self, before: datetime) -> int:
        """Delete the messages delivered before ``before``; how many."""

        async def run() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    delete(alert_outbox).where(alert_outbox.c.delivered_at < before)
                )
                return int(result.rowcount)

        return await self._bounded(run)

    async def pending(self) -> int:
        """How many messages the webhook has not taken yet."""

        async def query() -> int:
            async with self.engine.connect() as conn:
                result = await conn.execute(
                    select(func.count())
                    .select_from(alert_outbox)
                    .where(alert_outbox.c.delivered_at.is_(None))
                )
                return int(result.scalar_one())

        return await self._bounded(query)

    async def all(self) -> list[OutboxMessage]:
        """Every message, oldest first (tests and ``cronkeeper`` diagnostics)."""

        async def query() -> list[OutboxMessage]:
            async with self.engine.connect() as conn:
                result = await conn.execute(
                    select(alert_outbox).order_by(alert_outbox.c.created_at, alert_outbox.c.id)
                )
                return [_message(row) for row in result]

        return await self._bounded(query)

    async def _update(self, message_id: str, values: dict[str, Any], *where: Any) -> bool:
        async def run() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(alert_outbox)
                    .where(alert_outbox.c.id == message_id, *where)
                    .values(**values)
                )
                return int(result.rowcount)

        return await self._bounded(run) == 1


def _free(now: datetime) -> Any:
    return or_(alert_outbox.c.claimed_until.is_(None), alert_outbox.c.claimed_until < now)
