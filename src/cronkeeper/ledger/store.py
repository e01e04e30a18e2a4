"""The ledger: ``cron_runs`` rows written around every job run, and read back for health.

Recording history must never stop the work: every write is bounded by a timeout and a
failure is logged and swallowed (``start_cron_run`` then returns ``None``, and
``complete_cron_run(None, …)`` does nothing). Reads for health and the API raise
:class:`~cronkeeper.errors.StorageError` instead, because there the caller must answer 500.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import CompoundSelect, Row, Select, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.clock import Clock, utcnow
from cronkeeper.config import JOB_NAMES
from cronkeeper.errors import StorageError
from cronkeeper.ledger.models import FINAL_STATUSES, RunRow, RunSummary, Skipped, summarize
from cronkeeper.redact import Redactor, truncate
from cronkeeper.storage.breaker import Breaker, BreakerOpen
from cronkeeper.storage.schema import RUN_STATUSES, cron_runs

__all__ = [
    "FILTER_DEPTH",
    "RUN_COLUMNS",
    "Ledger",
    "RunTracker",
    "last_runs_statement",
    "latest_runs_statement",
    "recent_runs_statement",
    "row_to_run",
]

log = logging.getLogger("cronkeeper.ledger")
T = TypeVar("T")
RUN_COLUMNS = (
    cron_runs.c.id,
    cron_runs.c.cron_name,
    cron_runs.c.started_at,
    cron_runs.c.finished_at,
    cron_runs.c.status,
    cron_runs.c.records_count,
    cron_runs.c.error_message,
    cron_runs.c.report_date,
)


def row_to_run(row: Row[Any]) -> RunRow:
    return RunRow(
        id=str(row.id),
        cron_name=row.cron_name,
        started_at=row.started_at,
        finished_at=row.finished_at,
        status=row.status,
        records_count=row.records_count or 0,
        error_message=row.error_message,
        report_date=row.report_date,
    )


def last_runs_statement(cron_names: Sequence[str], per_job: int) -> CompoundSelect[Any]:
    """The newest ``per_job`` runs of each job: one ``ORDER BY started_at DESC LIMIT n`` arm
    per job, glued with ``UNION ALL``; each arm is a short walk down
    ``idx_cron_runs_name_started``, so the cost does not grow with the history."""
    if not cron_names:
        raise ValueError("at least one job name is needed")
    arms = [
        select(*RUN_COLUMNS)
        .where(cron_runs.c.cron_name == name)
        .order_by(cron_runs.c.started_at.desc())
        .limit(per_job)
        .subquery(f"j{i}")
        for i, name in enumerate(cron_names)
    ]
    return union_all(*(select(arm) for arm in arms))


FILTER_DEPTH = 1000
"""How far back a status filter looks, in runs per job."""


def recent_runs_statement(
    cron_names: Sequence[str], limit: int, *, status: str | None = None, depth: int = FILTER_DEPTH
) -> Select[Any]:
    """The newest ``limit`` runs across ``cron_names``, optionally of one ``status``.

    Not a plain ``ORDER BY started_at DESC LIMIT n`` over the table: no index leads with
    ``started_at``, so that would sort the whole history. The newest ``limit`` overall are
    among the newest ``limit`` of each job, and each of those is an index walk.

    A status filter looks among the newest ``depth`` runs of each job (about three years of
    a daily job): a rare status filtered over the whole history would make the database read
    every run of the job to find fifty, and the cost of the page would grow with the history.
    """
    per_job = limit if status is None else max(limit, depth)
    arms = last_runs_statement(cron_names, per_job).subquery("recent")
    statement = select(arms)
    if status is not None:
        statement = statement.where(arms.c.status == status)
    return statement.order_by(arms.c.started_at.desc()).limit(limit)


def latest_runs_statement(cron_names: Sequence[str]) -> CompoundSelect[Any]:
    """The health query: the latest run of each job, in one statement.

    Built once per set of job names: constructing it anew on every health request cost more
    CPU (SQLAlchemy's cache key and result metadata) than running it.
    """
    return _latest_runs_statement(tuple(cron_names))


@functools.lru_cache(maxsize=64)
def _latest_runs_statement(cron_names: tuple[str, ...]) -> CompoundSelect[Any]:
    return last_runs_statement(cron_names, 1)


@dataclass
class RunTracker:
    """What a job reports while it runs; turned into the run's final row on exit."""

    cron_name: str
    run_id: str | None
    unit_label: str = "units"
    records_count: int = 0
    units_stored: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    summary: RunSummary | None = None
    """Set when the run ended: what was (or would have been) written to the ledger."""

    def stored(self, records: int = 0) -> None:
        """One unit (account, project, page) stored with ``records`` rows."""
        self.units_stored += 1
        self.records_count += records

    def skip(self, unit: str, reason: str) -> None:
        self.skipped.append(Skipped(unit, reason))


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
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.clock = clock
        self.redactor = redactor or Redactor()
        self.breaker = breaker or Breaker()

    async def _bounded(self, work: Callable[[], Awaitable[T]], *, gated: bool = False) -> T:
        return await self.breaker.call(work, seconds=self.timeout, gated=gated)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, BreakerOpen):
            return str(exc)
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout:g} s"
        # SQLAlchemy messages carry the statement and its parameters; the first line is enough.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return truncate(self.redactor(f"{type(exc).__name__}: {first}"), 500)

    # -- writes: never raise ------------------------------------------------------------

    async def start_cron_run(
        self, cron_name: str, *, report_date: date | None = None
    ) -> str | None:
        """Insert a ``running`` row; its id, or ``None`` if the database did not take it."""
        run_id = str(uuid.uuid4())
        now = self.clock()

        async def insert() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    cron_runs.insert().values(
                        id=run_id,
                        cron_name=cron_name,
                        started_at=now,
                        status="running",
                        records_count=0,
                        created_at=now,
                        report_date=report_date,
                    )
                )

        try:
            await self._bounded(insert, gated=True)
        except Exception as exc:
            log.error(
                "could not record the start of %s (the job runs anyway): %s",
                cron_name,
                self._describe(exc),
            )
            return None
        return run_id

    async def complete_cron_run(
        self,
        run_id: str | None,
        status: str,
        records_count: int,
        error_message: str | None = None,
    ) -> bool:
        """Close a run. Returns whether the row was updated; never raises for the database."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        if run_id is None:
            return False
        message = self.redactor.message(error_message) if error_message else None

        async def close() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(cron_runs)
                    .where(cron_runs.c.id == run_id)
                    .values(
                        status=status,
                        records_count=max(0, records_count),
                        error_message=message,
                        finished_at=self.clock(),
                    )
                )
                return result.rowcount

        try:
            # Not gated: a run that was recorded must be closed if at all possible.
            return await self._bounded(close) == 1
        except Exception as exc:
            log.error(
                "could not record the end of run %s as %s: %s",
                run_id,
                status,
                self._describe(exc),
            )
            return False

    async def close_abandoned(self, cron_name: str, *, reason: str) -> list[str]:
        """Close every ``running`` row of ``cron_name`` as ``error``; their ids.

        Called by the holder of the job's lease before it starts its own run: while it holds
        the lease no other run of the job is alive, so any row still ``running`` belongs to a
        process that died (killed, OOM, host lost) and would otherwise look stuck forever.
        """

        async def close() -> list[str]:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(cron_runs)
                    .where(cron_runs.c.cron_name == cron_name, cron_runs.c.status == "running")
                    .values(status="error", finished_at=self.clock(), error_message=reason)
                    .returning(cron_runs.c.id)
                )
                return [str(r[0]) for r in result]

        try:
            return await self._bounded(close, gated=True)
        except Exception as exc:
            log.error("could not close abandoned runs of %s: %s", cron_name, self._describe(exc))
            return []

    @asynccontextmanager
    async def track(
        self,
        cron_name: str,
        *,
        unit_label: str = "units",
        report_date: date | None = None,
    ) -> AsyncIterator[RunTracker]:
        """Record one run of ``cron_name`` around the block.

        Ends ``success``/``partial``/``error`` from what the block reported, or ``error`` with
        the exception text if it raised (the exception propagates; the ledger adds none of
        its own). ``report_date`` is the date the run collects (backfills skip done dates).
        """
        run_id = await self.start_cron_run(cron_name, report_date=report_date)
        tracker = RunTracker(cron_name=cron_name, run_id=run_id, unit_label=unit_label)
        try:
            yield tracker
        except BaseException as exc:
            text = str(exc) or type(exc).__name__
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                text = "the run was cancelled before it finished"
            message = self.redactor.message(f"{type(exc).__name__}: {text}")
            tracker.summary = RunSummary("error", tracker.records_count, message)
            await asyncio.shield(
                self.complete_cron_run(run_id, "error", tracker.records_count, message)
            )
            raise
        summary = summarize(
            records_count=tracker.records_count,
            units_stored=tracker.units_stored,
            skipped=tracker.skipped,
            unit_label=unit_label,
        )
        summary = RunSummary(
            summary.status,
            summary.records_count,
            self.redactor.message(summary.error_message) if summary.error_message else None,
        )
        tracker.summary = summary
        await self.complete_cron_run(
            run_id, summary.status, summary.records_count, summary.error_message
        )

    # -- reads: raise StorageError ------------------------------------------------------

    async def _read(self, statement: Any) -> list[RunRow]:
        async def query() -> list[RunRow]:
            async with self.engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    # A single read needs no BEGIN/ROLLBACK round trips around it. (SQLite's
                    # driver has no such round trips; switching its mode costs a thread hop.)
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                result = await conn.execute(statement)
                return [row_to_run(r) for r in result]

        try:
            return await self._bounded(query)
        except Exception as exc:
            raise StorageError(f"database unavailable ({self._describe(exc)})") from None

    async def latest_runs(self, cron_names: Sequence[str]) -> dict[str, RunRow | None]:
        """The latest run of each job, in one statement and one round trip.

        One ``ORDER BY started_at DESC LIMIT 1`` per job, glued with ``UNION ALL``: each arm
        is a single descent of ``idx_cron_runs_name_started``, so the cost depends on the
        number of jobs, not on the size of the history.
        """
        latest: dict[str, RunRow | None] = dict.fromkeys(cron_names)
        if not cron_names:
            return latest
        for row in await self._read(latest_runs_statement(cron_names)):
            latest[row.cron_name] = row
        return latest

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
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, not {status!r}")
        names = [cron_name] if cron_name is not None else list(cron_names)
        return await self._read(recent_runs_statement(names, limit, status=status))

    async def get_run(self, run_id: str) -> RunRow | None:
        try:
            uuid.UUID(run_id)
        except ValueError:
            return None
        rows = await self._read(select(*RUN_COLUMNS).where(cron_runs.c.id == run_id))
        return rows[0] if rows else None

    async def count_runs(self) -> int:
        async def query() -> int:
            async with self.engine.connect() as conn:
                return int(
                    (await conn.execute(select(func.count()).select_from(cron_runs))).scalar_one()
                )

        try:
            return await self._bounded(query)
        except Exception as exc:
            raise StorageError(f"database unavailable ({self._describe(exc)})") from None
