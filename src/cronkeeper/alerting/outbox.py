"""The alert outbox's sender: every message delivered at least once, by one replica.

The state change and its message are written in one transaction
(:meth:`~cronkeeper.ledger.job_state.JobStates.claim` with ``messages``); nothing is sent
there. :meth:`OutboxSender.deliver_due` then takes each due message with a conditional
UPDATE (:meth:`~cronkeeper.ledger.outbox.Outbox.claim`: one replica wins it, for
:attr:`OutboxSender.hold` seconds, longer than one delivery may take), posts it with its id
as ``idempotency_key``, and records the outcome: delivered, or tried again after
:func:`backoff` (30 s, 1 min, 2 min … at most 5 min) for as long as the webhook refuses —
a 10-minute outage or a restart loses nothing, since the message waits in the database.
The watchdog calls it at once after each evaluation and at every tick.

Each failed attempt counts in ``cronkeeper_alert_delivery_failures_total`` (the
``on_failure`` hook) and logs one WARNING; the status page shows how many wait.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from cronkeeper.alerting.channels import Channel
from cronkeeper.alerting.messages import title_text
from cronkeeper.errors import StorageError
from cronkeeper.ledger.outbox import Outbox, OutboxMessage

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "KEEP_DELIVERED",
    "KEY_NAMESPACE",
    "OutboxSender",
    "backoff",
    "channel_of",
]

log = logging.getLogger("cronkeeper.alerting")

BACKOFF_BASE = 30.0
BACKOFF_CAP = 300.0
KEEP_DELIVERED = timedelta(days=30)
KEY_NAMESPACE = uuid.UUID("5b0c7f5e-3f1e-4c55-9a55-6f0e0c2a8d20")
"""The namespace of :meth:`OutboxSender.keyed_messages`' ids (uuid5): fixed, so every replica
derives the same id for the same change."""
"""Delivered messages are deleted after this long (at most once an hour per process)."""


def backoff(attempts: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds before the next try of a message that failed ``attempts`` times (≥ 1)."""
    return float(min(cap, base * 2.0 ** max(0, attempts - 1)))


def channel_of(alerter: Channel) -> str:
    """Which webhook a message is for, as stored: a digest of its URL (the URL is a secret)."""
    return hashlib.sha256(alerter.url.encode()).hexdigest()[:16]


class OutboxSender:
    """Delivers due outbox messages to every alerter; one instance per process."""

    def __init__(
        self,
        outbox: Outbox,
        alerters: Sequence[Channel],
        *,
        holder: str | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.alerters = {channel_of(a): a for a in alerters}
        self.holder = holder or f"sender-{uuid.uuid4()}"
        self.on_failure = on_failure
        budget = max((a.budget for a in self.alerters.values()), default=0.0)
        self._forgot_at: datetime | None = None
        self.hold = max(60.0, 2 * budget)
        """Seconds a claim keeps other replicas off a message: past it, a sender that died
        mid-delivery leaves the message to the next one."""

    def messages(self, cron_name: str, kind: str, text: str, now: datetime) -> list[OutboxMessage]:
        """``text`` for every webhook: one row each, each with a random id (its idempotency
        key), so a webhook that is down never makes another hear the message twice."""
        return [
            OutboxMessage(str(uuid.uuid4()), cron_name, channel, kind, text, now)
            for channel in self.alerters
        ]

    def keyed_messages(
        self, cron_name: str, kind: str, key: str, text: str, now: datetime
    ) -> list[OutboxMessage]:
        """Like :meth:`messages`, for a change claimed outside ``job_state`` (runs closed as
        abandoned): each id derives from ``key`` (what the change is) and the webhook, so the
        same change queued twice is one message
        (:meth:`~cronkeeper.ledger.outbox.Outbox.add_once`)."""
        return [
            OutboxMessage(
                str(uuid.uuid5(KEY_NAMESPACE, f"{kind}\n{cron_name}\n{channel}\n{key}")),
                cron_name,
                channel,
                kind,
                text,
                now,
            )
            for channel in self.alerters
        ]

    async def deliver_due(self, now: datetime) -> int:
        """Deliver every due message this process wins; how many the webhook took.

        Raises :class:`~cronkeeper.errors.StorageError` only when the due messages cannot be
        read; a failure after that is logged and the message tried again later.
        """
        if not self.alerters:
            return 0
        await self._forget(now)
        # With one webhook, it also takes the messages of a webhook no longer configured (a
        # revoked Slack URL replaced by a new one); with several, each takes its own.
        only = len(self.alerters) == 1
        delivered = 0
        for message in await self.outbox.due(now, None if only else list(self.alerters)):
            delivered += await self._deliver(message, now)
        return delivered

    async def deliver(self, messages: Sequence[OutboxMessage], now: datetime) -> int:
        """Deliver ``messages`` (just queued) now, those this process wins; how many the webhook
        took. What fails waits in the outbox for :meth:`deliver_due`, as any message."""
        delivered = 0
        for message in messages:
            delivered += await self._deliver(message, now)
        return delivered

    async def _deliver(self, message: OutboxMessage, now: datetime) -> int:
        """Claim, send and record one message; 1 if the webhook took it. Never raises for the
        database (the message is tried again later)."""
        try:
            if not await self.outbox.claim(
                message.id, self.holder, now, now + timedelta(seconds=self.hold)
            ):
                return 0  # another replica has it
            if await self._send(message):
                await self.outbox.delivered(message.id, self.holder, now)
                return 1
            wait = backoff(message.attempts + 1)
            retry_at = now + timedelta(seconds=wait)
            await self.outbox.failed(
                message.id, self.holder, retry_at, "the webhook did not take it"
            )
            log.warning(
                "alert %s about %s not delivered (attempt %d); next try after %s",
                message.id,
                message.cron_name,
                message.attempts + 1,
                retry_at.isoformat(timespec="seconds"),
            )
        except StorageError as exc:
            log.warning("alert %s: outbox not updated: %s", message.id, exc)
        return 0

    async def _forget(self, now: datetime) -> None:
        if self._forgot_at is not None and now - self._forgot_at < timedelta(hours=1):
            return
        self._forgot_at = now
        try:
            await self.outbox.forget_delivered(now - KEEP_DELIVERED)
        except StorageError as exc:
            log.warning("alert outbox: delivered messages not deleted: %s", exc)

    async def _send(self, message: OutboxMessage) -> bool:
        alerter = self.alerters.get(message.channel) or next(iter(self.alerters.values()))
        title = title_text(message.cron_name, message.kind)  # e-mail subject, card title
        if await alerter.send(message.text, about=message.cron_name, key=message.id, title=title):
            return True
        if self.on_failure is not None:
            self.on_failure(message.cron_name)
        return False
