"""The health read as one statement: each job's latest run, its state and the newest
scheduler beats, in one round trip on one connection (issue 16).

A health request needs three reads, each owned by its table's module: the latest run of
each job (:func:`~.reads.latest_runs_statement`), the jobs' alert states and pauses
(:func:`~.job_state.read_statement`) and the newest scheduler heartbeats
(:func:`~.presence.newest_statement`). Run apart, each costs a connection checkout, a round
trip and ~0.35 ms of client CPU (SQLAlchemy's async Core and the driver), which was most of
what health cost beside ``/healthz`` (``docs/benchmarks.md``, F5). Here the three owners'
statements are glued with ``UNION ALL``, unchanged, each as a subquery: one row shape for all
three, a ``part`` column saying whose row it is, and the other parts' columns padded with
``NULL`` cast to their type, so the columns line up on PostgreSQL (which types a union's
columns from every arm) and each value comes back through its own column's type. Each part
is read back with its owner's row mapping (:func:`~.reads.row_to_run`,
:func:`~.job_state.row_to_state`, :func:`~.presence.row_to_heartbeat`).

The same SQL for SQLite and PostgreSQL (through PgBouncer too: a single statement, no
prepared statements). A schema that lacks one of the tables or columns (before migrations
0007 or 0012) fails the whole statement: the caller then reads the three apart, each
failing alone (:meth:`cronkeeper.service.Service._read_latest`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    cast,
    literal_column,
    null,
    select,
    union_all,
)

from cronkeeper.ledger.job_state import STATE_COLUMNS, read_statement, row_to_state
from cronkeeper.ledger.models import RunRow
from cronkeeper.ledger.presence import (
    HEARTBEAT_COLUMNS,
    Heartbeat,
    newest_statement,
    row_to_heartbeat,
)
from cronkeeper.ledger.reads import RUN_COLUMNS, latest_runs_statement, row_to_run
from cronkeeper.records import JobState

__all__ = ["HealthRead", "health_read_statement", "split_health_rows"]

HealthRead = tuple[dict[str, RunRow | None], dict[str, JobState], list[Heartbeat]]
"""Each job's latest run (``None``: never ran), each job's state (a fresh ``ok`` one for a
job without a row), and the newest scheduler beats, newest first."""

RUNS, STATES, BEATS = "r", "s", "h"
"""The ``part`` of a row: whose columns it fills."""

_PARTS: tuple[tuple[str, tuple[ColumnElement[Any], ...]], ...] = (
    (RUNS, RUN_COLUMNS),
    (STATES, STATE_COLUMNS),
    (BEATS, HEARTBEAT_COLUMNS),
)


def _slices() -> dict[str, slice]:
    """Where each part's values sit in a row (after ``part``, in :data:`_PARTS` order)."""
    found, start = {}, 1
    for part, columns in _PARTS:
        found[part] = slice(start, start + len(columns))
        start += len(columns)
    return found


_SLICES = _slices()


def _arm(part: str, source: Select[Any] | CompoundSelect[Any], name: str) -> Select[Any]:
    """``source``'s rows as ``part``, every other part's column ``NULL`` of its own type."""
    rows = source.subquery(name)
    columns: list[ColumnElement[Any]] = [literal_column(f"'{part}'").label("part")]
    for other, owned in _PARTS:
        for column in owned:
            label = f"{other}_{column.name}"
            if other == part:
                columns.append(rows.c[column.name].label(label))
            else:
                columns.append(cast(null(), column.type).label(label))
    return select(*columns)


def health_read_statement(cron_names: Sequence[str]) -> CompoundSelect[Any]:
    """The three reads of a health request as one ``UNION ALL`` (see the module's text).

    Built once per tuple of names, like the statements it glues: constructing it anew on
    every request would cost SQLAlchemy its cache key and result metadata again.
    """
    return _health_read_statement(tuple(cron_names))


@functools.lru_cache(maxsize=64)
def _health_read_statement(cron_names: tuple[str, ...]) -> CompoundSelect[Any]:
    arms = []
    if cron_names:  # no jobs: neither runs nor states to read (the owners' reads skip it too)
        arms.append(_arm(RUNS, latest_runs_statement(cron_names), "latest"))
        arms.append(_arm(STATES, read_statement(cron_names), "states"))
    arms.append(_arm(BEATS, newest_statement(), "beats"))
    return union_all(*arms)


def split_health_rows(rows: Iterable[Sequence[Any]], cron_names: Sequence[str]) -> HealthRead:
    """The rows of :func:`health_read_statement` as the three reads would have returned them:
    :meth:`~.store.Ledger.latest_runs`, :meth:`~.job_state.JobStates.read` and
    :meth:`~.presence.Heartbeats.newest`."""
    latest: dict[str, RunRow | None] = dict.fromkeys(cron_names)
    states = {name: JobState(name) for name in cron_names}
    beats: list[Heartbeat] = []
    runs_at, states_at, beats_at = _SLICES[RUNS], _SLICES[STATES], _SLICES[BEATS]
    for row in rows:
        part = row[0]
        if part == RUNS:
            run = row_to_run(row[runs_at])
            latest[run.cron_name] = run
        elif part == STATES:
            state = row_to_state(row[states_at])
            states[state.cron_name] = state
        else:
            beats.append(row_to_heartbeat(row[beats_at]))
    # A union promises no order across its arms: newest first, as the beats' own read (a
    # stable sort keeps the database's order among equal beats).
    beats.sort(key=lambda beat: beat.last_beat_at, reverse=True)
    return latest, states, beats
