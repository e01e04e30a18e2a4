"""Run each job on its cron expression, in the configured time zone, one run per slot.

APScheduler 3's ``AsyncIOScheduler`` does the waiting (one job per :class:`JobSpec`,
``max_instances=1``, ``coalesce=True``, a misfire grace), but not the calendar arithmetic:
its ``CronTrigger.from_crontab`` reads day-of-week ``1`` as *Tuesday* (APScheduler counts
from Monday = 0, crontab from Sunday = 0, so the weekly ``0 2 * * 1`` would run a day late),
intersects day-of-month and day-of-week where cron unites them, and around a DST fall-back
fires a daily ``30 2 * * *`` twice and loops when asked for the next fire from inside the
repeated hour. :class:`CronExpression` below is a small, pure crontab calendar with cron's
own rules, and APScheduler is given it as its trigger.

DST, as Vixie cron / cronie do it: a time skipped by a spring-forward fires once, shifted by
the gap (``30 2`` → 03:30 CEST); a time repeated by a fall-back fires once (its first
occurrence) unless the minute or hour field is a wildcard (``*/15 * * * *``, ``0 * * * *``),
whose jobs keep their rhythm through both passes.

A fire missed while the process was down is run once on start-up (:meth:`catch_up`) when it
is less than ``misfire_grace`` old and no run of the job has started since that slot; older
misses are left to ``cronkeeper backfill``. Several replicas may each run a scheduler: the
database lease lets one of them run a slot, and a replica that comes late sees in the ledger
that the slot was served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from cronkeeper.config import JobSpec
from cronkeeper.errors import AlreadyRunning, ConfigError, first_line
from cronkeeper.jobs.base import report_date
from cronkeeper.runner import run_job
from cronkeeper.service import Service

__all__ = [
    "DEFAULT_MISFIRE_GRACE",
    "CronExpression",
    "CronScheduler",
    "Fire",
    "RunJob",
    "RunOutcome",
    "due_fires",
    "missed_fire",
    "next_fire",
    "previous_fire",
]

log = logging.getLogger("cronkeeper.ops.scheduler")

DEFAULT_MISFIRE_GRACE = timedelta(hours=1)
_SEARCH_DAYS = 8 * 366
"""How far to look for a fire: ``0 0 29 2 *`` fires once in four years (eight: 2100 skips)."""


class RunOutcome(Protocol):
    """What the scheduler and backfill read from a run (``runner.RunResult`` is one)."""

    @property
    def run_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def records_count(self) -> int: ...
    @property
    def error_message(self) -> str | None: ...


RunJob = Callable[[Service, str, date], Awaitable[RunOutcome]]
"""``run_job``'s shape: tests pass a fake that needs no HTTP."""


# -- the calendar ---------------------------------------------------------------------------

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    def number(token: str) -> int:
        value = names.get(token.lower()) if names else None
        if value is None:
            if not token.isdigit():
                raise ValueError(f"{name} {token!r} is not a number")
            value = int(token)
        if not lo <= value <= hi:
            raise ValueError(f"{name} {value} is outside {lo}-{hi}")
        return value

    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{name} step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise ValueError(f"{name} range {base!r} runs backwards")
        else:
            start = number(base)
            end = hi if slash else start  # cronie reads ``5/15`` as ``5-59/15``
        values.update(range(start, end + 1, step))
    return values


@dataclass(frozen=True)
class CronExpression:
    """A 5-field crontab expression with cron's semantics (Sunday is 0 or 7).

    Day-of-month and day-of-week: when both are restricted (neither starts with ``*``) a day
    matches if *either* does, as in every cron since Vixie's; otherwise both must.
    """

    expr: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday … 6 = Saturday."""
    day_or_weekday: bool
    wildcard: bool
    """Minute or hour field is a wildcard: the job also fires in a repeated (fall-back) hour."""

    @classmethod
    def parse(cls, expr: str) -> CronExpression:
        fields = expr.split()
        if len(fields) != 5:
            raise ValueError(
                f"invalid cron expression {expr!r}: expected 5 fields "
                "(minute hour day-of-month month day-of-week), got {len(fields)}"
            )
        try:
            parsed = [
                _parse_field(text, name, lo, hi, names)
                for text, (name, lo, hi, names) in zip(fields, _FIELDS, strict=True)
            ]
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None
        minutes, hours, days, months, weekdays = parsed
        return cls(
            expr=expr,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=frozenset(days),
            months=frozenset(months),
            weekdays=frozenset(d % 7 for d in weekdays),
            day_or_weekday=not fields[2].startswith("*") and not fields[4].startswith("*"),
            wildcard=fields[0].startswith("*") or fields[1].startswith("*"),
        )

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = day.isoweekday() % 7 in self.weekdays
        return (by_day or by_weekday) if self.day_or_weekday else (by_day and by_weekday)

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The first fire strictly after ``moment``, in ``tz``; ``None`` if it never fires."""
        first = moment.astimezone(tz).date() - timedelta(days=1)
        for offset in range(_SEARCH_DAYS):
            day = first + timedelta(days=offset)
            for fire in self.fires_on(day, tz):
                if fire > moment:
                    return fire.astimezone(tz)
        return None

    def previous(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The last fire at or before ``moment``, in ``tz``; ``None`` if none in eight years."""
        last = moment.astimezone(tz).date() + timedelta(days=1)
        for offset in range(_SEARCH_DAYS):
            day = last - timedelta(days=offset)
            for fire in reversed(self.fires_on(day, tz)):
                if fire <= moment:
                    return fire.astimezone(tz)
        return None

    def fires_on(self, day: date, tz: tzinfo) -> list[datetime]:
        """The instants (aware, UTC) at which this expression fires on local ``day``, in order."""
        if not self.matches_day(day):
            return []
        instants: set[datetime] = set()
        for hour in self.hours:
            for minute in self.minutes:
                wall = datetime.combine(day, time(hour, minute))
                instants.update(_instants(wall, tz, both_passes=self.wildcard))
        return sorted(instants)


def _instants(wall: datetime, tz: tzinfo, *, both_passes: bool = False) -> list[datetime]:
    """The UTC instants a local wall-clock time stands for (PEP 495 folds).

    Normal: one. Repeated by a fall-back: the first pass, or both for wildcard jobs. Skipped
    by a spring-forward: one instant, shifted forward by the gap (``fold=0`` reads it with
    the offset from before the change).
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first < second:  # ambiguous: the wall time happens twice
        return [first, second] if both_passes else [first]
    return [first]  # normal (equal) or in a gap (first > second: the shifted instant)


def _cron(schedule: str | CronExpression) -> CronExpression:
    return schedule if isinstance(schedule, CronExpression) else CronExpression.parse(schedule)


def previous_fire(schedule: str | CronExpression, tz: tzinfo, now: datetime) -> datetime | None:
    """The most recent scheduled fire at or before ``now`` (aware, in ``tz``)."""
    return _cron(schedule).previous(now, tz)


def next_fire(schedule: str | CronExpression, tz: tzinfo, after: datetime) -> datetime | None:
    """The first scheduled fire strictly after ``after`` (aware, in ``tz``)."""
    return _cron(schedule).next_after(after, tz)


def missed_fire(
    schedule: str | CronExpression,
    tz: tzinfo,
    last_started: datetime | None,
    now: datetime,
    grace: timedelta,
) -> datetime | None:
    """The slot to run on start-up, if any: the latest one, once, and only if still fresh.

    ``last_started`` is when the job's latest run started (``None``: never ran). Several
    missed slots give one run (the latest): re-running yesterday's slot at 09:00 is a
    backfill's business, not a scheduler's.
    """
    fire = previous_fire(schedule, tz, now)
    if fire is None or now - fire > grace:
        return None
    if last_started is not None and last_started >= fire:
        return None
    return fire


@dataclass(frozen=True)
class Fire:
    """One job due at one slot."""

    name: str
    slot: datetime


def due_fires(specs: Iterable[JobSpec], tz: tzinfo, since: datetime, now: datetime) -> list[Fire]:
    """Jobs with a slot in ``(since, now]``, each once at its latest slot (coalesced), by slot."""
    fires = []
    for spec in specs:
        slot = previous_fire(spec.schedule, tz, now)
        if slot is not None and slot > since:
            fires.append(Fire(spec.name, slot))
    return sorted(fires, key=lambda f: f.slot)


# -- APScheduler ----------------------------------------------------------------------------


class _Trigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """APScheduler's view of a :class:`CronExpression`."""

    __slots__ = ("cron", "tz")

    def __init__(self, cron: CronExpression, tz: tzinfo) -> None:
        self.cron = cron
        self.tz = tz

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is not None:
            return self.cron.next_after(previous_fire_time, self.tz)
        return self.cron.next_after(now - timedelta(microseconds=1), self.tz)

    def __str__(self) -> str:
        return f"cron[{self.cron.expr}] in {self.tz}"


class CronScheduler:
    """The jobs of ``service.settings`` on their schedules, in ``settings.tz``.

    ``run`` runs one job for one report date (default :func:`cronkeeper.runner.run_job`);
    a run that fails is logged and the scheduler goes on, a job already running elsewhere
    (another replica, a manual run) is skipped with an info line.
    """

    def __init__(
        self,
        service: Service,
        *,
        run: RunJob = run_job,
        misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE,
        jobs: Sequence[JobSpec] | None = None,
    ) -> None:
        self.service = service
        self.tz = service.settings.tz
        self.misfire_grace = misfire_grace
        self.specs = tuple(jobs if jobs is not None else service.settings.jobs)
        self._run = run
        try:
            self.crons = {spec.name: CronExpression.parse(spec.schedule) for spec in self.specs}
        except ValueError as exc:
            raise ConfigError(f"CRONKEEPER_SCHEDULES: {exc}") from None
        self._scheduler: AsyncIOScheduler | None = None
        self._last_tick = service.clock()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- firing ---------------------------------------------------------------------------

    async def fire(self, name: str, slot: datetime | None = None) -> RunOutcome | None:
        """Run ``name`` for ``slot`` (default: its latest slot); what APScheduler calls.

        The report date comes from the slot, not the wall clock, so a fire delayed past
        midnight still collects the day it was scheduled for. Returns ``None`` when nothing
        ran (slot already served, job running elsewhere, or the run failed).
        """
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._fire(name, slot)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _fire(self, name: str, slot: datetime | None) -> RunOutcome | None:
        now = self.service.clock()
        slot = slot or self.crons[name].previous(now, self.tz) or now
        day = report_date(slot, self.tz)
        if await self._paused(name, now):
            log.info("%s is paused: its %s fire is skipped", name, slot.isoformat())
            return None
        if await self._served(name, slot, day):
            log.info(
                "%s: its %s slot was already served (another replica?)", name, slot.isoformat()
            )
            return None
        redact = self.service.settings.redactor
        try:
            result = await self._run(self.service, name, day)
        except AlreadyRunning:
            log.info(
                "%s is already running elsewhere; its %s fire is skipped", name, slot.isoformat()
            )
            return None
        except Exception as exc:
            log.error(
                "scheduled run of %s for %s failed: %s: %s",
                name,
                day.isoformat(),
                type(exc).__name__,
                redact(str(exc)),
                exc_info=True,
            )
            return None
        log.info(
            "scheduled %s for %s ended %s with %d records",
            name,
            day.isoformat(),
            result.status,
            result.records_count,
        )
        return result

    async def _served(self, name: str, slot: datetime, day: date) -> bool:
        try:
            started = await self.service.ledger.last_started_for(name, day)
        except Exception as exc:  # the run itself copes with a database that is down
            log.warning("could not read the ledger before running %s: %s", name, self._why(exc))
            return False
        return started is not None and started >= slot

    async def _paused(self, name: str, now: datetime) -> bool:
        """``cronkeeper pause``: a paused job is not fired (a database that cannot say fires it)."""
        try:
            state = (await self.service.job_states.read([name]))[name]
        except Exception as exc:
            log.warning("could not read the pause of %s: %s", name, self._why(exc))
            return False
        return state.is_paused(now)

    def _why(self, exc: BaseException) -> str:
        return self.service.settings.redactor(f"{type(exc).__name__}: {first_line(exc)}"[:500])

    async def tick(self, now: datetime | None = None) -> list[Fire]:
        """Fire every job with a slot since the previous tick (coalesced); the fires run.

        The same decision APScheduler takes on its timer, in one step and with time given:
        tests drive the scheduler with a fake clock through this, and so can an external loop.
        """
        now = now or self.service.clock()
        fires = due_fires(self.specs, self.tz, self._last_tick, now)
        self._last_tick = max(self._last_tick, now)
        await asyncio.gather(*(self.fire(f.name, f.slot) for f in fires))
        return fires

    async def catch_up(self, now: datetime | None = None) -> list[Fire]:
        """Run, once each, the slots missed while no scheduler was running (within grace).

        Runs them one after another, oldest slot first: the schedules order the jobs
        (``sync-notion`` before ``collect-daily`` before ``collect-benchmarks``), and so
        does the catch-up.
        """
        now = now or self.service.clock()
        missed: list[Fire] = []
        for spec in self.specs:
            cron = self.crons[spec.name]
            slot = cron.previous(now, self.tz)
            if slot is None or now - slot > self.misfire_grace:
                continue
            try:
                last = await self.service.ledger.last_started_for(
                    spec.name, report_date(slot, self.tz)
                )
            except Exception as exc:
                log.warning(
                    "catch-up of %s skipped: the ledger cannot be read: %s",
                    spec.name,
                    self._why(exc),
                )
                continue
            when = missed_fire(cron, self.tz, last, now, self.misfire_grace)
            if when is not None:
                missed.append(Fire(spec.name, when))
        missed.sort(key=lambda f: f.slot)
        for item in missed:
            log.info("%s missed its %s slot: running it now", item.name, item.slot.isoformat())
            await self.fire(item.name, item.slot)
        return missed

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._scheduler is not None

    @property
    def apscheduler(self) -> AsyncIOScheduler:
        """The running APScheduler (to inspect or nudge its jobs); only after :meth:`start`."""
        if self._scheduler is None:
            raise RuntimeError("the scheduler is not running")
        return self._scheduler

    def next_run_times(self) -> dict[str, datetime | None]:
        """Each job's next fire as APScheduler has it (empty before :meth:`start`)."""
        if self._scheduler is None:
            return {}
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    async def start(self, *, catch_up: bool = True) -> None:
        """Register the jobs with APScheduler and start it; then catch up in the background.

        Slots up to the start are the catch-up's, slots after it APScheduler's: each job's
        first ``next_run_time`` is given explicitly so the two never both take one slot.
        """
        if self._scheduler is not None:
            raise RuntimeError("the scheduler is already running")
        now = self.service.clock()
        self._last_tick = now
        scheduler = AsyncIOScheduler(timezone=self.tz)
        grace = max(1, int(self.misfire_grace.total_seconds()))
        for spec in self.specs:
            cron = self.crons[spec.name]
            scheduler.add_job(
                self.fire,
                trigger=_Trigger(cron, self.tz),
                args=[spec.name],
                id=spec.name,
                name=spec.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=grace,
                next_run_time=cron.next_after(now, self.tz),
            )
        scheduler.start()
        self._scheduler = scheduler
        for job in scheduler.get_jobs():
            log.info("scheduled %s (%s): next run %s", job.id, job.trigger, job.next_run_time)
        if catch_up:
            self._spawn(self.catch_up(now))

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("scheduler background work failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self, *, wait: bool = False) -> None:
        """Stop firing. Running jobs are cancelled (their runs end ``error``, their leases are
        released) unless ``wait``, which lets them finish first."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on its next loop turn
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if not wait:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run_forever(self, *, stop: asyncio.Event | None = None) -> None:
        """``cronkeeper scheduler``: start, wait for SIGINT/SIGTERM (or ``stop``), shut down."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        await self.start()
        try:
            await stop.wait()
            log.info("scheduler stopping")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.shutdown()
