"""What a database failure *is*, told apart once for both dialects.

Callers act on the kind, never on a driver's exception or its text:

- :class:`~cronkeeper.errors.DatabaseUnreachable`: no connection, a connection lost, no
  answer within ``CRONKEEPER_LEDGER_TIMEOUT`` — an outage. It opens the breaker; a run
  goes on unguarded and its unrecorded writes are spooled.
- :class:`~cronkeeper.errors.DatabaseLocked`: SQLite's write lock stayed held past the busy
  timeout (a long transaction, an analyst's ``sqlite3`` shell) — contention on a database
  that is fine. It never opens the breaker; the write is spooled.
- :class:`~cronkeeper.errors.SchemaBehind`: a missing table or column (a migration not
  applied) — ``cronkeeper db upgrade``.
- :class:`~cronkeeper.errors.PermissionDenied`: the role lacks a privilege (PostgreSQL
  ``42501``, a read-only SQLite file).
- :class:`~cronkeeper.errors.StatementFailed`: anything else the database refused.

PostgreSQL is told by SQLSTATE (psycopg's ``sqlstate``; the codes are listed in
https://www.postgresql.org/docs/current/errcodes-appendix.html), SQLite by its primary
result code (``sqlite_errorcode``, https://www.sqlite.org/rescode.html) and, for the schema
errors SQLite reports as a generic ``SQLITE_ERROR``, by the message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cronkeeper.errors import (
    DatabaseLocked,
    DatabaseUnreachable,
    PermissionDenied,
    SchemaBehind,
    StatementFailed,
    StorageError,
    first_line,
)
from cronkeeper.redact import truncate

__all__ = ["database_error", "is_unreachable"]

# SQLite primary result codes (https://www.sqlite.org/rescode.html).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CANTOPEN, _SQLITE_AUTH = 10, 14, 23
_SQLITE_SCHEMA_TEXT = ("no such table", "no such column", "has no column named")

# PostgreSQL SQLSTATEs (Appendix A of the PostgreSQL manual).
_PG_SCHEMA = {"42P01", "42703", "3F000", "42883"}  # undefined table/column/schema/function
_PG_PERMISSION = {"42501", "28000", "28P01"}  # insufficient privilege, bad role or password
_PG_LOCKED = {"55P03"}  # lock_not_available
_PG_UNREACHABLE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention

_HINTS: dict[type[StorageError], str] = {
    SchemaBehind: "the database schema is behind this version: run `cronkeeper db upgrade`",
    PermissionDenied: "the database role lacks a privilege cronkeeper needs",
    DatabaseLocked: "another connection held the SQLite write lock",
}


def _kind(exc: BaseException) -> type[StorageError]:
    if isinstance(exc, StorageError):
        return type(exc)
    if isinstance(exc, TimeoutError):
        return DatabaseUnreachable
    driver = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(driver, sqlite3.Error):
        code = getattr(driver, "sqlite_errorcode", 0) & 0xFF
        text = str(driver).lower()
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
            return DatabaseLocked
        if code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_AUTH) or "readonly" in text:
            return PermissionDenied
        if any(marker in text for marker in _SQLITE_SCHEMA_TEXT):
            return SchemaBehind
        if code in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
            return DatabaseUnreachable
    sqlstate = getattr(driver, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate in _PG_SCHEMA:
            return SchemaBehind
        if sqlstate in _PG_PERMISSION:
            return PermissionDenied
        if sqlstate in _PG_LOCKED:
            return DatabaseLocked
        if sqlstate.startswith(_PG_UNREACHABLE_CLASSES):
            return DatabaseUnreachable
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return DatabaseUnreachable
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseUnreachable
    return StatementFailed


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (not that it refused a row,
    nor that SQLite's lock was held: contention is no outage)."""
    return issubclass(_kind(exc), DatabaseUnreachable)


def database_error(
    exc: BaseException,
    *,
    seconds: float,
    redact: Callable[[str], str] = str,
    local: bool = False,
) -> StorageError:
    """``exc`` as one of the kinds above, its message one redacted line.

    SQLAlchemy's messages go on with the statement and its parameters: only the driver's
    first line is kept.
    """
    if isinstance(exc, StorageError):
        return exc
    kind = _kind(exc)
    if local and isinstance(exc, TimeoutError):  # a SQLite file cannot be unreachable
        kind = DatabaseLocked
    if isinstance(exc, TimeoutError):
        detail = f"no answer within {seconds:g} s"
    else:
        detail = truncate(redact(f"{type(exc).__name__}: {first_line(exc)}"), 500)
    hint = _HINTS.get(kind)
    return kind(f"{detail} ({hint})" if hint else detail)
