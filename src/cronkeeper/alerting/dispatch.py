"""When a change of state alerts, and who sends it: claim, then word, then deliver.

The watchdog (:mod:`cronkeeper.ops.watchdog`) decides *when* to look and gathers what it
sees into an :class:`~cronkeeper.alerting.state.Observation`; :meth:`Dispatcher.settle` puts
it through the state machine and sends a message for each change it *claims* (one
conditional UPDATE in :mod:`cronkeeper.ledger.job_state`): however many replicas watch, one
message per change, and one reminder per ``CRONKEEPER_ALERT_REPEAT`` while a job stays down.
A ``partial`` run is no state, but sends a warning of its own when it ends
(:meth:`Dispatcher.run_warning`), unless the job is paused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cronkeeper.alerting.delivery import WebhookAlerter
from cronkeeper.alerting.messages import change_text, finished_text, reminder_text
from cronkeeper.alerting.state import (
    AlertKind,
    Observation,
    Thresholds,
    alert_kind,
    next_state,
    reminder_due,
)
from cronkeeper.config import JobSpec
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.job_state import JobState, JobStates
from cronkeeper.ops.volume import Band
from cronkeeper.redact import Redactor

__all__ = ["Change", "Dispatcher"]

log = logging.getLogger("cronkeeper.alerting")


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
        alerters: Sequence[WebhookAlerter],
        thresholds: Thresholds,
        repeat: timedelta | None,
        redactor: Redactor,
    ) -> None:
        self.states = states
        self.alerters = alerters
        self.thresholds = thresholds
        self.repeat = repeat
        self.redactor = redactor

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
            won = await self.states.claim(row, new, now, alerting=kind is not None)
            if not won:
                return Change(spec.name, row.state, new, now, kind)
            log.info("%s: %s → %s", spec.name, row.state, new)
            if kind is not None:
                text = change_text(
                    spec, row.state, row.since, new, kind, runs, band, now, self.redactor
                )
                await self.send(text, spec.name)
            return Change(spec.name, row.state, new, now, kind, sent=kind is not None)
        due = reminder_due(row.state, row.last_alerted_at, now, self.repeat)
        if due and await self.states.claim_reminder(row, now):
            text = change_text(
                spec, row.state, row.since, row.state, "down", runs, band, now, self.redactor
            )
            await self.send(reminder_text(row.state, row.since, text), spec.name)
            return Change(spec.name, row.state, row.state, row.since, "down", sent=True)
        return Change(spec.name, row.state, row.state, row.since)

    async def run_warning(self, run: RunRow, previous: RunRow | None, now: datetime) -> None:
        """A ``partial`` run's own warning (no state change), unless its job is paused."""
        if run.status != "partial":  # its own message: wording, not health
            return
        row = (await self.states.read([run.cron_name]))[run.cron_name]
        if row.is_paused(now):
            return
        text = finished_text(run, previous, self.redactor)
        if text is not None:
            for alerter in self.alerters:
                await alerter.send(text, about=run.cron_name)

    async def send(self, text: str, job: str) -> None:
        log.warning("alert: %s", self.redactor(text.splitlines()[0]))
        for alerter in self.alerters:
            await alerter.send(text, about=job)
