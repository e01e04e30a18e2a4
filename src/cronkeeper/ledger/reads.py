"""Every read of ``cron_runs``, as statements: built here, run by :class:`~.store.Ledger`.

Plain functions with no I/O, so the index-plan tests can explain exactly what the ledger runs.
Each statement that looks at one job's history is an ``ORDER BY started_at DESC`` walk down
``idx_cron_runs_name_started`` (or an equality on ``idx_cron_runs_name_report_date``), one arm
per job glued with ``UNION ALL`` where several jobs are asked for (the latest run of each: one
scalar subquery per job, :func:`latest_runs_statement`): the cost depends on the number of
jobs, never on the size of the history.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    Update,
    and_,
    func,
    literal_column,
    or_,
    select,
    union_all,
    update,
)

from cronkeeper.ledger.models import RunRow
from cronkeeper.storage.schema import cron_runs

__all__ = [
    "FILTER_DEPTH",
    "RUN_COLUMNS",
    "abandoned_statement",
    "count_statement",
    "done_dates_statement",
    "last_ok_statement",
    "last_runs_statement",
    "last_started_statement",
    "last_success_statement",
    "latest_runs_statement",
    "recent_runs_statement",
    "row_to_run",
    "run_statement",
    "started_since_statement",
    "successes_statement",
]

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


def row_to_run(row: Sequence[Any]) -> RunRow:
    """A run from the values of :data:`RUN_COLUMNS`, in their order: a row of any statement
    here, or the runs' share of a row of the health read (:mod:`.health_read`)."""
    run_id, cron_name, started_at, finished_at, status, records, message, report_date = row
    return RunRow(
        id=str(run_id),
        cron_name=cron_name,
        started_at=started_at,
        finished_at=finished_at,
        status=status,
        records_count=records or 0,
        error_message=message,
        report_date=report_date,
    )


def _newest_per_job(
    columns: Sequence[ColumnElement[Any]],
    cron_names: Sequence[str],
    per_job: int,
    *conditions: ColumnElement[bool],
    arm: str,
) -> CompoundSelect[Any]:
    """One ``WHERE cron_name = … ORDER BY started_at DESC LIMIT per_job`` arm per job, glued
    with ``UNION ALL``: each arm is a short walk down ``idx_cron_runs_name_started``."""
    arms = [
        select(*columns)
        .where(cron_runs.c.cron_name == name, *conditions)
        .order_by(cron_runs.c.started_at.desc())
        .limit(per_job)
        .subquery(f"{arm}{i}")
        for i, name in enumerate(cron_names)
    ]
    return union_all(*(select(a) for a in arms))


def last_runs_statement(cron_names: Sequence[str], per_job: int) -> CompoundSelect[Any]:
    """The newest ``per_job`` runs of each job: one ``ORDER BY started_at DESC LIMIT n`` arm
    per job, glued with ``UNION ALL``; each arm is a short walk down
    ``idx_cron_runs_name_started``, so the cost does not grow with the history."""
    if not cron_names:
        raise ValueError("at least one job name is needed")
    return _newest_per_job(RUN_COLUMNS, cron_names, per_job, arm="j")


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


def latest_runs_statement(cron_names: Sequence[str]) -> Select[Any]:
    """The health query: the latest run of each job, in one statement.

    ``WHERE id IN ((SELECT id … WHERE cron_name = … ORDER BY started_at DESC LIMIT 1), …)``:
    one scalar subquery per job, each a single descent of ``idx_cron_runs_name_started``,
    then one primary-key lookup per job; the cost depends on the number of jobs, not on the
    size of the history. The same walks as :func:`last_runs_statement` with ``per_job=1``,
    in a third of the SQL text and with less to plan (issue 16: ~0.2 ms less per health
    read on PostgreSQL); a job without runs has a ``NULL`` id, which matches nothing.

    Built once per set of job names: constructing it anew on every health request cost more
    CPU (SQLAlchemy's cache key and result metadata) than running it.
    """
    return _latest_runs_statement(tuple(cron_names))


@functools.lru_cache(maxsize=64)
def _latest_runs_statement(cron_names: tuple[str, ...]) -> Select[Any]:
    if not cron_names:
        raise ValueError("at least one job name is needed")
    newest = [
        select(cron_runs.c.id)
        .where(cron_runs.c.cron_name == name)
        .order_by(cron_runs.c.started_at.desc())
        .limit(1)
        .correlate(None)  # its own cron_runs, never the outer one
        .scalar_subquery()
        for name in cron_names
    ]
    return select(*RUN_COLUMNS).where(cron_runs.c.id.in_(newest))


def successes_statement(cron_name: str, since: datetime | None, limit: int) -> CompoundSelect[Any]:
    """The newest ``limit`` ``success`` and ``partial`` runs of a job started at or after
    ``since``: what a volume baseline learns from (the watchdog keeps the partial runs within
    the job's tolerance: :func:`cronkeeper.health.outcome`), a bounded walk down the index."""
    conditions: list[ColumnElement[bool]] = [cron_runs.c.status.in_(("success", "partial"))]
    if since is not None:
        conditions.append(cron_runs.c.started_at >= since)
    return _newest_per_job(RUN_COLUMNS, [cron_name], limit, *conditions, arm="baseline")


def run_statement(run_id: str) -> Select[Any]:
    return select(*RUN_COLUMNS).where(cron_runs.c.id == run_id)


def count_statement() -> Select[Any]:
    return select(func.count()).select_from(cron_runs)


IS_SUCCESS = cron_runs.c.status == literal_column("'success'")
"""A literal, not a bound parameter: the planner must see that the query implies the partial
index's ``WHERE status = 'success'`` when it plans, whatever the driver does with parameters."""


IS_RUNNING = cron_runs.c.status == literal_column("'running'")
"""A literal for the same reason: the query must imply ``idx_cron_runs_running``'s
``WHERE status = 'running'`` (migration 0009) when it is planned."""


def abandoned_statement(
    cron_name: str,
    *,
    finished_at: datetime,
    reason: str,
    keep: Sequence[str] = (),
    epoch: int | None = None,
    stale_before: datetime | None = None,
) -> Update:
    """Close the ``running`` rows of ``cron_name`` (but ``keep``) whose holder is gone as
    ``error``; returns ids. Gone: started under a lease epoch other than ``epoch`` (the
    closer's own), or without a lease and silent (heartbeat, else start) since before
    ``stale_before`` (default ``finished_at``). ``epoch=None`` (no lease of the closer's
    own): every run with a lease epoch counts as gone.

    Reads ``idx_cron_runs_running`` (migration 0009), which holds only the running rows: the
    cost does not grow with the job's history (``bench/ledger_overhead.py``), where the
    ``cron_name``/``started_at`` index made it walk every run the job ever had.
    """
    running = [cron_runs.c.cron_name == cron_name, IS_RUNNING]
    if keep:
        running.append(cron_runs.c.id.not_in(list(keep)))
    fenced: ColumnElement[bool] = cron_runs.c.lease_epoch.is_not(None)
    if epoch is not None:
        fenced = and_(fenced, cron_runs.c.lease_epoch != epoch)
    silent = and_(
        cron_runs.c.lease_epoch.is_(None),
        func.coalesce(cron_runs.c.heartbeat_at, cron_runs.c.started_at)
        < (finished_at if stale_before is None else stale_before),
    )
    running.append(or_(fenced, silent))
    return (
        update(cron_runs)
        .where(*running)
        .values(status="error", finished_at=finished_at, error_message=reason)
        .returning(cron_runs.c.id)
    )


def last_success_statement(cron_names: Sequence[str]) -> CompoundSelect[Any]:
    """Each job's latest ``success`` run, one ``ORDER BY started_at DESC LIMIT 1`` arm per job,
    for ``cronkeeper_last_success_timestamp_seconds`` at every scrape.

    Same shape as :func:`latest_runs_statement`, but each arm reads ``idx_cron_runs_success``
    (migration 0008), a partial index that holds only the successes: its first entry for the
    job, or none. On ``idx_cron_runs_name_started`` the arm walked back from the newest run to
    the first success, which for a job that is always ``partial`` (one dead ad account is
    enough) is its whole history, on every scrape (``bench/metrics_scrape.py``). Built once
    per set of job names, like the health query.
    """
    return _last_success_statement(tuple(cron_names))


@functools.lru_cache(maxsize=64)
def _last_success_statement(cron_names: tuple[str, ...]) -> CompoundSelect[Any]:
    columns = (cron_runs.c.cron_name, cron_runs.c.started_at, cron_runs.c.finished_at)
    return _newest_per_job(columns, cron_names, 1, IS_SUCCESS, arm="success_")


IS_OK = cron_runs.c.status.in_([literal_column("'success'"), literal_column("'partial'")])
"""Literals, so that the query implies ``idx_cron_runs_ok``'s ``WHERE`` (migration 0012)."""


OK_DEPTH = 20
"""How many of a job's newest ``success``/``partial`` runs the last-ok read looks at: the
caller picks the newest its partial tolerance accepts (a partial's share is in its message)."""


def last_ok_statement(cron_names: Sequence[str]) -> CompoundSelect[Any]:
    """Each job's newest ``OK_DEPTH`` ``success`` or ``partial`` runs
    (``cronkeeper_last_ok_timestamp_seconds``), one arm per job on ``idx_cron_runs_ok``
    (migration 0012): a short walk at any history, a job that always fails included."""
    return _last_ok_statement(tuple(cron_names))


@functools.lru_cache(maxsize=64)
def _last_ok_statement(cron_names: tuple[str, ...]) -> CompoundSelect[Any]:
    return _newest_per_job(RUN_COLUMNS, cron_names, OK_DEPTH, IS_OK, arm="ok_")


def started_since_statement(cron_names: Sequence[str], since: datetime) -> Select[Any]:
    """Job, status and retries of every run started since ``since``: a range of
    ``idx_cron_runs_name_started`` per job (the last hour's runs, for ``/metrics``)."""
    return select(cron_runs.c.cron_name, cron_runs.c.status, cron_runs.c.retry_counts).where(
        cron_runs.c.cron_name.in_(list(cron_names)), cron_runs.c.started_at >= since
    )


def last_started_statement(cron_name: str, day: date) -> Select[Any]:
    """When the latest run of ``cron_name`` for report date ``day`` started.

    Runs recorded without a report date count too: for them the ledger cannot tell, and
    assuming the slot was served costs at most a skipped duplicate, never a double run.
    """
    return (
        select(cron_runs.c.started_at)
        .where(
            cron_runs.c.cron_name == cron_name,
            or_(cron_runs.c.report_date == day, cron_runs.c.report_date.is_(None)),
        )
        .order_by(cron_runs.c.started_at.desc())
        .limit(1)
    )


def done_dates_statement(
    cron_name: str, since: date, until: date, *, with_rows: bool = False
) -> Select[Any]:
    """The report dates in ``[since, until]`` that ``cron_name`` has a ``success`` run for
    (``with_rows``: one that wrote at least one row)."""
    return (
        select(cron_runs.c.report_date)
        .distinct()
        .where(
            cron_runs.c.cron_name == cron_name,
            cron_runs.c.status == "success",
            cron_runs.c.report_date.between(since, until),
            *([cron_runs.c.records_count > 0] if with_rows else []),
        )
    )
