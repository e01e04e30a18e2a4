"""Idempotent writes: ``INSERT … ON CONFLICT (key) DO UPDATE`` on both dialects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["insert_missing", "upsert"]


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
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table)
    updates = {name: statement.excluded[name] for name in rows[0] if name not in key_columns}
    statement = statement.on_conflict_do_update(index_elements=key_columns, set_=updates)
    await conn.execute(statement, [dict(r) for r in rows])
    return len(rows)


async def insert_missing(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert the ``rows`` whose primary key is not there yet (``ON CONFLICT DO NOTHING``);
    safe when several processes create the same rows at once. Returns how many were new."""
    if not rows:
        return 0
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).on_conflict_do_nothing()
    result = await conn.execute(statement, [dict(r) for r in rows])
    return max(0, result.rowcount)
