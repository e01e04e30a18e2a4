"""Re-collect a range of dates in as few runs as the jobs allow, resumable.

Each job reads a window ending on its run date, so a backfill plans one run per window, not
per date (:func:`plan_runs`): collect-daily one run per ``META_LOOKBACK_DAYS`` days (each run
is one Meta request chain per account: a 90-day backfill is ⌈90/28⌉ = 4 chains per account,
not 90), collect-mixpanel one per ``MIXPANEL_LOOKBACK_DAYS`` days (one range query per
project: the Query API allows 60 an hour), sync-notion once (the registry has no dates), and
collect-benchmarks once per week that ends on a Sunday inside the range (the week the Monday
schedule computes).

A run date is *done* when the job has a ``success`` run recorded for it
(``cron_runs.report_date``) — for collect-benchmarks only one that wrote rows, since a week
computed before its insights existed must be computed again. A re-run skips done run dates,
so an interrupted backfill (Ctrl-C, a lost pod, a job already running elsewhere) is resumed by
running the same command again. ``partial`` and ``error`` runs are not done: the next run
retries them. ``force`` re-runs everything; the jobs write with idempotent upserts, so that
changes no row count.

Policy: a date that ends ``error`` or ``partial`` is reported and the backfill goes on (one
bad day of an API should not block thirty good ones); a job already running elsewhere stops
it (exit 75, like ``cronkeeper run``), because every following date would meet the same lease.
Dates after the last complete day (yesterday in the configured zone) are refused: collecting
a day that is not over would record it as done with half its data.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cronkeeper.config import Settings
from cronkeeper.errors import AlreadyRunning, UnknownJob
from cronkeeper.reportday import check_report_date, default_day
from cronkeeper.runner import EXIT_ALREADY_RUNNING, EXIT_CODES, run_job
from cronkeeper.scheduler import RunJob
from cronkeeper.service import Service

__all__ = [
    "BackfillProgress",
    "BackfillReport",
    "DateOutcome",
    "PlainProgress",
    "RichProgress",
    "backfill",
    "date_range",
    "make_progress",
    "plan_runs",
]

log = logging.getLogger("cronkeeper.backfill")

OutcomeStatus = Literal["success", "partial", "error", "skipped", "busy"]
_RUN_STATUSES: dict[str, OutcomeStatus] = {
    "success": "success",
    "partial": "partial",
    "error": "error",
}


@dataclass(frozen=True)
class DateOutcome:
    day: date
    status: OutcomeStatus
    """A run's status; ``skipped`` (already done) or ``busy`` (running elsewhere: stopped)."""
    records_count: int = 0
    error_message: str | None = None
    run_id: str | None = None
    since: date | None = None
    """The first date the run covers (its window), when that is not ``day`` alone."""

    def line(self, job: str, position: int, total: int) -> str:
        """The plain progress line: ``2026-11-01 collect-daily success 120 records (3/30)``."""
        where = f"({position}/{total})"
        covered = self.day.isoformat()
        if self.since is not None and self.since != self.day:
            covered = f"{self.since.isoformat()}…{covered}"
        head = f"{covered} {job}"
        if self.status == "skipped":
            return f"{head} skipped: already collected {where}"
        if self.status == "busy":
            return f"{head} already running elsewhere: backfill stopped {where}"
        text = f"{head} {self.status} {self.records_count} records"
        if self.error_message:
            text += f": {' '.join(self.error_message.split())[:200]}"
        return f"{text} {where}"


@dataclass
class BackfillReport:
    job: str
    since: date
    until: date
    force: bool
    outcomes: list[DateOutcome] = field(default_factory=list)
    runs: int | None = None
    """How many runs were planned (default: one per date of the range)."""

    @property
    def total(self) -> int:
        return self.runs if self.runs is not None else (self.until - self.since).days + 1

    def with_status(self, *statuses: OutcomeStatus) -> list[DateOutcome]:
        return [o for o in self.outcomes if o.status in statuses]

    @property
    def stopped_at(self) -> date | None:
        """The date at which the job was found running elsewhere (the backfill stopped)."""
        busy = self.with_status("busy")
        return busy[0].day if busy else None

    @property
    def exit_code(self) -> int:
        """75 stopped (run it again later), else 1 any error, 3 any partial, 0 all collected."""
        if self.stopped_at is not None:
            return EXIT_ALREADY_RUNNING
        for status in ("error", "partial"):
            if self.with_status(status):
                return EXIT_CODES[status]
        return 0

    def summary(self) -> str:
        ran = self.with_status("success", "partial", "error")
        counts = ", ".join(
            f"{len(self.with_status(s))} {s}"
            for s in ("success", "partial", "error")
            if self.with_status(s)
        )
        text = (
            f"{self.job} {self.since.isoformat()}…{self.until.isoformat()}: "
            f"{len(ran)} run{'s' if len(ran) != 1 else ''}"
            + (f" ({counts})" if counts else "")
            + f", {len(self.with_status('skipped'))} already collected"
        )
        failed = self.with_status("partial", "error")
        if failed:
            text += "; to retry: " + ", ".join(o.day.isoformat() for o in failed)
        if self.stopped_at is not None:
            left = self.total - len(self.outcomes) + 1
            text += (
                f"; stopped at {self.stopped_at.isoformat()} ({left} run(s) left): "
                "the job is running elsewhere, run the same command again later"
            )
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "force": self.force,
            "exitCode": self.exit_code,
            "dates": [
                {
                    "date": o.day.isoformat(),
                    "since": (o.since or o.day).isoformat(),
                    "status": o.status,
                    "recordsCount": o.records_count,
                    "errorMessage": o.error_message,
                    "runId": o.run_id,
                }
                for o in self.outcomes
            ],
        }


class BackfillProgress(Protocol):
    """What a backfill reports as it goes (a Rich bar on a terminal, lines otherwise)."""

    def start(self, job: str, total: int) -> None: ...
    def running(self, day: date) -> None: ...
    def advance(self, outcome: DateOutcome, position: int) -> None: ...
    def stop(self) -> None: ...


class PlainProgress:
    """One line per date, for logs and pipes (no cursor movement, no colour)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.job = ""
        self.total = 0

    def start(self, job: str, total: int) -> None:
        self.job, self.total = job, total

    def running(self, day: date) -> None:
        pass

    def advance(self, outcome: DateOutcome, position: int) -> None:
        line = outcome.line(self.job, position, self.total)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        pass


class RichProgress:
    """A progress bar; dates that did not end ``success`` are printed above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task: TaskID | None = None
        self.job = ""
        self.total = 0

    def start(self, job: str, total: int) -> None:
        self.job, self.total = job, total
        self.task = self.progress.add_task(job, total=total)
        self.progress.start()

    def running(self, day: date) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=f"{self.job} {day.isoformat()}")

    def advance(self, outcome: DateOutcome, position: int) -> None:
        if outcome.status not in ("success", "skipped"):
            style = {"partial": "yellow", "error": "red"}.get(outcome.status, "cyan")
            self.progress.console.print(
                f"[{style}]{outcome.line(self.job, position, self.total)}[/]", highlight=False
            )
        if self.task is not None:
            self.progress.update(self.task, completed=position)

    def stop(self) -> None:
        self.progress.stop()


def make_progress(console: Console) -> BackfillProgress:
    """A Rich bar when ``console`` is a terminal, plain lines otherwise."""
    return RichProgress(console) if console.is_terminal else PlainProgress(console)


def date_range(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def plan_runs(settings: Settings, job: str, since: date, until: date) -> list[tuple[date, date]]:
    """The runs that cover ``since`` … ``until``: ``(first date covered, run date)`` each.

    A run for date D re-reads the job's window ending on D, so consecutive windows tile the
    range; the last one is shorter when the range is not a multiple of the window.
    """
    if job == "sync-notion":
        return [(since, until)]
    if job == "collect-benchmarks":
        return [
            (day - timedelta(days=6), day) for day in date_range(since, until) if day.weekday() == 6
        ]
    size = {
        "collect-daily": settings.meta_lookback_days,
        "collect-mixpanel": settings.mixpanel_lookback_days,
    }.get(job, 1)
    starts = date_range(since, until)[::size]
    return [(start, min(start + timedelta(days=size - 1), until)) for start in starts]


async def backfill(
    service: Service,
    job: str,
    since: date,
    until: date | None = None,
    *,
    force: bool = False,
    run: RunJob = run_job,
    progress: BackfillProgress | None = None,
) -> BackfillReport:
    """Run ``job`` over ``since`` … ``until`` (default: yesterday) in the runs
    :func:`plan_runs` gives, in date order.

    Raises :class:`UnknownJob`, ``ValueError`` for a range that is empty or not over yet, and
    :class:`StorageError` when the ledger cannot say which dates are done.
    """
    # External jobs (cronkeeper.toml) only check in: there is nothing here to re-run.
    names = [spec.name for spec in service.settings.jobs if spec.kind == "builtin"]
    if job not in names:
        raise UnknownJob(f"no job named {job!r}; jobs are {', '.join(names)}")
    tz = service.settings.tz
    last_complete = default_day(service.clock(), tz)
    until = until or last_complete
    for day in (since, until):  # the runner's rule: a day that is over, not before 2000
        check_report_date(day, last_complete, service.settings.timezone)
    if since > until:
        raise ValueError(f"--since {since} is after --until {until}")
    runs = plan_runs(service.settings, job, since, until)
    with_rows = job == "collect-benchmarks"
    done = (
        set() if force else await service.ledger.done_dates(job, since, until, with_rows=with_rows)
    )
    report = BackfillReport(job, since, until, force, runs=len(runs))
    if progress is not None:
        progress.start(job, len(runs))
    try:
        for position, (first, day) in enumerate(runs, 1):
            if day in done:
                outcome = DateOutcome(day, "skipped", since=first)
            else:
                if progress is not None:
                    progress.running(day)
                outcome = dataclasses.replace(await _run_one(service, job, day, run), since=first)
            report.outcomes.append(outcome)
            if progress is not None:
                progress.advance(outcome, position)
            if outcome.status == "busy":
                break
    finally:
        if progress is not None:
            progress.stop()
    log.info("backfill %s", report.summary())
    return report


async def _run_one(service: Service, job: str, day: date, run: RunJob) -> DateOutcome:
    try:
        result = await run(service, job, day)
    except AlreadyRunning as exc:
        return DateOutcome(day, "busy", error_message=str(exc))
    except UnknownJob:
        raise
    except Exception as exc:  # the runner records failures itself; this is a bug or an outage
        message = service.settings.redactor(f"{type(exc).__name__}: {exc}")
        log.error("backfill of %s for %s failed: %s", job, day.isoformat(), message)
        return DateOutcome(day, "error", error_message=message)
    status = _RUN_STATUSES.get(result.status, "error")
    return DateOutcome(day, status, result.records_count, result.error_message, result.run_id)
