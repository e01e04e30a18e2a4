"""The watchdog: every job's alert state, evaluated on a timer and whenever a run ends.

Alerts used to go out only when a run ended, so a job that never started (scheduler down,
host gone, cron line deleted) said nothing. The watchdog reads the ledger and the
``job_state`` table every ``CRONKEEPER_WATCH_INTERVAL`` (``serve --scheduler`` and
``scheduler`` run it; ``cronkeeper check`` runs it once, for system cron), puts each job
through the state machine of :mod:`cronkeeper.ops.alert_state`, and sends a message for each
change it *claims* (one conditional UPDATE in :mod:`cronkeeper.ledger.job_state`): however
many replicas watch, one message per change.

It is also a :class:`~cronkeeper.service.RunObserver`: a run that ends (``cronkeeper run``, a
trigger, the scheduler) is evaluated at once, through the same claim, so a failure alerts
without waiting for the next tick, and never twice. A ``partial`` run still sends its warning
when it ends (it is not a state). Volume verdicts (:mod:`cronkeeper.ops.volume`) are computed
once per finished run and stored with the job's state, where health reads them.

Every job is evaluated; ``missing`` applies to monitored jobs only (the others have no
window). A job resumed from a pause is not ``missing`` until one window after the resume: it
was not supposed to run while paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cronkeeper.config import JobSpec, Settings
from cronkeeper.durations import format_duration, parse_duration
from cronkeeper.errors import StorageError
from cronkeeper.health import evaluate_health
from cronkeeper.jobs import get_job
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.job_state import JobState
from cronkeeper.ops.alert_state import (
    AlertKind,
    Observation,
    Thresholds,
    alert_kind,
    leading,
    next_state,
    reminder_due,
)
from cronkeeper.ops.alerts import WebhookAlerter, alerter_from_settings, finished_text
from cronkeeper.ops.volume import Anomaly, Band, VolumeVerdict, classify_history, is_daily
from cronkeeper.redact import truncate
from cronkeeper.service import RunObserver, Service

__all__ = [
    "EXIT_CHECK_DOWN",
    "EXIT_CHECK_OK",
    "Change",
    "Watchdog",
    "install_watchdog",
    "pause_job",
    "pause_json",
    "resume_job",
    "thresholds_from_settings",
]

log = logging.getLogger("cronkeeper.ops.watchdog")

EXIT_CHECK_OK = 0
EXIT_CHECK_DOWN = 1
"""``cronkeeper check``: 0 every job ``ok`` or ``paused``, 1 a job is down, 2 database error."""

BASELINE_LIMIT = 400
"""Successes read for a daily job's baseline: 17 weeks with re-runs to spare."""
TRAILING_LIMIT = 60
"""Successes read for a non-daily job's baseline: 14 runs, and 14 before each of those."""
BASELINE_WEEKS = 17
"""A daily job's history read: 8 weeks of baseline, and 8 more to judge those runs, + 1."""


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


def thresholds_from_settings(settings: Settings) -> Thresholds:
    failure, by_job = settings.failure_thresholds
    return Thresholds(failure=failure, recovery=settings.recovery_threshold, failure_by_job=by_job)


# -- messages (pure) ----------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def missing_text(spec: JobSpec, last: RunRow | None, now: datetime) -> str:
    window = format_duration(spec.window)
    when = f"its last run started {_iso(last.started_at)}" if last else "it never ran"
    return (
        f":red_circle: {spec.name} is missing: no run started in its {window} window"
        f" ({when}; checked {_iso(now)})"
    )


def stuck_text(spec: JobSpec, run: RunRow | None, now: datetime) -> str:
    started = _iso(run.started_at) if run else "?"
    run_id = run.id if run else "?"
    return (
        f":red_circle: {spec.name} is stuck: run {run_id} has been running since {started},"
        f" longer than its max runtime of {format_duration(spec.max_runtime)}"
        f" (checked {_iso(now)})"
    )


def low_volume_text(run: RunRow, expected: tuple[float, float] | None) -> str:
    at = _iso(run.finished_at or run.started_at)
    if expected is None:
        usual = "after runs that wrote some"
    else:
        usual = f"expected {expected[0]:g}–{expected[1]:g}"
    return (
        f":large_orange_circle: {run.cron_name} wrote unusually few records: run {run.id}"
        f" wrote {run.records_count} ({usual}) at {at}"
    )


def recovered_text(job: str, before: str, since: datetime | None, run: RunRow | None) -> str:
    was = f"{before} since {_iso(since)}" if since else before
    if run is None:
        return f":large_green_circle: {job} recovered (it was {was})"
    at = _iso(run.finished_at or run.started_at)
    return (
        f":large_green_circle: {job} recovered at {at}: run {run.id} ended {run.status} with"
        f" {run.records_count} record{'s' if run.records_count != 1 else ''} (it was {was})"
    )


def _stored_verdict(row: JobState) -> VolumeVerdict:
    band = None
    if row.expected_low is not None and row.expected_high is not None:
        band = Band(row.expected_low, row.expected_high, (row.expected_low + row.expected_high) / 2)
    anomaly: Anomaly | None = None
    if row.anomaly == "low-volume":
        anomaly = "low-volume"
    elif row.anomaly == "high-volume":
        anomaly = "high-volume"
    return VolumeVerdict(anomaly, band)


# -- the watchdog -------------------------------------------------------------------------


class Watchdog(RunObserver):
    """Evaluates every job's alert state; sends each change it claims to ``alerters``."""

    def __init__(
        self,
        service: Service,
        *,
        alerters: Sequence[WebhookAlerter] = (),
        thresholds: Thresholds | None = None,
        repeat: timedelta | None = None,
        interval: timedelta | None = None,
    ) -> None:
        settings = service.settings
        self.service = service
        self.alerters = list(alerters)
        self.thresholds = thresholds or thresholds_from_settings(settings)
        self.repeat = repeat if repeat is not None else settings.alert_repeat_every
        self.interval = interval or settings.watch_every
        self.redactor = settings.redactor
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- evaluation

    async def check(self, names: Sequence[str] | None = None) -> list[Change]:
        """Evaluate ``names`` (default: every job) now; one :class:`Change` per job.

        Raises :class:`~cronkeeper.errors.StorageError` when the database cannot answer.
        """
        service = self.service
        specs = [s for s in service.settings.jobs if names is None or s.name in names]
        wanted = [s.name for s in specs]
        now = service.clock()
        states = service.job_states
        await states.ensure(wanted, now)
        rows = await states.read(wanted)
        depth = max(self.thresholds.depth(n) for n in wanted) if wanted else 1
        recent: dict[str, list[RunRow]] = {name: [] for name in wanted}
        if wanted:
            for run in sorted(
                await service.ledger.last_runs(wanted, depth),
                key=lambda r: r.started_at,
                reverse=True,
            ):
                recent[run.cron_name].append(run)
        changes = []
        for spec in specs:
            changes.append(await self._evaluate(spec, rows[spec.name], recent[spec.name], now))
        return changes

    async def _evaluate(
        self, spec: JobSpec, row: JobState, runs: list[RunRow], now: datetime
    ) -> Change:
        latest = runs[0] if runs else None
        finished = next((r for r in runs if r.status != "running"), None)
        verdict = VolumeVerdict(None, None)
        if finished is not None and finished.status == "success":
            verdict = await self._volume(spec, row, finished, now)
        [check] = evaluate_health([spec], {spec.name: latest}, now).checks
        missing = spec.monitored and not check.in_window
        if missing and row.resumed_at is not None and now - row.resumed_at <= spec.window:
            missing = False
        seen = Observation(
            job=spec.name,
            recent=runs,
            missing=missing,
            stuck=check.stuck,
            paused=row.is_paused(now),
            anomaly=verdict.anomaly,
        )
        new = next_state(row.state, seen, self.thresholds)
        if new != row.state:
            kind = alert_kind(row.state, new)
            won = await self.service.job_states.claim(row, new, now, alerting=kind is not None)
            if not won:
                return Change(spec.name, row.state, new, now, kind)
            log.info("%s: %s → %s", spec.name, row.state, new)
            if kind is not None:
                text = self._text(spec, row, new, kind, runs, verdict, now)
                await self._send(text, spec.name)
            return Change(spec.name, row.state, new, now, kind, sent=kind is not None)
        due = reminder_due(row.state, row.last_alerted_at, now, self.repeat)
        if due and await self.service.job_states.claim_reminder(row, now):
            text = self._text(spec, row, row.state, "down", runs, verdict, now)
            since = f" since {_iso(row.since)}" if row.since else ""
            await self._send(f":repeat: still {row.state}{since}: {text}", spec.name)
            return Change(spec.name, row.state, row.state, row.since, "down", sent=True)
        return Change(spec.name, row.state, row.state, row.since)

    async def _volume(
        self, spec: JobSpec, row: JobState, run: RunRow, now: datetime
    ) -> VolumeVerdict:
        """The verdict on ``run``: stored once per run, computed by whoever comes first."""
        if row.evaluated_run_id == run.id:
            return _stored_verdict(row)
        daily = is_daily(spec.schedule)
        since = run.started_at - timedelta(weeks=BASELINE_WEEKS) if daily else None
        limit = BASELINE_LIMIT if daily else TRAILING_LIMIT
        history = await self.service.ledger.successes(spec.name, since, limit=limit)
        runs = {r.id: r for r in history} | {run.id: run}
        verdict = classify_history(runs.values(), daily=daily, tz=self.service.settings.tz)[run.id]
        band = (verdict.band.low, verdict.band.high) if verdict.band else None
        await self.service.job_states.record_volume(spec.name, run.id, verdict.anomaly, band, now)
        if verdict.anomaly is not None:
            log.info("%s: run %s is %s (expected %s)", spec.name, run.id, verdict.anomaly, band)
        return verdict

    def _text(
        self,
        spec: JobSpec,
        row: JobState,
        new: str,
        kind: AlertKind,
        runs: list[RunRow],
        verdict: VolumeVerdict,
        now: datetime,
    ) -> str:
        finished = [r for r in runs if r.status != "running"]
        if kind == "recovered":
            if row.state == "failed" and finished:
                streak = leading(finished, "success")
                before = finished[streak] if streak < len(finished) else None
                text = finished_text(finished[0], before, self.redactor)
                if text is not None:
                    return text
            return recovered_text(
                spec.name, row.state, row.since, finished[0] if finished else None
            )
        if new == "missing":
            return missing_text(spec, runs[0] if runs else None, now)
        if new == "stuck":
            return stuck_text(spec, runs[0] if runs else None, now)
        if new == "anomalous" and finished:
            band = (
                (round(verdict.band.low, 1), round(verdict.band.high, 1)) if verdict.band else None
            )
            return low_volume_text(finished[0], band)
        errors = leading(finished, "error")
        text = finished_text(finished[0], None, self.redactor) if finished else None
        if text is None:
            return f":red_circle: {spec.name} failed"
        if errors > 1:
            text += f"\n({errors} runs in a row ended error)"
        return text

    async def _send(self, text: str, job: str) -> None:
        log.warning("alert: %s", self.redactor(text.splitlines()[0]))
        for alerter in self.alerters:
            await alerter.send(text, about=job)

    # -- run ends

    async def run_finished(self, run: RunRow, previous: RunRow | None) -> None:
        """Evaluate the job at once; a ``partial`` run also sends its warning.

        Never raises for the database: the next watchdog tick (or ``cronkeeper check``)
        evaluates the job again.
        """
        try:
            if run.status == "partial":
                row = (await self.service.job_states.read([run.cron_name]))[run.cron_name]
                if not row.is_paused(self.service.clock()):
                    text = finished_text(run, previous, self.redactor)
                    if text is not None:
                        for alerter in self.alerters:
                            await alerter.send(text, about=run.cron_name)
            await self.check([run.cron_name])
        except StorageError as exc:
            log.warning(
                "%s: alert state not evaluated at the end of run %s: %s",
                run.cron_name,
                run.id,
                self.redactor(str(exc)),
            )

    # -- the timer

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Evaluate every ``interval`` until ``stop`` is set; a failed tick is logged."""
        stop = stop or self._stop
        seconds = self.interval.total_seconds()
        while not stop.is_set():
            try:
                await self.check()
            except StorageError as exc:
                log.warning("watchdog: %s; trying again in %g s", self.redactor(str(exc)), seconds)
            except Exception:
                log.exception("watchdog: evaluation failed; trying again in %g s", seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

    def start(self) -> None:
        """Run :meth:`run_forever` in the background (next to the scheduler)."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self.run_forever(self._stop))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


MAX_REASON = 500


async def pause_job(
    service: Service, job: str, *, for_: str | None = None, reason: str | None = None
) -> JobState:
    """``cronkeeper pause`` and ``POST /api/cron/{job}/pause``: no scheduled fire, no alert,
    ``ok`` in health until resumed or, with ``for_`` (``2h``), until that time has passed.

    Raises :class:`~cronkeeper.errors.UnknownJob`, ``ValueError`` for a bad duration, and
    :class:`~cronkeeper.errors.StorageError`.
    """
    get_job(job)
    now = service.clock()
    until = now + parse_duration(for_) if for_ else None
    text = truncate(service.settings.redactor(reason.strip()), MAX_REASON) if reason else None
    row = await service.job_states.pause(job, now, until=until, reason=text or None)
    log.info("%s paused%s", job, f" until {_iso(until)}" if until else "")
    return row


async def resume_job(service: Service, job: str) -> JobState:
    """End a pause at once (``cronkeeper resume``, ``POST /api/cron/{job}/resume``)."""
    get_job(job)
    row = await service.job_states.resume(job, service.clock())
    log.info("%s resumed", job)
    return row


def pause_json(row: JobState, now: datetime) -> dict[str, Any]:
    return {"cronName": row.cron_name, **row.pause_json(now)}


def install_watchdog(service: Service) -> Watchdog:
    """The service's watchdog, created once: the configured webhook (if any) for abandoned
    runs, and the watchdog for run ends. Raises :class:`~cronkeeper.errors.ConfigError` for
    a malformed ``ALERT_WEBHOOK_URL``."""
    for observer in service.observers:
        if isinstance(observer, Watchdog):
            return observer
    alerter = alerter_from_settings(service.settings, clock=service.clock, sleep=service.sleep)
    if alerter is not None:
        service.observers.append(alerter)
    watchdog = Watchdog(service, alerters=[alerter] if alerter is not None else [])
    service.observers.append(watchdog)
    return watchdog
