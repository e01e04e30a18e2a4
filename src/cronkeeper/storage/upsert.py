"""Idempotent writes: ``INSERT … ON CONFLICT (key) DO UPDATE`` on both dialects.

PostgreSQL and SQLite (≥ 3.24) spell it the same way, but SQLAlchemy builds it from each
dialect's own ``insert``; :func:`_insert` is the one place that picks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

__all__ = ["insert_missing", "insert_on_conflict", "upsert"]


def _insert(dialect: Dialect) -> Any:
    """The dialect's own ``insert`` (both have ``on_conflict_do_update``/``_do_nothing``)."""
    return pg_insert if dialect.name == "postgresql" else sqlite_insert


def insert_on_conflict(
    dialect: Dialect,
    table: Table,
    values: Mapping[str, Any] | None = None,
    *,
    key: Sequence[str],
    update: Iterable[str],
    where: ColumnElement[bool] | None = None,
    also: Mapping[str, Any] | None = None,
) -> Insert:
    """``INSERT INTO table … ON CONFLICT (key) DO UPDATE SET col = excluded.col [WHERE …]``.

    ``update`` names the columns a conflicting row takes from the proposed one; ``where``
    makes the update conditional (the row count — or ``RETURNING`` — then says whether the
    write happened: the claim pattern of the lease). ``values`` may hold SQL expressions;
    ``also`` sets columns of a conflicting row from expressions of their own (the lease's
    ``epoch = cron_leases.epoch + 1``).
    """
    statement = _insert(dialect)(table)
    if values is not None:
        statement = statement.values(**values)
    upserting: Insert = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={**{name: statement.excluded[name] for name in update}, **(also or {})},
        where=where,
    )
    return upserting


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str] | None = None,
) -> int:
    """Insert ``rows`` or overwrite the rows with the same ``key`` (default: the primary key).

    Returns the number of rows written. Re-running it with the same rows changes no row
    count, which is what makes every job safe to re-run for a date.
    """
    if not rows:
        return 0
    key_columns = list(key) if key else [c.name for c in table.primary_key.columns]
    statement = insert_on_conflict(
        conn.dialect,
        table,
        key=key_columns,
        update=[name for name in rows[0] if name not in key_columns],
    )
    await conn.execute(statement, [dict(r) for r in rows])
    return len(rows)


async def insert_missing(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert the ``rows`` whose primary key is not there yet (``ON CONFLICT DO NOTHING``);
    safe when several processes create the same rows at once. Returns how many were new."""
    if not rows:
        return 0
    statement = _insert(conn.dialect)(table).on_conflict_do_nothing()
    result = await conn.execute(statement, [dict(r) for r in rows])
    return max(0, result.rowcount)
