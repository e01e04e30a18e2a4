"""When a change of state alerts, and who sends it: claim, then word, then deliver.

The watchdog (:mod:`cronkeeper.alerting.watchdog`) decides *when* to look and gathers what it
sees into an :class:`~cronkeeper.alerting.state.Observation`; :meth:`Dispatcher.settle` puts
it through the state machine and sends a message for each change it *claims* (one
conditional UPDATE in :mod:`cronkeeper.ledger.job_state`): however many replicas watch, one
message per change, and one reminder per ``CRONKEEPER_ALERT_REPEAT`` while a job stays down.
A ``partial`` run is no state, but sends a warning of its own when it ends
(:meth:`Dispatcher.run_warning`), unless the job is paused. Runs closed as ``abandoned`` (by
the lease holder, in the ledger) send one warning too (:meth:`Dispatcher.run_abandoned`),
queued under a key derived from the closed runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cronkeeper.alerting.channels import Channel
from cronkeeper.alerting.messages import (
    abandoned_text,
    change_text,
    finished_text,
    reminder_text,
    run_link,
    scheduler_back_text,
    scheduler_silent_text,
    title_text,
)
from cronkeeper.alerting.outbox import OutboxSender
from cronkeeper.alerting.state import (
    AlertKind,
    Observation,
    Thresholds,
    alert_kind,
    next_state,
    reminder_due,
)
from cronkeeper.config import JobSpec
from cronkeeper.errors import StorageError
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.job_state import JobState, JobStates
from cronkeeper.ledger.outbox import Outbox, OutboxMessage
from cronkeeper.ledger.presence import Presence
from cronkeeper.redact import Redactor
from cronkeeper.volume import Band

__all__ = ["SCHEDULER_ROW", "Change", "Dispatcher"]

log = logging.getLogger("cronkeeper.alerting")

SCHEDULER_ROW = "(scheduler)"
"""The ``job_state`` row that holds the schedulers' alert state (``ok`` or ``missing``): no
job can have this name (names are ``[a-z0-9-]``), and only :meth:`Dispatcher.settle_scheduler`
reads it."""


@dataclass(frozen=True)
class Change:
    """What one evaluation did for one job."""

    job: str
    before: str
    state: str
    since: datetime | None
    kind: AlertKind | None = None
    """The message this evaluation owed: ``down``, ``recovered`` (or a reminder of ``down``)."""
    sent: bool = False
    """This process claimed the change and sent (or logged) its message."""

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "previous": self.before,
            "since": self.since.isoformat() if self.since else None,
            "alerted": self.sent,
        }


class Dispatcher:
    """Settles observations into claimed state changes and sends their messages."""

    def __init__(
        self,
        states: JobStates,
        *,
        alerters: Sequence[Channel],
        thresholds: Thresholds,
        repeat: timedelta | None,
        redactor: Redactor,
        outbox: Outbox | None = None,
        on_failure: Callable[[str], None] | None = None,
        public_url: str = "",
    ) -> None:
        self.states = states
        self.alerters = alerters
        self.thresholds = thresholds
        self.repeat = repeat
        self.redactor = redactor
        self.public_url = public_url
        """``CRONKEEPER_PUBLIC_URL``: each message links its run's page on the status page."""
        self.sender = (
            OutboxSender(outbox, alerters, on_failure=on_failure)
            if outbox is not None and alerters
            else None
        )
        """With an outbox, messages are written with their change and delivered by
        :meth:`deliver` (at least once); without one, sent at once (at most once)."""

    async def settle(
        self,
        spec: JobSpec,
        row: JobState,
        seen: Observation,
        runs: Sequence[RunRow],
        band: Band | None,
        now: datetime,
    ) -> Change:
        """Move ``spec``'s job where ``seen`` puts it; alert if this process claimed a change
        that deserves it, or a reminder that is due. A pause that ends on a job still down
        is ``paused`` → a down state: a ``down`` change, alerted once like any other."""
        new = next_state(row.state, seen, self.thresholds)
        if new != row.state:
            kind = alert_kind(row.state, new)
            text = None
            if kind is not None:
                text = change_text(
                    spec, row.state, row.since, new, kind, runs, band, now, self.redactor
                ) + run_link(self.public_url, runs[0].id if runs else None)
            queued = self._queue(spec.name, kind, text, now)
            won = await self.states.claim(row, new, now, alerting=kind is not None, messages=queued)
            if not won:
                return Change(spec.name, row.state, new, now, kind)
            log.info("%s: %s → %s", spec.name, row.state, new)
            if text is not None:
                await self.send(text, spec.name, new, queued=bool(queued))
            return Change(spec.name, row.state, new, now, kind, sent=kind is not None)
        due = reminder_due(row.state, row.last_alerted_at, now, self.repeat)
        if due:
            text = change_text(
                spec, row.state, row.since, row.state, "down", runs, band, now, self.redactor
            )
            text = reminder_text(row.state, row.since, text)
            text += run_link(self.public_url, runs[0].id if runs else None)
            queued = self._queue(spec.name, "reminder", text, now)
            if await self.states.claim_reminder(row, now, messages=queued):
                await self.send(text, spec.name, row.state, queued=bool(queued))
                return Change(spec.name, row.state, row.state, row.since, "down", sent=True)
        return Change(spec.name, row.state, row.state, row.since)

    def _queue(
        self, job: str, kind: str | None, text: str | None, now: datetime
    ) -> list[OutboxMessage]:
        if self.sender is None or kind is None or text is None:
            return []
        return self.sender.messages(job, kind, text, now)

    async def settle_scheduler(self, seen: Presence, now: datetime) -> bool:
        """One alert when the schedulers fall silent (more than 3 watch intervals), one when
        one is back; claimed like a job's change (and queued in the outbox with it), so one
        message across replicas. Whether this process claimed one."""
        warning = seen.warning()
        new = "missing" if seen.silent else "ok"
        await self.states.ensure([SCHEDULER_ROW], now)
        row = (await self.states.read([SCHEDULER_ROW]))[SCHEDULER_ROW]
        if new == row.state or (new == "ok" and not seen.alive):
            return False
        if new == "missing" and warning is not None:
            kind, state, text = "down", "silent", scheduler_silent_text(warning)
        elif seen.last is not None:
            text = scheduler_back_text(seen.last.host, seen.last.pid, now)
            kind, state = "recovered", "alive"
        else:
            return False
        queued = self._queue("scheduler", kind, text, now)
        if not await self.states.claim(row, new, now, alerting=True, messages=queued):
            return False
        await self.send(text, "scheduler", state, queued=bool(queued))
        return True

    async def run_warning(self, run: RunRow, previous: RunRow | None, now: datetime) -> None:
        """A ``partial`` run's own warning (no state change), unless its job is paused."""
        if run.status != "partial":  # its own message: wording, not health
            return
        row = (await self.states.read([run.cron_name]))[run.cron_name]
        if row.is_paused(now):
            return
        text = finished_text(run, previous, self.redactor)
        if text is None:
            return
        text += run_link(self.public_url, run.id)
        if self.sender is not None:
            await self.sender.outbox.add(self.sender.messages(run.cron_name, "warning", text, now))
            return
        title = title_text(run.cron_name, "partial")
        for alerter in self.alerters:
            await alerter.send(text, about=run.cron_name, title=title)

    def abandoned_messages(
        self, cron_name: str, run_ids: Sequence[str], now: datetime
    ) -> list[OutboxMessage]:
        """The outbox rows that warn of ``run_ids`` closed as abandoned, one per webhook, each
        keyed by the job and the closed runs. The ledger writes them in the transaction that
        closes the runs (:meth:`~cronkeeper.ledger.Ledger.close_abandoned`), so a process that
        dies right after the close still leaves the warning to deliver."""
        if self.sender is None or not run_ids:
            return []
        text = abandoned_text(cron_name, list(run_ids), now)
        key = ",".join(sorted(run_ids))
        return self.sender.keyed_messages(cron_name, "abandoned", key, text, now)

    async def run_abandoned(self, cron_name: str, run_ids: Sequence[str], now: datetime) -> None:
        """Warn that ``run_ids`` (closed as ``abandoned`` by this process) died unfinished.

        The ledger closed them with one conditional UPDATE that returns only the rows it
        changed, so one replica gets here per run. The message goes through the outbox, at
        least once with back-off like a state change's, with an idempotency key derived from
        the job and the closed runs (:meth:`OutboxSender.keyed_messages`): queued twice, sent
        once. The ledger queues it in the close's own transaction when the watchdog is
        installed (:meth:`abandoned_messages`); here it is queued again (a no-op then) and
        delivered at once. When the outbox cannot be written the message is sent at once (at
        most once), the seed's behaviour. Never raises.
        """
        if not run_ids:
            return
        text = abandoned_text(cron_name, list(run_ids), now)
        log.warning("alert: %s", self.redactor(text))
        if self.sender is not None:
            messages = self.abandoned_messages(cron_name, run_ids, now)
            try:
                await self.sender.outbox.add_once(messages)  # queued with the close, usually
            except StorageError as exc:
                log.warning(
                    "%s: abandoned-run alert not queued (%s); sending it once now",
                    cron_name,
                    self.redactor(str(exc)),
                )
            else:
                await self.sender.deliver(messages, now)  # what fails waits in the outbox
                return
        title = title_text(cron_name, "abandoned")
        for alerter in self.alerters:
            await alerter.send(text, about=cron_name, title=title)

    async def send(self, text: str, job: str, state: str, *, queued: bool = False) -> None:
        """Log the alert; send it now unless it waits in the outbox (see :meth:`deliver`).
        Every message names the job, its state (the title, for channels that have one) and
        its latest run (linked on the status page when ``CRONKEEPER_PUBLIC_URL`` is set)."""
        log.warning("alert: %s", self.redactor(text.splitlines()[0]))
        if queued:
            return
        for alerter in self.alerters:
            await alerter.send(text, about=job, title=title_text(job, state))

    async def deliver(self, now: datetime) -> int:
        """Deliver the outbox's due messages (never raises for the database: next time)."""
        if self.sender is None:
            return 0
        try:
            return await self.sender.deliver_due(now)
        except StorageError as exc:
            log.warning("alert outbox not read: %s", self.redactor(str(exc)))
            return 0
