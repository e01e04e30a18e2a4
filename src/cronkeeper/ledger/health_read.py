"""The health read as one statement: each job's latest run, its state and the newest
scheduler beats, in one round trip on one connection (issue 16).

A health request needs three reads, each owned by its table's module: the latest run of
each job (:func:`~.reads.latest_runs_statement`), the jobs' alert states and pauses
(:func:`~.job_state.read_statement`) and the newest scheduler heartbeats
(:func:`~.presence.newest_statement`). Run apart, each cost a connection checkout, a round
trip and ~0.35 ms of client CPU (SQLAlchemy's async Core and the driver), most of what
health cost beside ``/healthz`` (``docs/benchmarks.md``, F5). Here the owners' statements
are glued with ``UNION ALL`` as they are (a subquery, or their own ``FROM`` and ``WHERE``):
one row shape for the three, a ``part`` column saying whose row it is, each part's columns
in typed slots the parts share (:func:`_layout`), ``NULL`` in the slots a part does not
fill. Each part is read back with its owner's row mapping (:func:`~.reads.row_to_run`,
:func:`~.job_state.row_to_state`, :func:`~.presence.row_to_heartbeat`).

The same SQL for SQLite and PostgreSQL (through PgBouncer too: one statement, no prepared
statements). A schema that lacks one of the tables or columns (before migration 0007 or
0012) fails the whole statement: the caller then reads the three apart, each failing alone
(:meth:`cronkeeper.service.Service._read_latest`).
"""

from __future__ import annotations

import functools
import operator
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
from sqlalchemy.types import TypeEngine

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


def _layout() -> tuple[list[TypeEngine[Any]], dict[str, tuple[int, ...]]]:
    """The row's columns after ``part``, as typed slots the parts share, and where each
    part's columns sit in a row (in its owner's order).

    A slot holds one part's column, or ``NULL`` of the slot's type in the other parts' rows;
    parts share the slots of a type (a run's ``status`` and a state's ``anomaly`` are both
    text): 17 columns instead of 29. Each column costs client CPU at every execution (the
    driver's description of it, its type's result processing) and length in the SQL text,
    which psycopg parses again at every execution (it caches statements up to 4 KB only).
    """
    slots: list[TypeEngine[Any]] = []
    where: dict[str, tuple[int, ...]] = {}
    for part, columns in _PARTS:
        taken: list[int] = []
        for column in columns:
            free = [
                i
                for i, kind in enumerate(slots)
                if i not in taken and type(kind) is type(column.type)
            ]
            if not free:
                slots.append(column.type)
                free = [len(slots) - 1]
            taken.append(free[0])
        where[part] = tuple(i + 1 for i in taken)  # after ``part``
    return slots, where


_SLOTS, _WHERE = _layout()
_READ = {part: operator.itemgetter(*at) for part, at in _WHERE.items()}


def _arm(
    part: str, source: Select[Any] | CompoundSelect[Any], *, first: bool, within: str | None
) -> Select[Any]:
    """``source``'s rows as ``part``: its columns in its slots, ``NULL`` in the others.

    ``within``: read ``source`` as a subquery of that name (it has an ``ORDER BY`` or a
    ``LIMIT`` of its own, which SQLite takes for the whole union's in an arm); else
    ``source``'s own ``FROM`` and ``WHERE`` with the slots as its columns. Only the
    ``first`` arm casts its ``NULL`` padding: PostgreSQL types each column of a union from
    its arms taken pairwise, an untyped ``NULL`` taking the other arm's type (two of them
    would make ``text``: https://www.postgresql.org/docs/current/typeconv-union-case.html),
    and SQLAlchemy reads every row through the first arm's column types.
    """
    owned = dict(_PARTS)[part]
    if within is not None:
        rows = source.subquery(within)
        owned = tuple(rows.c[column.name] for column in owned)
    mine = dict(zip(_WHERE[part], owned, strict=True))
    columns: list[ColumnElement[Any]] = [literal_column(f"'{part}'").label("part")]
    for at, kind in enumerate(_SLOTS, start=1):
        value = mine.get(at)
        if value is None:
            value = cast(null(), kind) if first else null()
        columns.append(value.label(f"c{at}"))
    if within is not None:
        return select(*columns)
    assert isinstance(source, Select)
    return source.with_only_columns(*columns)


def health_read_statement(cron_names: Sequence[str]) -> CompoundSelect[Any]:
    """The three reads of a health request as one ``UNION ALL`` (see the module's text).

    Built once per tuple of names, like the statements it glues: constructing it anew on
    every request would cost SQLAlchemy its cache key and result metadata again.
    """
    return _health_read_statement(tuple(cron_names))


@functools.lru_cache(maxsize=64)
def _health_read_statement(cron_names: tuple[str, ...]) -> CompoundSelect[Any]:
    beats = _arm(BEATS, newest_statement(), first=not cron_names, within="beats")
    if not cron_names:  # no jobs: neither runs nor states to read (as the owners' reads)
        return union_all(beats)
    runs = _arm(RUNS, latest_runs_statement(cron_names), first=True, within=None)
    states = _arm(STATES, read_statement(cron_names), first=False, within=None)
    return union_all(runs, states, beats)


def split_health_rows(rows: Iterable[Sequence[Any]], cron_names: Sequence[str]) -> HealthRead:
    """The rows of :func:`health_read_statement` as the three reads would have returned them:
    :meth:`~.store.Ledger.latest_runs`, :meth:`~.job_state.JobStates.read` and
    :meth:`~.presence.Heartbeats.newest`."""
    latest: dict[str, RunRow | None] = dict.fromkeys(cron_names)
    states = {name: JobState(name) for name in cron_names}
    beats: list[Heartbeat] = []
    runs_of, states_of, beats_of = _READ[RUNS], _READ[STATES], _READ[BEATS]
    for row in rows:
        part = row[0]
        if part == RUNS:
            run = row_to_run(runs_of(row))
            latest[run.cron_name] = run
        elif part == STATES:
            state = row_to_state(states_of(row))
            states[state.cron_name] = state
        else:
            beats.append(row_to_heartbeat(beats_of(row)))
    # A union promises no order across its arms: newest first, as the beats' own read (a
    # stable sort keeps the database's order among equal beats).
    beats.sort(key=lambda beat: beat.last_beat_at, reverse=True)
    return latest, states, beats
