"""The ledger side of check-ins: crons that report their own runs (``api/checkins.py``,
``cronkeeper exec``).

Unlike :meth:`~cronkeeper.ledger.Ledger.complete_cron_run`, these raise
:class:`~cronkeeper.errors.StorageError`: a check-in has a caller waiting for an answer, and
it must learn that nothing was recorded (to retry, or to spool).

Finishing is one conditional ``UPDATE … WHERE status = 'running'`` checked by its row count
(healthchecks' claim pattern): two finishes racing for one run cannot both win. The loser
reads the row back; the same end again is an idempotent retry, another one a conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from cronkeeper.errors import StorageError
from cronkeeper.ledger.models import FinalStatus, RunRow
from cronkeeper.ledger.reads import row_to_run, run_statement
from cronkeeper.ledger.store import Ledger, insert_running
from cronkeeper.storage.schema import cron_runs

__all__ = ["Finished", "finish_run", "record_finished_run", "record_run_end", "start_run"]

T = TypeVar("T")


async def record_run_end(
    ledger: Ledger,
    run_id: str,
    cron_name: str,
    *,
    started_at: datetime,
    finished_at: datetime,
    status: FinalStatus,
    records_count: int,
    error_message: str | None,
) -> bool:
    """Write a run's end whatever became of its start: close the row if it is still
    ``running``, insert the whole run if the database never took its start, change nothing
    if it already ended (a replay). Whether a row changed; raises :class:`StorageError`.

    For ``cronkeeper exec`` and its spool, where the start may have been lost to an outage.
    """

    async def write(conn: AsyncConnection) -> bool:
        closed = await conn.execute(
            update(cron_runs)
            .where(cron_runs.c.id == run_id, cron_runs.c.status == "running")
            .values(
                status=status,
                records_count=records_count,
                error_message=error_message,
                finished_at=finished_at,
            )
        )
        if closed.rowcount == 1:
            return True
        if list(await conn.execute(run_statement(run_id))):
            return False
        await conn.execute(
            cron_runs.insert().values(
                id=run_id,
                cron_name=cron_name,
                started_at=started_at,
                finished_at=finished_at,
                status=status,
                records_count=records_count,
                error_message=error_message,
                created_at=finished_at,
            )
        )
        return True

    return await _write(ledger, write)


@dataclass(frozen=True)
class Finished:
    """What became of a finish: ``done`` (closed now), ``again`` (the same end was already
    recorded: an idempotent retry), ``conflict`` (it ended otherwise), ``unknown`` (no run)."""

    outcome: Literal["done", "again", "conflict", "unknown"]
    run: RunRow | None


async def start_run(
    ledger: Ledger,
    cron_name: str,
    report_date: date | None,
    *,
    run_id: str | None = None,
    gated: bool = False,
    lease_epoch: int | None = None,
) -> str:
    """Insert a ``running`` row; its id. Raises :class:`StorageError`.

    ``gated``: not even try while the breaker knows the database is down (``exec`` must not
    delay its command by a timeout the lease claim just spent). ``lease_epoch``: the job's
    lease the run holds (``exec``)."""
    run_id = run_id or str(uuid.uuid4())
    now = ledger.clock()

    async def insert(conn: AsyncConnection) -> None:
        await conn.execute(insert_running(run_id, cron_name, now, report_date, lease_epoch))

    await _write(ledger, insert, gated=gated)
    return run_id


async def finish_run(
    ledger: Ledger,
    run_id: str,
    status: FinalStatus,
    records_count: int,
    error_message: str | None,
    *,
    cron_names: Sequence[str] | None = None,
) -> Finished:
    """Close ``run_id`` (a run of one of ``cron_names`` when given) if it is still
    ``running``.

    ``error_message`` must already be redacted and cut. Raises :class:`StorageError`.
    """
    try:
        uuid.UUID(run_id)
    except ValueError:
        return Finished("unknown", None)
    now = ledger.clock()
    where = [cron_runs.c.id == run_id, cron_runs.c.status == "running"]
    if cron_names is not None:
        where.append(cron_runs.c.cron_name.in_(list(cron_names)))

    async def close(conn: AsyncConnection) -> tuple[bool, RunRow | None]:
        result = await conn.execute(
            update(cron_runs)
            .where(*where)
            .values(
                status=status,
                records_count=records_count,
                error_message=error_message,
                finished_at=now,
            )
        )
        rows = list(await conn.execute(run_statement(run_id)))
        return result.rowcount == 1, row_to_run(rows[0]) if rows else None

    closed, found = await _write(ledger, close)
    if not closed:
        if found is None or (cron_names is not None and found.cron_name not in cron_names):
            return Finished("unknown", None)
        same = (found.status, found.records_count, found.error_message) == (
            status,
            records_count,
            error_message,
        )
        return Finished("again" if same else "conflict", found)
    return Finished("done", found)


async def record_finished_run(
    ledger: Ledger,
    cron_name: str,
    *,
    started_at: datetime,
    status: FinalStatus,
    records_count: int,
    error_message: str | None,
    report_date: date | None = None,
    finished_at: datetime | None = None,
) -> RunRow:
    """Insert one finished run (a ``ping``: a cron that keeps no run id; ``finished_at``
    defaults to now). Raises :class:`StorageError`."""
    run_id = str(uuid.uuid4())
    now = finished_at or ledger.clock()
    row = RunRow(
        id=run_id,
        cron_name=cron_name,
        started_at=min(started_at, now),
        finished_at=now,
        status=status,
        records_count=records_count,
        error_message=error_message,
        report_date=report_date,
    )

    async def insert(conn: AsyncConnection) -> None:
        await conn.execute(
            cron_runs.insert().values(
                id=row.id,
                cron_name=cron_name,
                started_at=row.started_at,
                finished_at=now,
                status=status,
                records_count=records_count,
                error_message=error_message,
                created_at=now,
                report_date=report_date,
            )
        )

    await _write(ledger, insert)
    return row


async def _write(
    ledger: Ledger, work: Callable[[AsyncConnection], Awaitable[T]], *, gated: bool = False
) -> T:
    """``work`` in one transaction, bounded by the ledger's timeout and breaker (not gated:
    a caller is waiting and asks the database itself); :class:`StorageError` on failure."""

    async def run() -> T:
        async with ledger.engine.begin() as conn:
            return await work(conn)

    try:
        return await ledger.call(run, gated=gated)
    except StorageError as exc:  # the kind is kept (unreachable, locked, schema behind …)
        raise type(exc)(f"database unavailable ({exc})") from None
