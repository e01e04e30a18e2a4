"""The running service's parts, built once from the settings and passed down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from functools import cached_property

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.clock import Clock, Sleep, utcnow
from cronkeeper.clock import sleep as real_sleep
from cronkeeper.config import JobSpec, Settings
from cronkeeper.errors import (
    PermissionDenied,
    SchemaBehind,
    StatementFailed,
    StorageError,
    first_line,
)
from cronkeeper.health import HealthReport, HealthRules, evaluate_health
from cronkeeper.http import RequestLimiter, RetryEvent, RetryPolicy
from cronkeeper.lease import Lease, LeaseManager
from cronkeeper.ledger import Ledger, RunRow
from cronkeeper.ledger.job_state import JobStates
from cronkeeper.ledger.outbox import Outbox, OutboxMessage
from cronkeeper.ledger.presence import Heartbeat, Heartbeats, presence
from cronkeeper.ledger.spool import Spool
from cronkeeper.records import JobState
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import create_engine, ensure_schema, is_sqlite
from cronkeeper.versions import settings_warnings

__all__ = ["HealthAnswer", "RunObserver", "Service"]

log = logging.getLogger("cronkeeper.service")


AbandonedMessages = Callable[[str, Sequence[str], datetime], Sequence[OutboxMessage]]
"""``(job, closed run ids, now)`` → the outbox rows that warn of them."""


class RunObserver:
    """Hooks for what happens around runs (metrics, alerts). Every hook is optional."""

    async def run_finished(self, run: RunRow, previous: RunRow | None) -> None:
        """A run ended; ``previous`` is the job's run before it (to notice recoveries)."""

    async def run_abandoned(self, cron_name: str, run_ids: list[str]) -> None:
        """Runs of a dead process were closed as ``error``."""

    async def job_resumed(self, cron_name: str) -> None:
        """A job's pause was ended (``resume``): its state is due a fresh look."""

    def retry(self, cron_name: str, event: RetryEvent) -> None:
        """An HTTP call is about to be retried."""

    def alert_delivery_failed(self, cron_name: str) -> None:
        """An alert about ``cron_name`` was not taken by the webhook (the outbox retries)."""


_HealthRead = tuple[dict[str, RunRow | None], dict[str, JobState], list[Heartbeat] | None]


@dataclass(frozen=True)
class HealthAnswer:
    """One evaluation of one health read, with its JSON body encoded once (orjson)."""

    read: _HealthRead
    report: HealthReport
    body: bytes
    evaluated_at: datetime
    until: datetime | None
    source_warnings: tuple[str, ...] = ()

    def holds(self, read: _HealthRead, now: datetime, source_warnings: tuple[str, ...]) -> bool:
        """Still the answer for ``read`` at ``now``: the same rows, the same stored source
        warnings, and no window, grace, runtime or pause ended since it was evaluated."""
        return (
            read is self.read
            and self.evaluated_at <= now
            and (self.until is None or now < self.until)
            and source_warnings == self.source_warnings
        )


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    ledger: Ledger
    leases: LeaseManager
    clock: Clock
    sleep: Sleep = real_sleep
    observers: list[RunObserver] = field(default_factory=list)
    abandoned_messages: AbandonedMessages | None = None
    """The outbox rows warning of runs closed as abandoned (the watchdog's, once installed):
    the ledger writes them in the closing transaction."""
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Awaited by :meth:`aclose` before the engine goes: work the service's users started on
    it (an app's triggered runs) must not outlive its connection pool."""
    source_warnings: list[str] = field(default_factory=list)
    """What the last look at the sources found (the watchdog's daily token check, at start
    and once a day): health ``warnings`` and the status page show it next to the versions'."""
    limiter: RequestLimiter = field(init=False)
    """Client-side API quotas, shared by every run of this process (Mixpanel's is hourly)."""
    _latest_in_flight: asyncio.Future[_HealthRead] | None = field(
        default=None, init=False, repr=False
    )
    _answer: HealthAnswer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.limiter = RequestLimiter(
            clock=self.clock, sleep=self.sleep, max_wait=self.settings.max_wait
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        sleep: Sleep = real_sleep,
        engine: AsyncEngine | None = None,
    ) -> Service:
        engine = engine or create_engine(
            settings.database_url, timeout=settings.ledger_timeout, concurrency=settings.concurrency
        )
        breaker = Breaker()  # shared: one unanswered call spares the run's other ones
        ledger = Ledger(
            engine,
            timeout=settings.ledger_timeout,
            clock=clock,
            redactor=settings.redactor,
            breaker=breaker,
            spool=Spool.for_database(settings.database_url, settings.spool_dir),
        )
        leases = LeaseManager(
            engine,
            ttl=settings.lease_ttl,
            timeout=settings.ledger_timeout,
            breaker=breaker,
        )
        return cls(settings, engine, ledger, leases, clock, sleep)

    @cached_property
    def job_states(self) -> JobStates:
        """Alert states and pauses (``job_state``), on the ledger's engine and breaker."""
        return JobStates(
            self.engine, timeout=self.settings.ledger_timeout, breaker=self.ledger.breaker
        )

    @cached_property
    def health_rules(self) -> HealthRules:
        return HealthRules.from_settings(self.settings)

    @cached_property
    def alert_outbox(self) -> Outbox:
        """Alert messages until delivered (``alert_outbox``), on the ledger's engine and breaker."""
        return Outbox(
            self.engine, timeout=self.settings.ledger_timeout, breaker=self.ledger.breaker
        )

    @cached_property
    def heartbeats(self) -> Heartbeats:
        """Scheduler presence (``scheduler_heartbeats``), on the ledger's engine and breaker."""
        return Heartbeats(
            self.engine, timeout=self.settings.ledger_timeout, breaker=self.ledger.breaker
        )

    @property
    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            max_retries=s.max_retries,
            timeout=s.http_timeout,
            max_wait=s.max_wait,
            max_body=s.max_response_bytes,
            throttle_block=s.meta_throttle_block,
        )

    def warnings(self) -> list[str]:
        """The health JSON's ``warnings``: pinned versions near or past their end, then the
        stored source warnings (a Meta token expiring within 14 days)."""
        return settings_warnings(self.settings, self.clock()) + list(self.source_warnings)

    async def prepare(self, *, announce: bool = True) -> bool:
        """Create the SQLite schema on first use; on PostgreSQL, report a stale one; record
        the run ends spooled while the database was down.

        Never raises: with the database down the jobs still run (and the ledger logs what it
        could not record), and health answers "database unavailable". Returns whether the
        database answered.
        """
        for warning in settings_warnings(self.settings, self.clock()):
            log.warning("%s", warning)
        # Longer than a ledger call: the first use of SQLite creates the schema.
        seconds = max(self.settings.ledger_timeout, 30)
        bounded = BoundedCall(
            seconds, self.ledger.breaker, self.settings.redactor, local=is_sqlite(self.engine)
        )
        try:
            await bounded(lambda: ensure_schema(self.engine))
        except StorageError as exc:
            # ``announce=False``: a CLI command that says so itself in its one error line.
            log.log(
                logging.ERROR if announce else logging.DEBUG,
                "database unavailable at start-up: %s",
                first_line(exc, type(exc).__name__),
            )
            return False
        await self.ledger.replay_spool()
        return True

    async def health(self) -> HealthReport:
        """Raises :class:`~cronkeeper.errors.StorageError` when the database cannot answer."""
        return (await self.health_answer()).report

    async def health_answer(self) -> HealthAnswer:
        """The health report and its JSON body; raises
        :class:`~cronkeeper.errors.StorageError` when the database cannot answer.

        Concurrent callers share one in-flight query (single flight): under a burst of
        health checks the database sees one query at a time, and every caller still gets an
        answer no older than the query it joined. Each caller's ``now`` is checked against
        the shared evaluation: the callers of one read share one evaluation and one encoded
        body (with the API versions' ``warnings``) until a window, grace, runtime or pause ends
        (:attr:`HealthReport.stable_until`) or the UTC day does; then the next caller
        evaluates again.
        """
        specs = self.settings.monitored
        if self._latest_in_flight is None:
            self._latest_in_flight = asyncio.ensure_future(self._read_latest(specs))
            # Retrieved here too, in case every caller was cancelled before it finished.
            self._latest_in_flight.add_done_callback(lambda f: f.cancelled() or f.exception())
        flight = self._latest_in_flight
        read = await asyncio.shield(flight)
        now = self.clock()
        answer = self._answer
        stored = tuple(self.source_warnings)
        if answer is not None and answer.holds(read, now, stored):
            return answer
        latest, states, beats = read
        report = evaluate_health(specs, latest, now, states, rules=self.health_rules)
        if beats is not None:  # issue 22: is a scheduler alive?
            report = replace(report, scheduler=presence(beats, now, self.settings.watch_every))
        # The API versions' warnings change with the UTC day only, the stored source warnings
        # when the watchdog's token check says so, the scheduler's when its heartbeat ages:
        # the body holds until one of them changes.
        warnings = settings_warnings(self.settings, now) + list(stored) + report.warnings
        body = report.as_json() | {"warnings": warnings}
        midnight = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), UTC)
        until = min(report.stable_until or midnight, midnight)
        if report.scheduler is not None and report.scheduler.changes_at is not None:
            until = min(until, report.scheduler.changes_at)  # alive → silent
        answer = HealthAnswer(read, report, orjson.dumps(body), now, until, stored)
        self._answer = answer
        return answer

    async def _read_latest(self, specs: tuple[JobSpec, ...]) -> _HealthRead:
        names = [spec.name for spec in specs]
        try:
            try:
                # One statement on one connection (issue 16): runs, states and beats.
                return await self.ledger.health_read(names)
            except (SchemaBehind, PermissionDenied, StatementFailed) as exc:
                # The database answered but refused it (a schema before 0007 or 0012): the
                # three reads apart answer what they can. Not on an outage: they would only
                # wait out the timeout again.
                log.debug("health read apart: %s", first_line(exc, type(exc).__name__))
            return await self._read_apart(names)
        finally:
            self._latest_in_flight = None

    async def _read_apart(self, names: list[str]) -> _HealthRead:
        """The health read as three reads at once, each failing alone."""
        latest, states, beats = await asyncio.gather(
            self.ledger.latest_runs(names),
            self.job_states.read(names),
            self.heartbeats.newest(),
            return_exceptions=True,
        )
        if isinstance(latest, BaseException):
            raise latest
        heard: list[Heartbeat] | None = None
        if isinstance(beats, BaseException):
            # Health still answers (e.g. a schema not yet at 0012): the scheduler is unknown.
            log.warning(
                "health without scheduler presence: %s",
                self.settings.redactor(first_line(beats, type(beats).__name__)),
            )
        else:
            heard = beats
        if isinstance(states, BaseException):
            # Health still answers from the ledger (e.g. a schema not yet at 0007).
            log.warning(
                "health without pauses and volume verdicts: %s",
                self.settings.redactor(first_line(states, type(states).__name__)),
            )
            states = {}
        return latest, states, heard

    async def close_abandoned(self, lease: Lease, *, reason: str) -> list[str]:
        """As the holder of ``lease``, close the job's runs whose holder is gone (see
        :meth:`~cronkeeper.ledger.Ledger.close_abandoned`: fenced by the lease, a run without
        a lease once silent for its TTL), their warning queued in the same transaction when
        the watchdog is installed. Raises :class:`~cronkeeper.errors.LeaseLost`."""
        warn, now, name = self.abandoned_messages, self.clock(), lease.job_name
        return await self.ledger.close_abandoned(
            name,
            reason=reason,
            fence=lease.fence,
            stale_after=self.leases.ttl,
            messages=None if warn is None else lambda ids: warn(name, ids, now),
        )

    async def notify(self, hook: Callable[[RunObserver], Awaitable[None]]) -> None:
        """Call a hook on every observer; an observer's failure never reaches the job."""
        for observer in self.observers:
            try:
                await hook(observer)
            except Exception:
                log.exception("run observer %s failed", type(observer).__name__)

    async def aclose(self) -> None:
        for close in self.closers:
            await close()
        await self.engine.dispose()
