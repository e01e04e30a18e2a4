"""Run one job once: lease, ledger, HTTP client, the job, observers — in that order."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from cronkeeper.errors import AlreadyRunning, CronkeeperError, LeaseLost, SlotServed
from cronkeeper.http import HttpContext, RetryEvent, client_from_settings
from cronkeeper.http.pacing import Pacer, PacingPolicy
from cronkeeper.jobs import JobContext, get_job
from cronkeeper.lease import Lease
from cronkeeper.ledger import FinalStatus, Ledger, RunRow, RunTracker
from cronkeeper.ledger.models import ABANDONED
from cronkeeper.reportday import check_report_date, default_day, parse_report_date
from cronkeeper.service import Service

__all__ = [
    "ABANDONED",
    "EXIT_ALREADY_RUNNING",
    "EXIT_CODES",
    "RunProgress",
    "RunResult",
    "check_report_date",
    "parse_report_date",
    "run_job",
]

log = logging.getLogger("cronkeeper.runner")

EXIT_CODES: dict[str, int] = {"success": 0, "partial": 3, "error": 1}
EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: try again later


@dataclass(frozen=True)
class RunResult:
    run_id: str | None
    cron_name: str
    day: date
    status: FinalStatus
    records_count: int
    error_message: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "cronName": self.cron_name,
            "date": self.day.isoformat(),
            "status": self.status,
            "recordsCount": self.records_count,
            "errorMessage": self.error_message,
        }


@dataclass(frozen=True)
class RunProgress:
    """What a caller that does not wait for the whole run hears of it (the HTTP trigger):
    ``started`` the run's id once its row is opened (or spooled), ``ended`` its result as soon
    as its row is closed, before the observers (alerts) hear of it."""

    started: asyncio.Future[str | None]
    ended: asyncio.Future[RunResult]

    @classmethod
    def new(cls) -> RunProgress:
        loop = asyncio.get_running_loop()
        return cls(loop.create_future(), loop.create_future())


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


async def run_job(
    service: Service,
    name: str,
    day: date | None = None,
    *,
    progress: RunProgress | None = None,
    slot: datetime | None = None,
) -> RunResult:
    """Run ``name`` for ``day`` (default: yesterday in the configured zone).

    Raises :class:`~cronkeeper.errors.UnknownJob`,
    :class:`~cronkeeper.errors.AlreadyRunning`, ``ValueError`` for a date that is not over
    yet or is before 2000, and a :class:`~cronkeeper.errors.StorageError` when the lease
    refuses the run (schema behind, permission denied: see :mod:`cronkeeper.lease`); no run
    is recorded then. Every other failure ends up in the result and the ledger as ``error``.

    ``slot`` (the scheduler's fire): once the lease is held, a run of the job for ``day``
    started at or after it means another replica served the slot meanwhile — raises
    :class:`~cronkeeper.errors.SlotServed` and runs nothing. Checked under the lease, the slot
    check and the claim are one step: no replica can start the slot between them.
    """
    job = get_job(name)
    settings = service.settings
    now = service.clock()
    last_complete = default_day(now, settings.tz)
    explicit_day = day is not None
    if day is None:
        day = last_complete
    else:
        check_report_date(day, last_complete, settings.timezone)
    tracker: RunTracker | None = None
    try:
        async with service.leases.hold(name) as lease:
            if lease.acquired:
                try:
                    abandoned = await service.close_abandoned(lease, reason=ABANDONED)
                except LeaseLost as exc:  # taken over before this run even started
                    raise AlreadyRunning(str(exc)) from exc
                if abandoned:
                    log.warning("closed %d abandoned run(s) of %s", len(abandoned), name)
                    await service.notify(lambda o: o.run_abandoned(name, abandoned))
            if slot is not None and await _served(service.ledger, name, day, slot):
                raise SlotServed(f"{name}: its {slot.isoformat()} slot was already served")
            previous = await _latest(service.ledger, name)

            def on_retry(event: RetryEvent) -> None:
                if tracker is not None:  # stored with the run's end, for /metrics (issue 22)
                    tracker.retried(event.reason)
                for observer in service.observers:
                    observer.retry(name, event)

            async with client_from_settings(settings) as client:
                http = HttpContext(
                    client=client,
                    policy=service.retry_policy,
                    sleep=service.sleep,
                    now=service.clock,
                    on_retry=on_retry,
                    redactor=settings.redactor,
                    limiter=service.limiter,
                    pacer=Pacer(
                        PacingPolicy(settings.pacing_high_water, settings.pacing_pause),
                        clock=service.clock,
                    ),
                )
                ctx = JobContext(
                    settings=settings,
                    engine=service.engine,
                    http=http,
                    clock=service.clock,
                    explicit_day=explicit_day,
                    deadline=now + timedelta(seconds=settings.run_budget_seconds),
                    fence=lease.fence,
                )
                try:
                    async with service.ledger.track(
                        name, unit_label=job.unit_label, report_date=day, lease_epoch=lease.epoch
                    ) as tracker:
                        if progress is not None:
                            _settle(progress.started, tracker.run_id)
                        log.info("running %s for %s", name, day.isoformat())
                        if lease.acquired:
                            await job.run(ctx, day, tracker)
                        else:
                            tracker.note(unguarded_note(lease))
                            beat = service.leases.ttl / 3
                            async with service.ledger.beating(tracker.run_id, beat):
                                await job.run(ctx, day, tracker)
                except CronkeeperError as exc:
                    log.error("%s failed: %s", name, settings.redactor(str(exc)))
                except Exception as exc:
                    log.error(
                        "%s failed unexpectedly: %s: %s",
                        name,
                        type(exc).__name__,
                        settings.redactor(str(exc)),
                    )
    except LeaseLost as exc:
        # Another run took the lease over (this one was paused or cut off past the TTL):
        # stopped within one renewal interval, recorded ``error`` by the ledger.
        log.error("%s", exc)
        if tracker is None:
            raise
    assert tracker is not None
    assert tracker.summary is not None
    summary = tracker.summary
    result = RunResult(
        tracker.run_id, name, day, summary.status, summary.records_count, summary.error_message
    )
    log.info("%s ended %s with %d records", name, result.status, result.records_count)
    if progress is not None:
        _settle(progress.ended, result)
    if tracker.run_id is not None:
        finished = await _get(service.ledger, tracker.run_id)
        if finished is not None:
            await service.notify(lambda o: o.run_finished(finished, previous))
    return result


def unguarded_note(lease: Lease) -> str:
    """The run's message says it ran without the one-at-a-time guard, and why."""
    return (
        f"ran without the one-at-a-time guard: its lease could not be claimed ({lease.unguarded})"
    )


async def _served(ledger: Ledger, name: str, day: date, slot: datetime) -> bool:
    """:meth:`Ledger.slot_served`; a database that cannot say: not served (the run itself
    copes with it)."""
    try:
        return await ledger.slot_served(name, day, slot)
    except CronkeeperError:
        return False


async def _latest(ledger: Ledger, name: str) -> RunRow | None:
    if not ledger.breaker.allow():  # only for observers: not worth a timeout
        return None
    try:
        return (await ledger.latest_runs([name]))[name]
    except CronkeeperError:
        return None


async def _get(ledger: Ledger, run_id: str) -> RunRow | None:
    if not ledger.breaker.allow():
        return None
    try:
        return await ledger.get_run(run_id)
    except CronkeeperError:
        return None
