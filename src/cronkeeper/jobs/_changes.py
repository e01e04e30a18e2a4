"""How many stored rows a write is about to change: the number a run reports.

A well-formed, wrong answer overwrites good figures without changing ``recordsCount`` (the
same rows are written either way), so the volume watchdog cannot see it. Counting, before the
upsert and inside its transaction, the stored rows whose figures differ from the new ones
gives the run's message a number an operator can notice: "changed 21 stored counts".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Table, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["changed_rows", "differs", "rewrote_note"]


def differs(old: object, new: object) -> bool:
    """Whether a stored value and a new one are different figures (``1.50`` is ``1.5``)."""
    if old is None or new is None:
        return old is not new
    if isinstance(old, int | float | Decimal) and isinstance(new, int | float | Decimal):
        try:
            return Decimal(str(old)) != Decimal(str(new))
        except InvalidOperation:  # pragma: no cover - both are numbers
            return True
    return old != new


async def changed_rows(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
    figures: Sequence[str],
) -> int:
    """How many of ``rows`` already exist (by ``key``) with different ``figures``.

    One ``SELECT`` bounded by the key values (each key column ``IN`` its values), matched
    exactly in Python; new rows are not changes.
    """
    if not rows:
        return 0
    wanted = {tuple(r[k] for k in key): r for r in rows}
    bounds = [table.c[k].in_({r[k] for r in rows}) for k in key]
    statement = select(*(table.c[k] for k in key), *(table.c[f] for f in figures)).where(
        and_(*bounds)
    )
    changed = 0
    for stored in await conn.execute(statement):
        new = wanted.get(tuple(stored[: len(key)]))
        if new is not None and any(
            differs(old, new[name]) for old, name in zip(stored[len(key) :], figures, strict=True)
        ):
            changed += 1
    return changed


def rewrote_note(changed: int, what: str, source: str) -> str:
    """The run's line about the stored figures it changed."""
    plural = "s" if changed != 1 else ""
    return f"changed {changed} {what}{plural} to the figures {source} answered now"
