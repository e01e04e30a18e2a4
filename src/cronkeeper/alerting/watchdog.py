"""The watchdog: every job's alert state, evaluated on a timer and whenever a run ends.

Alerts used to go out only when a run ended, so a job that never started (scheduler down,
host gone, cron line deleted) said nothing. The watchdog reads the ledger and the
``job_state`` table every ``CRONKEEPER_WATCH_INTERVAL`` (``serve --scheduler`` and
``scheduler`` run it; ``cronkeeper check`` runs it once, for system cron), puts each job
and hands what it sees to :mod:`cronkeeper.alerting`, which owns the rule: the state machine,
the claim of each change (one conditional UPDATE in :mod:`cronkeeper.ledger.job_state`:
however many replicas watch, one message per change), the wording and the delivery. The
watchdog only decides *when* to look.

It is also a :class:`~cronkeeper.service.RunObserver`: a run that ends (``cronkeeper run``, a
trigger, the scheduler) is evaluated at once, through the same claim, so a failure alerts
without waiting for the next tick, and never twice. A ``partial`` run still sends its warning
when it ends (it is not a state). Volume verdicts (:mod:`cronkeeper.volume`) are computed
once per finished run and stored with the job's state, where health reads them.

Every job is evaluated; ``missing`` applies to monitored jobs only (the others have no
window). A job resumed from a pause is not ``missing`` until one window after the resume: it
was not supposed to run while paused (unless it was missing already when the pause began,
:func:`cronkeeper.alerting.pause.resume_job`). A resume is evaluated at once
(:meth:`Watchdog.job_resumed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from cronkeeper.alerting.channels import Channel, channels_from_settings
from cronkeeper.alerting.dispatch import Change, Dispatcher
from cronkeeper.alerting.state import Observation, Thresholds, thresholds_from_settings
from cronkeeper.config import JobSpec
from cronkeeper.errors import StorageError
from cronkeeper.health import outcome, watch_facts
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.job_state import JobState
from cronkeeper.service import RunObserver, Service
from cronkeeper.volume import Anomaly, Band, VolumeVerdict, classify_history, is_daily

__all__ = [
    "EXIT_CHECK_DOWN",
    "EXIT_CHECK_OK",
    "Change",
    "Watchdog",
    "install_watchdog",
]

log = logging.getLogger("cronkeeper.alerting.watchdog")

EXIT_CHECK_OK = 0
EXIT_CHECK_DOWN = 1
"""``cronkeeper check``: 0 every job ``ok`` or ``paused``, 1 a job is down, 2 database error."""

BASELINE_LIMIT = 400
"""Successes (and partial runs) read for a daily job's baseline: 17 weeks with re-runs to spare."""
TOKEN_CHECK_EVERY = timedelta(days=1)
"""How often the watchdog repeats the doctor's Meta token check (at start, then daily)."""
TRAILING_LIMIT = 60
"""Successes (and partial runs) read for a non-daily job's baseline: 14 runs, and 14 before
each of those."""
BASELINE_WEEKS = 17
"""A daily job's history read: 8 weeks of baseline, and 8 more to judge those runs, + 1."""


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
        alerters: Sequence[Channel] = (),
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
        self.alerting = Dispatcher(
            service.job_states,
            alerters=self.alerters,
            thresholds=self.thresholds,
            repeat=self.repeat,
            redactor=self.redactor,
            outbox=service.alert_outbox,
            on_failure=self._delivery_failed,
            public_url=settings.public_url,
        )
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._token_checked: datetime | None = None
        self._token_alerted: set[str] = set()

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
        if names is None:  # a full look: are the schedulers still there? (issue 22)
            seen = await service.heartbeats.read(now, service.settings.watch_every)
            await self.alerting.settle_scheduler(seen, now)
        await self.alerting.deliver(now)  # what these changes owe, and what earlier ones still do
        return changes

    def _delivery_failed(self, cron_name: str) -> None:
        for observer in self.service.observers:
            try:
                observer.alert_delivery_failed(cron_name)
            except Exception:
                log.exception("run observer %s failed", type(observer).__name__)

    async def _evaluate(
        self, spec: JobSpec, row: JobState, runs: list[RunRow], now: datetime
    ) -> Change:
        latest = runs[0] if runs else None
        finished = next((r for r in runs if r.status != "running"), None)
        verdict = VolumeVerdict(None, None)
        if finished is not None and outcome(finished, spec.partial_tolerance) == "success":
            verdict = await self._volume(spec, row, finished, now)
        facts = watch_facts(spec, latest, row, now, self.service.health_rules)
        seen = Observation(
            job=spec.name,
            recent=runs,
            missing=facts.missing,
            stuck=facts.stuck,
            tolerance=spec.partial_tolerance,
            paused=row.is_paused(now),
            anomaly=verdict.anomaly,
        )
        return await self.alerting.settle(spec, row, seen, runs, verdict.band, now)

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
        # A worker thread: pure CPU over up to 400 runs, not to be paid on the event loop.
        verdicts = await asyncio.to_thread(
            classify_history,
            list(runs.values()),
            daily=daily,
            tz=self.service.settings.tz,
            tolerance=spec.partial_tolerance,
        )
        verdict = verdicts[run.id]
        band = (verdict.band.low, verdict.band.high) if verdict.band else None
        await self.service.job_states.record_volume(spec.name, run.id, verdict.anomaly, band, now)
        if verdict.anomaly is not None:
            log.info("%s: run %s is %s (expected %s)", spec.name, run.id, verdict.anomaly, band)
        return verdict

    # -- run ends

    async def run_finished(self, run: RunRow, previous: RunRow | None) -> None:
        """Evaluate the job at once; a ``partial`` run also sends its warning.

        Never raises for the database: the next watchdog tick (or ``cronkeeper check``)
        evaluates the job again.
        """
        try:
            await self.alerting.run_warning(run, previous, self.service.clock())
            await self.check([run.cron_name])
        except StorageError as exc:
            log.warning(
                "%s: alert state not evaluated at the end of run %s: %s",
                run.cron_name,
                run.id,
                self.redactor(str(exc)),
            )

    async def run_abandoned(self, cron_name: str, run_ids: list[str]) -> None:
        """Runs this process closed as ``abandoned``: one warning, through the outbox."""
        await self.alerting.run_abandoned(cron_name, run_ids, self.service.clock())

    async def job_resumed(self, cron_name: str) -> None:
        """Evaluate a resumed job at once (never raises for the database: the next tick will)."""
        try:
            await self.check([cron_name])
        except StorageError as exc:
            log.warning(
                "%s: alert state not evaluated after its resume: %s",
                cron_name,
                self.redactor(str(exc)),
            )

    # -- the daily token check (the doctor's, repeated)

    async def check_token(self) -> list[str]:
        """The doctor's Meta token check, now: its findings become the service's stored
        health warnings (and the status page's banner); a finding not alerted yet (by the
        check's name: the day count in its text changes daily) is sent as one alert."""
        from cronkeeper.alerting.probe import send_token_alert
        from cronkeeper.doctor import meta_token_findings, warning_line
        from cronkeeper.http import HttpContext, RetryPolicy
        from cronkeeper.http.client import client_from_settings

        service = self.service
        settings = service.settings
        policy = RetryPolicy(
            max_retries=1, timeout=settings.http_timeout, max_wait=settings.max_wait
        )
        async with client_from_settings(settings) as client:
            http = HttpContext(
                client=client,
                policy=policy,
                sleep=service.sleep,
                now=service.clock,
                redactor=settings.redactor,
            )
            findings = await meta_token_findings(settings, http)
        lines = [warning_line(f) for f in findings]
        service.source_warnings = lines
        self._token_checked = service.clock()
        fresh = [warning_line(f) for f in findings if f.name not in self._token_alerted]
        self._token_alerted = {f.name for f in findings}
        if fresh:
            for line in fresh:
                log.warning("%s", line)
            await send_token_alert(self.alerters, fresh)
        return lines

    async def _token_due(self) -> None:
        """:meth:`check_token` at start and then once a day; never raises."""
        now = self.service.clock()
        if self._token_checked is not None and now - self._token_checked < TOKEN_CHECK_EVERY:
            return
        try:
            await self.check_token()
        except Exception:
            self._token_checked = now  # not again at every tick
            log.exception("watchdog: the Meta token check failed; next try in a day")

    # -- the timer

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Evaluate every ``interval`` until ``stop`` is set; a failed tick is logged."""
        stop = stop or self._stop
        seconds = self.interval.total_seconds()
        while not stop.is_set():
            await self._token_due()
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


def install_watchdog(service: Service) -> Watchdog:
    """The service's watchdog, created once, with every configured channel
    (``ALERT_WEBHOOK_URL``, ``ALERT_URLS``): it hears run ends and abandoned runs, and sends
    both through the outbox (the channels are no observers of their own: an abandoned-run
    alert sent directly was sent at most once). Raises
    :class:`~cronkeeper.errors.ConfigError` for an unusable alert URL."""
    for observer in service.observers:
        if isinstance(observer, Watchdog):
            return observer
    channels = channels_from_settings(service.settings, clock=service.clock, sleep=service.sleep)
    watchdog = Watchdog(service, alerters=channels)
    service.observers.append(watchdog)
    service.abandoned_messages = watchdog.alerting.abandoned_messages
    return watchdog
