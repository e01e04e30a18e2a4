"""Run each job on its cron expression, in the configured time zone, one run per slot.

The calendar is `cronsim <https://github.com/cuu508/cronsim>`_ (the library healthchecks.io
uses and Sentry Crons moved to), written to follow Debian cron: Sunday is ``0`` or ``7``,
day-of-month and day-of-week are OR-ed when both are restricted, and around daylight saving
time a job at a fixed time (neither minute nor hour a wildcard) fires once: a time skipped by
a spring-forward fires at the first minute that exists after it (in a zone that jumps from
02:00 to 03:00, ``15 2,3 * * *`` fires at 03:00 and 03:15), a time repeated by a fall-back
fires on its first pass only; wildcard jobs (``*/15 * * * *``, ``0 * * * *``) keep their
rhythm in real time through both changes. Only the syntax Debian cron reads is accepted
(five fields; no ``L``, ``W`` or ``#``).

The firing path is one plain asyncio loop (:meth:`CronScheduler.serve`) with the clock and
the sleep injected: it sleeps until the next slot (at most ``max_sleep`` at a time, so a
wall clock that jumps is noticed), then :meth:`CronScheduler.tick` runs every job whose slot
came since the previous tick, once (coalesced), in a task of its own so a long run never
delays another job. Tests drive that same loop with a fake clock and a sleep that only moves
it. Periodic work (a watchdog) can ride the same loop: :meth:`CronScheduler.every`.

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
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Protocol

from cronkeeper.clock import Sleep
from cronkeeper.config import JobSpec
from cronkeeper.cron import CronExpression
from cronkeeper.errors import (
    AlreadyRunning,
    ConfigError,
    SchemaBehind,
    SlotServed,
    StorageError,
    first_line,
)
from cronkeeper.ledger.presence import Heartbeat, scheduler_id
from cronkeeper.reportday import slot_day
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

log = logging.getLogger("cronkeeper.scheduler")

DEFAULT_MISFIRE_GRACE = timedelta(hours=1)
DEFAULT_MAX_SLEEP = 60.0
"""Seconds the loop sleeps at most before it looks at the wall clock again."""


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


class RunJob(Protocol):
    """``run_job``'s shape: tests pass a fake that needs no HTTP. ``slot``: run only if the
    slot is still unserved once the lease is held (else raise ``SlotServed``)."""

    def __call__(
        self, service: Service, name: str, day: date, *, slot: datetime | None = None
    ) -> Awaitable[RunOutcome]: ...


# -- the calendar ---------------------------------------------------------------------


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


# -- the loop -------------------------------------------------------------------------------

Work = Callable[[datetime], Awaitable[None]]


@dataclass
class _Periodic:
    name: str
    interval: timedelta
    work: Work
    due: datetime | None = None
    """Next time it is due; ``None`` until the loop starts (then: at once)."""


class CronScheduler:
    """The jobs of ``service.settings`` on their schedules, in ``settings.tz``.

    ``run`` runs one job for one report date (default :func:`cronkeeper.runner.run_job`);
    a run that fails is logged and the scheduler goes on, a job already running elsewhere
    (another replica, a manual run) is skipped with an info line. Time is the service's
    clock; ``sleep`` defaults to the service's sleep.
    """

    def __init__(
        self,
        service: Service,
        *,
        run: RunJob = run_job,
        misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE,
        jobs: Sequence[JobSpec] | None = None,
        sleep: Sleep | None = None,
        max_sleep: float = DEFAULT_MAX_SLEEP,
        heartbeat: bool = True,
    ) -> None:
        self.service = service
        self.tz = service.settings.tz
        self.misfire_grace = misfire_grace
        # External jobs (cronkeeper.toml) only check in: nothing here fires them.
        specs = jobs if jobs is not None else service.settings.jobs
        self.specs = tuple(spec for spec in specs if spec.kind == "builtin")
        self.sleep = sleep or service.sleep
        self.max_sleep = max_sleep
        self._run = run
        try:
            self.crons = {spec.name: CronExpression.parse(spec.schedule) for spec in self.specs}
        except ValueError as exc:
            raise ConfigError(f"CRONKEEPER_SCHEDULES: {exc}") from None
        self._last_tick = service.clock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._periodic: list[_Periodic] = []
        self._schema_behind = False
        """Said once: every fire is refused until ``cronkeeper db upgrade`` (issue 20)."""
        beat_id, host, pid = scheduler_id()
        self.heartbeat = Heartbeat(beat_id, host, pid, self._last_tick, self._last_tick)
        """This scheduler's presence (issue 22), beaten every watch interval on this loop."""
        if heartbeat:  # off only for tests that count the loop's wakes
            self.every(service.settings.watch_every, "scheduler heartbeat", self._beat)
        self._beating = heartbeat

    def every(self, interval: timedelta, name: str, work: Work) -> None:
        """Also run ``work(now)`` every ``interval`` from this loop, first when it starts.

        For periodic duties that belong with the scheduler (a watchdog): same clock, same
        sleep, same lifecycle. A failure is logged and the next turn comes as planned.
        """
        if interval <= timedelta(0):
            raise ValueError(f"{name}: the interval must be positive, got {interval}")
        self._periodic.append(_Periodic(name, interval, work))

    async def _beat(self, now: datetime) -> None:
        """Record that this scheduler is alive (a database that fails is said, not raised:
        health then shows the scheduler silent, which is the truth others see)."""
        self.heartbeat = replace(self.heartbeat, last_beat_at=now)
        try:
            await self.service.heartbeats.beat(self.heartbeat)
        except StorageError as exc:
            log.warning("scheduler heartbeat not recorded: %s", self._why(exc))

    # -- firing ---------------------------------------------------------------------------

    async def fire(self, name: str, slot: datetime | None = None) -> RunOutcome | None:
        """Run ``name`` for ``slot`` (default: its latest slot).

        The report date comes from the slot, not the wall clock, so a fire delayed past
        midnight still collects the day it was scheduled for. Returns ``None`` when nothing
        ran (slot already served, job running elsewhere, or the run failed).
        """
        # Tracked, so that shutdown can cancel it (a task of ours already is).
        task = asyncio.current_task()
        own = task if task is not None and task not in self._tasks else None
        if own is not None:
            self._tasks.add(own)
        try:
            return await self._fire(name, slot)
        finally:
            if own is not None:
                self._tasks.discard(own)

    async def _fire(self, name: str, slot: datetime | None) -> RunOutcome | None:
        now = self.service.clock()
        slot = slot or self.crons[name].previous(now, self.tz) or now
        day = slot_day(slot, self.tz)
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
            result = await self._run(self.service, name, day, slot=slot)
        except SlotServed:
            log.info(
                "%s: its %s slot was served by another run while this one claimed the lease",
                name,
                slot.isoformat(),
            )
            return None
        except AlreadyRunning:
            log.info(
                "%s is already running elsewhere; its %s fire is skipped", name, slot.isoformat()
            )
            return None
        except SchemaBehind as exc:  # this replica's code is ahead of the database
            if not self._schema_behind:
                log.error("not scheduling until the schema is upgraded: %s", redact(str(exc)))
            self._schema_behind = True
            return None
        except StorageError as exc:  # the lease refused the run (permission, a bug)
            log.error("scheduled run of %s for %s: %s", name, day.isoformat(), redact(str(exc)))
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
        self._schema_behind = False
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
            return await self.service.ledger.slot_served(name, day, slot)
        except Exception as exc:  # the run itself copes with a database that is down
            log.warning("could not read the ledger before running %s: %s", name, self._why(exc))
            return False

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
        """Run every job with a slot since the previous tick (coalesced: once, for its latest
        slot) and the periodic work that is due; returns the fires once they have run.

        What the loop does each time it wakes (there, without waiting for the runs); tests
        may call it with a time of their own.
        """
        now = now or self.service.clock()
        fires, periodic = self._take_due(now)
        await self._run_due(now, fires, periodic)
        return fires

    def _take_due(self, now: datetime) -> tuple[list[Fire], list[_Periodic]]:
        """What is due at ``now``, marked as taken (no await: the loop cannot race itself)."""
        fires = due_fires(self.specs, self.tz, self._last_tick, now)
        self._last_tick = max(self._last_tick, now)
        periodic = [p for p in self._periodic if p.due is None or p.due <= now]
        for item in periodic:
            item.due = now + item.interval
        return fires, periodic

    async def _run_due(self, now: datetime, fires: list[Fire], periodic: list[_Periodic]) -> None:
        await asyncio.gather(
            *(self.fire(f.name, f.slot) for f in fires),
            *(self._periodic_turn(item, now) for item in periodic),
        )

    async def _periodic_turn(self, item: _Periodic, now: datetime) -> None:
        try:
            await item.work(now)
        except Exception as exc:
            log.error("%s failed: %s", item.name, self._why(exc), exc_info=True)

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
                    spec.name, slot_day(slot, self.tz)
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

    # -- the loop -------------------------------------------------------------------------

    def next_run_times(self, now: datetime | None = None) -> dict[str, datetime | None]:
        """Each job's next fire after ``now`` (default: the clock), in the configured zone."""
        now = now or self.service.clock()
        return {name: cron.next_after(now, self.tz) for name, cron in self.crons.items()}

    def next_wake(self, now: datetime) -> datetime | None:
        """When the loop has something to do next: a job's next slot or periodic work."""
        times = [t for t in self.next_run_times(max(now, self._last_tick)).values() if t]
        times += [p.due or now for p in self._periodic]
        return min(times, default=None)

    async def serve(self, *, catch_up: bool = True) -> None:
        """The firing loop, until cancelled: catch up (in the background), then sleep until
        the next slot and :meth:`tick`, over and over.

        Slots up to the start are the catch-up's, slots after it the ticks': the two never
        both take one slot. Each wake's fires run in a task of their own, so the loop wakes on
        time however long a job runs.
        """
        now = self.service.clock()
        self._last_tick = now
        for name, when in self.next_run_times(now).items():
            log.info(
                "scheduled %s (%s in %s): next run %s",
                name,
                self.crons[name].expr,
                self.tz,
                when.isoformat() if when else "never",
            )
        if catch_up:
            self._spawn(self.catch_up(now))
        while True:
            wake = self.next_wake(now)
            delay = self.max_sleep
            if wake is not None:
                delay = min(delay, (wake - now).total_seconds())
            if delay > 0:
                await self.sleep(delay)
            else:
                await asyncio.sleep(0)  # never a turn of the loop without a yield
            now = self.service.clock()
            fires, periodic = self._take_due(now)
            if fires or periodic:
                self._spawn(self._run_due(now, fires, periodic))

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("scheduler background work failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.done()

    async def start(self, *, catch_up: bool = True) -> None:
        """Start the loop (:meth:`serve`) as a task; returns at once."""
        if self.running:
            raise RuntimeError("the scheduler is already running")
        self._loop = asyncio.get_running_loop().create_task(self.serve(catch_up=catch_up))
        await asyncio.sleep(0)  # let it log its schedule and spawn the catch-up

    async def idle(self) -> None:
        """Wait until no fire, tick or catch-up of this scheduler is in flight."""
        me = asyncio.current_task()
        while tasks := [t for t in self._tasks if t is not me and not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self, *, wait: bool = False) -> None:
        """Stop firing. Running jobs are cancelled (their runs end ``error``, their leases are
        released) unless ``wait``, which lets them finish first."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        if not wait:
            for task in self._tasks:
                if task is not asyncio.current_task():
                    task.cancel()
        await self.idle()
        if loop is not None and self._beating:  # after the last beat: nothing undoes it
            try:  # a clean stop: "stopped", not "silent", on the page
                await self.service.heartbeats.stop(self.heartbeat.id, self.service.clock())
            except StorageError as exc:
                log.warning("scheduler stop not recorded: %s", self._why(exc))

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
