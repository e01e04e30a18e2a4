"""The ledger: ``cron_runs`` rows written around every job run, and read back by everyone.

The only code that runs statements on ``cron_runs`` (besides pruning, in
:mod:`cronkeeper.ledger.retention`): health, the API, the status page, metrics, the scheduler
and backfills all read through :class:`Ledger`, whose statements live in
:mod:`cronkeeper.ledger.reads`.

Recording history must never stop the work: every write is bounded by a timeout and a
failure is logged and swallowed. A start or an end the database could not take *yet*
(unreachable, SQLite locked) is spooled (:mod:`.spool`) and recorded at the next contact;
without a spool ``start_cron_run`` returns ``None`` and ``complete_cron_run(None, …)`` does
nothing. Every read goes through one helper, bounded by
the same timeout and breaker, and raises :class:`~cronkeeper.errors.StorageError` instead,
because there the caller must answer 500 (or decide what to do without the ledger).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Insert, Row, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cronkeeper.clock import Clock, utcnow
from cronkeeper.config import JOB_NAMES
from cronkeeper.errors import (
    LEASE_LOST,
    DatabaseLocked,
    DatabaseUnreachable,
    LeaseLost,
    StorageError,
)
from cronkeeper.lease import Fence
from cronkeeper.ledger.health_read import HealthRead, health_read_statement, split_health_rows
from cronkeeper.ledger.models import FINAL_STATUSES, RunRow, RunSummary, Skipped, summarize
from cronkeeper.ledger.outbox import OutboxMessage, insert_messages
from cronkeeper.ledger.reads import (
    abandoned_statement,
    count_statement,
    done_dates_statement,
    last_ok_statement,
    last_runs_statement,
    last_started_statement,
    last_success_statement,
    latest_runs_statement,
    recent_runs_statement,
    row_to_run,
    run_statement,
    started_since_statement,
    successes_statement,
)
from cronkeeper.ledger.spool import Spool, SpooledEnd, SpooledStart, replay
from cronkeeper.redact import Redactor
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import is_sqlite, run_read
from cronkeeper.storage.schema import RUN_STATUSES, cron_runs

__all__ = ["Ledger", "RunTracker"]

log = logging.getLogger("cronkeeper.ledger")
T = TypeVar("T")


@dataclass
class RunTracker:
    """What a job reports while it runs; turned into the run's final row on exit."""

    cron_name: str
    run_id: str | None
    unit_label: str = "units"
    records_count: int = 0
    units_stored: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the operator must know of a run even when it succeeded (figures rewritten …)."""
    unit_notes: list[Skipped] = field(default_factory=list)
    """Notes about units (e.g. stored details used instead of fresh ones): grouped by cause
    like skips under ``notes:``; they do not change the status."""
    summary: RunSummary | None = None
    """Set when the run ended: what was (or would have been) written to the ledger."""
    retries: dict[str, int] = field(default_factory=dict)
    """HTTP retries by reason, recorded with the run's end (``/metrics`` counts them whichever
    process ran the job)."""

    def retried(self, reason: str) -> None:
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def stored(self, records: int = 0) -> None:
        """One unit (account, project, page) stored with ``records`` rows."""
        self.units_stored += 1
        self.records_count += records

    def skip(self, unit: str, reason: str, *, inactive: bool = False) -> None:
        """``unit`` could not be stored; ``inactive``: it is inactive at the source, so this
        is reported but is not a failure of the run."""
        self.skipped.append(Skipped(unit, reason, inactive))

    def note_unit(self, unit: str, text: str) -> None:
        """A note about one unit that was stored anyway (grouped with its likes)."""
        self.unit_notes.append(Skipped(unit, text))

    def note(self, text: str) -> None:
        """Add one line to the run's message, whatever its status."""
        self.notes.append(text)


def _retry_counts(text: str | None) -> dict[str, int]:
    """``retry_counts`` as stored (JSON), or nothing for a value this version cannot read."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v > 0}


def _later(exc: StorageError) -> bool:
    """Whether the database will take this write later: it was unreachable, or SQLite's lock
    was held by another writer past the timeout. A refusal (a bug, a permission) would be
    refused again: it is logged, not spooled."""
    return isinstance(exc, DatabaseUnreachable | DatabaseLocked)


def insert_running(
    run_id: str,
    cron_name: str,
    started_at: datetime,
    report_date: date | None,
    lease_epoch: int | None = None,
) -> Insert:
    """The one statement that opens a run: a ``running`` row started (and created) now, under
    the job's lease at ``lease_epoch`` (``None``: without one)."""
    return cron_runs.insert().values(
        id=run_id,
        cron_name=cron_name,
        started_at=started_at,
        status="running",
        records_count=0,
        created_at=started_at,
        report_date=report_date,
        lease_epoch=lease_epoch,
    )


class Ledger:
    """``start_cron_run`` / ``complete_cron_run`` and the queries health needs."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        timeout: float = 5.0,
        clock: Clock = utcnow,
        redactor: Redactor | None = None,
        breaker: Breaker | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.clock = clock
        self.redactor = redactor or Redactor()
        self.breaker = breaker or Breaker()
        self.call = BoundedCall(timeout, self.breaker, self.redactor, local=is_sqlite(engine))
        """Every statement of the ledger goes through it (:mod:`cronkeeper.storage.bounded`)."""
        self.spool = spool
        """Where run starts and ends the database could not take wait for it (:mod:`.spool`)."""
        self._spooled_starts: set[str] = set()
        """Runs of this process whose start waits in the spool (until their end is written)."""

    async def _bounded(self, work: Callable[[], Awaitable[T]], *, gated: bool = False) -> T:
        return await self.call(work, gated=gated)

    # -- writes: never raise ------------------------------------------------------------

    async def start_cron_run(
        self, cron_name: str, *, report_date: date | None = None, lease_epoch: int | None = None
    ) -> str | None:
        """Insert a ``running`` row; its id, or ``None`` if the database did not take it and
        the start could not be spooled either."""
        run_id = str(uuid.uuid4())
        now = self.clock()

        async def insert() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(insert_running(run_id, cron_name, now, report_date, lease_epoch))

        try:
            await self._bounded(insert, gated=True)
        except StorageError as exc:
            kept, spooled = False, ""
            if self.spool is not None and _later(exc):
                start = SpooledStart(run_id, cron_name, now, report_date, lease_epoch)
                kept, spooled = await self._spool(start)
            log.error(
                "could not record the start of %s (the job runs anyway): %s%s",
                cron_name,
                exc,
                spooled,
            )
            if not kept:
                return None
            self._spooled_starts.add(run_id)
        return run_id

    async def beat(self, run_id: str | None) -> bool:
        """A run without a lease is alive: move its ``heartbeat_at`` to now. Whether the row
        took it; never raises (a run's work never waits on its bookkeeping)."""
        if run_id is None:
            return False
        now = self.clock()

        async def touch() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(cron_runs)
                    .where(cron_runs.c.id == run_id, cron_runs.c.status == "running")
                    .values(heartbeat_at=now)
                )
                return int(result.rowcount)

        try:
            return await self._bounded(touch, gated=True) == 1
        except StorageError as exc:
            log.warning("could not record that run %s is alive: %s", run_id, type(exc).__name__)
            return False

    @asynccontextmanager
    async def beating(self, run_id: str | None, every: float) -> AsyncIterator[None]:
        """:meth:`beat` now and every ``every`` seconds while the block runs: a run without a
        lease says it is alive, so a guarded run does not close it as abandoned while it
        works (issue 20.2)."""

        async def beat() -> None:
            while True:
                await self.beat(run_id)
                await asyncio.sleep(every)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def complete_cron_run(
        self,
        run_id: str | None,
        status: str,
        records_count: int,
        error_message: str | None = None,
        *,
        cron_name: str | None = None,
        retries: Mapping[str, int] | None = None,
    ) -> bool:
        """Close a run. Returns whether the row was updated; never raises for the database.

        ``retries`` (by reason) are stored with the end; a spooled end goes without them.

        When the database cannot be reached the end goes to the spool (if there is one) and
        is recorded at the next contact; ``cron_name`` only names the run in the logs. The
        end of a run whose start waits in the spool joins it there, and both are recorded
        at once if the database answers again.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        if run_id is None:
            return False
        message = self.redactor.message(error_message) if error_message else None
        finished_at = self.clock()

        async def close() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(cron_runs)
                    .where(cron_runs.c.id == run_id)
                    .values(
                        status=status,
                        records_count=max(0, records_count),
                        error_message=message,
                        finished_at=finished_at,
                        retry_counts=json.dumps(dict(retries), sort_keys=True) if retries else None,
                    )
                )
                return result.rowcount

        end = SpooledEnd(run_id, cron_name, status, max(0, records_count), message, finished_at)
        start_spooled = run_id in self._spooled_starts
        self._spooled_starts.discard(run_id)
        try:
            # Not gated: a run that was recorded must be closed if at all possible. One whose
            # start waits in the spool is gated: while the database is known down, its end
            # joins the start there at once instead of costing the run a second timeout.
            closed = await self._bounded(close, gated=start_spooled) == 1
        except StorageError as exc:
            spooled = ""
            if self.spool is not None and _later(exc):
                _, spooled = await self._spool(end)
            log.error(
                "could not record the end of run %s as %s: %s%s",
                run_id,
                status,
                exc,
                spooled,
            )
            return False
        if closed or not start_spooled or self.spool is None:
            return closed
        # The database answers again, but this run's start is still in the spool: the end
        # joins it there, and the replay records both (or keeps both for the next contact).
        kept, spooled = await self._spool(end)
        if kept and run_id in await self.replay_spool():
            return True
        log.error("could not record run %s of %s yet%s", run_id, cron_name or "?", spooled)
        return False

    async def _spool(self, record: SpooledEnd | SpooledStart) -> tuple[bool, str]:
        """Keep ``record`` on disk for :meth:`replay_spool`; whether it was kept, and what to
        add to the log line."""
        assert self.spool is not None
        try:
            path = await asyncio.to_thread(self.spool.write, record)
        except OSError as exc:
            return False, f"; and it could not be spooled either ({exc})"
        return True, f"; kept in {path}, recorded at the next contact with the database"

    async def replay_spool(self) -> list[str]:
        """Record the run starts and ends spooled while the database was down; the ids
        closed."""
        if self.spool is None:
            return []
        return await replay(self.spool, self.engine, self._bounded, self.clock)

    async def close_abandoned(
        self,
        cron_name: str,
        *,
        reason: str,
        fence: Fence | None = None,
        stale_after: float = 60.0,
        messages: Callable[[list[str]], Sequence[OutboxMessage]] | None = None,
    ) -> list[str]:
        """Close the ``running`` rows of ``cron_name`` whose holder is gone as ``error``; ids.

        Called by the holder of the job's lease before it starts its own run: while it holds
        the lease no other *guarded* run of the job is alive, so a row started under another
        epoch of the lease belongs to a process that died (killed, OOM, host lost) or lost
        its lease, and would otherwise look stuck forever. A row started without a lease (the
        database could not be asked) is closed only once its heartbeat (or, lacking one, its
        start) is ``stale_after`` seconds old: it may still be alive (:meth:`beat`).
        ``fence`` is checked in the same transaction: a holder that lost its lease meanwhile
        closes nothing (it would close the new holder's run) and gets
        :class:`~cronkeeper.errors.LeaseLost`. ``messages`` (the warning's outbox rows for
        the closed ids) are written in the same transaction: closed runs always leave their
        warning to deliver (issue 20.3).
        """

        # A run whose end waits in the local spool finished: record it, never abandon it.
        await self.replay_spool()
        spooled = sorted(await asyncio.to_thread(self.spool.run_ids)) if self.spool else []

        now = self.clock()

        async def close() -> list[str]:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    abandoned_statement(
                        cron_name,
                        finished_at=now,
                        reason=reason,
                        keep=spooled,
                        epoch=None if fence is None else fence.epoch,
                        stale_before=now - timedelta(seconds=stale_after),
                    )
                )
                closed = [str(r[0]) for r in result]
                if fence is not None:
                    await fence.check(conn)
                if closed and messages is not None:
                    await insert_messages(conn, messages(closed))
                return closed

        try:
            return await self._bounded(close, gated=True)
        except LeaseLost:
            raise
        except StorageError as exc:
            log.error("could not close abandoned runs of %s: %s", cron_name, exc)
            return []

    @asynccontextmanager
    async def track(
        self,
        cron_name: str,
        *,
        unit_label: str = "units",
        report_date: date | None = None,
        lease_epoch: int | None = None,
    ) -> AsyncIterator[RunTracker]:
        """Record one run of ``cron_name`` around the block.

        Ends ``success``/``partial``/``error`` from what the block reported, or ``error`` with
        the exception text if it raised (the exception propagates; the ledger adds none of
        its own). ``report_date`` is the date the run collects (backfills skip done dates).
        """
        run_id = await self.start_cron_run(
            cron_name, report_date=report_date, lease_epoch=lease_epoch
        )
        tracker = RunTracker(cron_name=cron_name, run_id=run_id, unit_label=unit_label)
        try:
            yield tracker
        except BaseException as exc:
            text = str(exc) or type(exc).__name__
            kind = type(exc).__name__
            if isinstance(exc, asyncio.CancelledError) and text == LEASE_LOST:
                kind = "LeaseLost"  # the lease's renewer stopped the run (cronkeeper.lease)
            elif isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                text = "the run was cancelled before it finished"
            message = self.redactor.message(f"{kind}: {text}")
            tracker.summary = RunSummary("error", tracker.records_count, message)
            await asyncio.shield(
                self.complete_cron_run(
                    run_id,
                    "error",
                    tracker.records_count,
                    message,
                    cron_name=cron_name,
                    retries=tracker.retries,
                )
            )
            raise
        summary = summarize(
            records_count=tracker.records_count,
            units_stored=tracker.units_stored,
            skipped=tracker.skipped,
            unit_label=unit_label,
            notes=tracker.notes,
            unit_notes=tracker.unit_notes,
        )
        summary = RunSummary(
            summary.status,
            summary.records_count,
            self.redactor.message(summary.error_message) if summary.error_message else None,
        )
        tracker.summary = summary
        await self.complete_cron_run(
            run_id,
            summary.status,
            summary.records_count,
            summary.error_message,
            cron_name=cron_name,
            retries=tracker.retries,
        )

    # -- reads: raise StorageError ------------------------------------------------------

    async def _read(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        failure: str = "database unavailable",
    ) -> T:
        """The one way the ledger reads: a read connection, the timeout and the breaker.

        Not gated by the breaker: a read answers a person, a monitor or a decision that must
        know, so it always tries (and its success closes the breaker again). Any failure is a
        :class:`StorageError` saying ``failure`` and the first line of the cause, redacted.
        """

        async def query() -> T:
            return await run_read(self.engine, work)  # retried once on a dropped connection

        try:
            return await self._bounded(query)
        except StorageError as exc:
            raise type(exc)(f"{failure} ({exc})") from None

    async def _runs(self, *statements: Any) -> list[list[RunRow]]:
        """The rows of each statement, in order, on one connection within one timeout."""

        async def fetch(conn: AsyncConnection) -> list[list[RunRow]]:
            return [[row_to_run(r) for r in await conn.execute(s)] for s in statements]

        return await self._read(fetch)

    async def latest_runs(self, cron_names: Sequence[str]) -> dict[str, RunRow | None]:
        """The latest run of each job, in one statement and one round trip.

        One ``ORDER BY started_at DESC LIMIT 1`` per job (:func:`latest_runs_statement`):
        each a single descent of ``idx_cron_runs_name_started``, so the cost depends on the
        number of jobs, not on the size of the history. A health request reads it within
        :meth:`health_read`.
        """
        latest: dict[str, RunRow | None] = dict.fromkeys(cron_names)
        if not cron_names:
            return latest
        [rows] = await self._runs(latest_runs_statement(cron_names))
        for row in rows:
            latest[row.cron_name] = row
        return latest

    async def health_read(self, cron_names: Sequence[str]) -> HealthRead:
        """What a health request reads, in one statement on one connection: each job's
        latest run, each job's state (``job_state``) and the newest scheduler beats (see
        :mod:`~cronkeeper.ledger.health_read`). Raises
        :class:`~cronkeeper.errors.SchemaBehind` when a table or column is missing (a schema
        before 0007 or 0012): the three reads apart then answer what they can."""
        statement = health_read_statement(cron_names)

        async def fetch(conn: AsyncConnection) -> HealthRead:
            return split_health_rows(await conn.execute(statement), cron_names)

        return await self._read(fetch)

    async def last_runs(self, cron_names: Sequence[str], per_job: int) -> list[RunRow]:
        """The newest ``per_job`` runs of each job (see :func:`last_runs_statement`)."""
        [rows] = await self._runs(last_runs_statement(cron_names, per_job))
        return rows

    async def successes(
        self, cron_name: str, since: datetime | None, *, limit: int
    ) -> list[RunRow]:
        """The newest ``limit`` successes and partial runs of a job since ``since`` (a volume
        baseline)."""
        [rows] = await self._runs(successes_statement(cron_name, since, limit))
        return rows

    async def recent_runs(
        self,
        *,
        cron_name: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cron_names: Sequence[str] = JOB_NAMES,
    ) -> list[RunRow]:
        """Newest first, of one job or of ``cron_names`` (cronkeeper's jobs), optionally of
        one status. Index walks per job (see :func:`recent_runs_statement`): the cost does not
        grow with the history; a status filter looks at the newest ``FILTER_DEPTH`` runs of
        each job."""
        names = [cron_name] if cron_name is not None else list(cron_names)
        [rows] = await self._runs(self._recent(names, limit, status))
        return rows

    async def history(
        self,
        cron_names: Sequence[str],
        *,
        per_job: int,
        recent_from: Sequence[str],
        limit: int,
        status: str | None = None,
    ) -> tuple[list[RunRow], list[RunRow]]:
        """What the status page shows, on one connection within one timeout: the newest
        ``per_job`` runs of each of ``cron_names``, and the newest ``limit`` runs of
        ``recent_from`` (optionally of one ``status``), newest first."""
        last, recent = await self._runs(
            last_runs_statement(cron_names, per_job), self._recent(recent_from, limit, status)
        )
        return last, recent

    @staticmethod
    def _recent(cron_names: Sequence[str], limit: int, status: str | None) -> Any:
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, not {status!r}")
        return recent_runs_statement(cron_names, limit, status=status)

    async def get_run(self, run_id: str) -> RunRow | None:
        try:
            uuid.UUID(run_id)
        except ValueError:
            return None
        [rows] = await self._runs(run_statement(run_id))
        return rows[0] if rows else None

    async def count_runs(self) -> int:
        async def fetch(conn: AsyncConnection) -> int:
            return int((await conn.execute(count_statement())).scalar_one())

        return await self._read(fetch)

    async def last_successes(self, cron_names: Sequence[str]) -> dict[str, datetime | None]:
        """When each job last ended ``success`` (its ``finished_at``), ``None`` if it never did."""
        found: dict[str, datetime | None] = dict.fromkeys(cron_names)
        if not cron_names:
            return found

        async def fetch(conn: AsyncConnection) -> list[Row[Any]]:
            return list(await conn.execute(last_success_statement(cron_names)))

        for row in await self._read(fetch):
            found[row.cron_name] = row.finished_at or row.started_at
        return found

    async def last_oks(self, cron_names: Sequence[str]) -> dict[str, list[RunRow]]:
        """Each job's newest ``success`` and ``partial`` runs, newest first (see
        :func:`~cronkeeper.ledger.reads.last_ok_statement`)."""
        found: dict[str, list[RunRow]] = {name: [] for name in cron_names}
        if not cron_names:
            return found

        async def fetch(conn: AsyncConnection) -> list[Row[Any]]:
            return list(await conn.execute(last_ok_statement(cron_names)))

        for row in await self._read(fetch):
            found[row.cron_name].append(row_to_run(row))
        for runs in found.values():
            runs.sort(key=lambda r: r.started_at, reverse=True)
        return found

    async def started_since(
        self, cron_names: Sequence[str], since: datetime
    ) -> list[tuple[str, str, dict[str, int]]]:
        """``(job, status, retries by reason)`` of every run started since ``since``."""
        if not cron_names:
            return []

        async def fetch(conn: AsyncConnection) -> list[Row[Any]]:
            return list(await conn.execute(started_since_statement(cron_names, since)))

        return [
            (row.cron_name, row.status, _retry_counts(row.retry_counts))
            for row in await self._read(fetch)
        ]

    async def slot_served(self, cron_name: str, day: date, slot: datetime) -> bool:
        """Whether a run of ``cron_name`` for ``day`` started at or after the scheduler's
        ``slot`` (the slot was served, by this replica or another)."""
        started = await self.last_started_for(cron_name, day)
        return started is not None and started >= slot

    async def last_started_for(self, cron_name: str, day: date) -> datetime | None:
        """When the latest run of ``cron_name`` for report date ``day`` started (runs without
        a report date count too; see :func:`last_started_statement`)."""

        async def fetch(conn: AsyncConnection) -> datetime | None:
            started: datetime | None = (
                await conn.execute(last_started_statement(cron_name, day))
            ).scalar_one_or_none()
            return started

        return await self._read(fetch)

    async def done_dates(
        self, cron_name: str, since: date, until: date, *, with_rows: bool = False
    ) -> set[date]:
        """The dates in ``[since, until]`` that ``cron_name`` has a ``success`` run recorded for
        (``with_rows``: one that wrote at least one row, as a benchmarks week must).

        Raises :class:`StorageError` when the ledger cannot be read: without it nothing can be
        skipped, and a backfill that cannot record its runs should not start either.
        """

        async def fetch(conn: AsyncConnection) -> set[date]:
            result = await conn.execute(
                done_dates_statement(cron_name, since, until, with_rows=with_rows)
            )
            return {row[0] for row in result}

        return await self._read(
            fetch, failure="database unavailable, cannot tell which dates are done"
        )
