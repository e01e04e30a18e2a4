"""The database's own clock, as SQL: ``db_now()`` and ``db_now_plus(seconds)``.

A lease expires when the *database* says so, never when a claimant's clock says so: two
replicas whose clocks disagree by a minute would otherwise each judge the other's lease
expired (or never expired). The expressions compile per dialect, here and nowhere else:
PostgreSQL's ``CURRENT_TIMESTAMP`` (a ``timestamptz``), and on SQLite
``strftime('%Y-%m-%d %H:%M:%f', 'now')`` — UTC text with milliseconds in the same layout the
:class:`~cronkeeper.storage.schema.UtcDateTime` column stores, so the two compare as text in
time order. (SQLite's plain ``CURRENT_TIMESTAMP`` has whole seconds only.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from cronkeeper.storage.schema import UtcDateTime

__all__ = ["DbNow", "db_now", "db_now_plus"]

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f"


class DbNow(FunctionElement[datetime]):
    """The database's current time plus ``seconds`` (may be 0 or negative)."""

    type = UtcDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = float(seconds)
        super().__init__()

    def _gen_cache_key(self, anon_map: Any, bindparams: list[Any]) -> tuple[Any, ...]:
        return (type(self), self.seconds)


def db_now() -> DbNow:
    """The database's current time."""
    return DbNow(0.0)


def db_now_plus(seconds: float) -> DbNow:
    """The database's current time plus ``seconds``."""
    return DbNow(seconds)


@compiles(DbNow)
def _default(element: DbNow, compiler: SQLCompiler, **kw: Any) -> str:
    if element.seconds == 0:
        return "CURRENT_TIMESTAMP"
    return compiler.process(func.now() + literal(timedelta(seconds=element.seconds)), **kw)


@compiles(DbNow, "sqlite")
def _sqlite(element: DbNow, compiler: SQLCompiler, **kw: Any) -> str:
    arguments: list[Any] = [literal(_SQLITE_FORMAT), literal("now")]
    if element.seconds:
        arguments.append(literal(f"{element.seconds:+.3f} seconds"))
    return compiler.process(func.strftime(*arguments), **kw)
