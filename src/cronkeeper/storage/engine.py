"""Engines and migrations: the only place that knows which database is underneath."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cronkeeper.errors import SchemaBehind, StorageError
from cronkeeper.storage.url import normalize_database_url

__all__ = [
    "check_schema",
    "create_engine",
    "current_revision",
    "head_revision",
    "is_sqlite",
    "pool_limits",
    "read_connection",
    "run_read",
    "schema_lag",
    "upgrade",
]

log = logging.getLogger("cronkeeper.storage")

T = TypeVar("T")

SQLITE_BUSY_SHARE = 0.8
"""Of the ledger timeout, how long a SQLite write waits for another writer's lock."""


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


_reading: ContextVar[bool] = ContextVar("cronkeeper_reading", default=False)
"""Set while :func:`read_connection` checks a connection out: the checkout skips the ping."""


@asynccontextmanager
async def read_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: not pinged, and without a transaction where that saves
    round trips. Use it through :func:`run_read`, which retries a read on a stale connection.

    On PostgreSQL a read in autocommit needs no BEGIN/ROLLBACK round trips around it. SQLite's
    driver has no such round trips, and switching its mode costs a thread hop, so it is left
    as it is.
    """
    token = _reading.set(True)  # only for the checkout: whatever the caller does next pings
    try:
        conn = await engine.connect().start()
    finally:
        _reading.reset(token)
    try:
        if engine.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
    finally:
        await asyncio.shield(asyncio.ensure_future(conn.close()))  # as ``async with`` does


async def run_read(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``work(conn)`` on a :func:`read_connection`, once more on a fresh connection if the
    first one turns out to be gone (the server restarted, a pooler or a firewall dropped it).

    Optimistic disconnect handling, as SQLAlchemy documents it ("Disconnect Handling -
    Optimistic", https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-optimistic):
    a read's checkout sends no ping (a round trip and ~0.05 ms of client CPU saved on every
    read, three of which make a health request: issue 16); a statement that fails on a dead
    connection raises a :class:`~sqlalchemy.exc.DBAPIError` whose ``connection_invalidated``
    is true, and the pool has then invalidated every connection older than the failure, so
    one retry gets a fresh connection: a restarted server costs no failed read. Only reads
    are retried (a read twice is the same read); writes keep the ping (:func:`_ping_writes`)
    and are never retried here. A read that fails again, or for any other reason, raises as
    it did; the caller's bounded call (:mod:`.bounded`) times both attempts together.
    """
    try:
        async with read_connection(engine) as conn:
            return await work(conn)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.info(
            "a pooled connection was gone (%s); reading again on a new one", type(exc).__name__
        )
    async with read_connection(engine) as conn:
        return await work(conn)


def _ping_writes(engine: AsyncEngine) -> None:
    """Every checkout but a read's pings its connection first (pessimistic disconnect
    handling, "Disconnect Handling - Pessimistic" on the page cited in :func:`run_read`):
    a write must not fail on a connection the server dropped while it sat in the pool,
    because a write is not retried (it may have been applied). Raising
    :class:`~sqlalchemy.exc.InvalidatePoolError` from a ``checkout`` listener makes the pool
    invalidate every older connection and check out a new one, as ``pool_pre_ping`` does
    (SQLAlchemy's ``PoolEvents.checkout``); a connection made for this checkout is not pinged.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["cronkeeper_fresh"] = True

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        fresh = record.info.pop("cronkeeper_fresh", False)
        if fresh or _reading.get():
            return
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError() from exc
            raise


def _make_parent(database: Path) -> None:
    """Create the SQLite file's directory, or say in one line why it cannot be."""
    parent = database.expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "it is not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        raise StorageError(
            f"cannot create the directory {str(parent)!r} for the SQLite file of DATABASE_URL: "
            f"{why or type(exc).__name__}"
        ) from None


def _create_private(database: Path) -> None:
    """Create a missing SQLite file readable by its owner only (0600), before SQLite does.

    SQLite would create it ``0644`` (less the umask): the ledger, the accounts and the
    figures readable by every user of the machine (issue 19). An empty file is an empty
    database to SQLite, and its ``-wal`` and ``-shm`` files take the database file's
    permissions (SQLite's ``os_unix.c``, ``findCreateFileMode``: for a journal or WAL file it
    "queries the file-system for the permissions on the corresponding database file"). An
    existing file is left as its owner set it.
    """
    try:
        fd = os.open(database.expanduser(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite will say why it cannot open it, in its own words
    os.close(fd)


POOL_SIZE = 5
POOL_RESERVE = 10
"""Connections beyond one per concurrent unit: the ledger, lease renewals, health, the API."""


def pool_limits(concurrency: int | None) -> tuple[int, int]:
    """``(pool_size, max_overflow)`` for a process that stores up to ``concurrency`` units at
    once (``CRONKEEPER_CONCURRENCY``): room for every unit plus :data:`POOL_RESERVE`, so that
    no unit waits out ``pool_timeout`` and ends "fetched, but could not store" (issue 17.5:
    64 units on a pool of 15). Idle overflow connections are closed, not kept."""
    total = max(POOL_SIZE + 10, (concurrency or 0) + POOL_RESERVE)
    return POOL_SIZE, total - POOL_SIZE


def _pool_options(concurrency: int | None) -> dict[str, Any]:
    size, overflow = pool_limits(concurrency)
    if concurrency is not None:
        log.info(
            "database pool: up to %d connections (%d kept) for CRONKEEPER_CONCURRENCY=%d",
            size + overflow,
            size,
            concurrency,
        )
    return {"pool_size": size, "max_overflow": overflow}


def create_engine(
    database_url: str, *, timeout: float = 5.0, concurrency: int | None = None, **kwargs: Any
) -> AsyncEngine:
    """An async engine for ``database_url`` (the user's form; the driver is chosen here).

    Raises :class:`~cronkeeper.errors.StorageError` when a SQLite file's directory cannot be
    created (``sqlite:////dev/null/x.db``).

    PostgreSQL: psycopg 3 with server-side prepared statements off, so the same URL works
    through PgBouncer/Supavisor in transaction mode (Supabase's port 6543); connections are
    checked before a write uses them and a read is retried once on a fresh connection
    (:func:`run_read`), so a restarted server costs neither a failed request nor a restart
    of ours.
    SQLite: WAL so readers never wait for the writer, and a busy timeout instead of
    "database is locked" when two processes write at once. The busy timeout is a little
    shorter than ``timeout`` (the bounded call's, :mod:`.bounded`): a write that waited for
    another writer's lock then ends as SQLite's "database is locked" — contention, which
    leaves the breaker closed — rather than as the call's timeout, which reads as an outage.
    """
    url = make_url(normalize_database_url(database_url))
    if url.get_backend_name() == "sqlite":
        sizing: dict[str, Any] = {}
        if url.database and url.database != ":memory:":
            _make_parent(Path(url.database))
            _create_private(Path(url.database))
            if kwargs.get("poolclass") is None:  # a file: a queue pool, sized like PostgreSQL's
                sizing = _pool_options(concurrency)
        busy = timeout * SQLITE_BUSY_SHARE
        engine = create_async_engine(url, connect_args={"timeout": busy}, **{**sizing, **kwargs})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cursor.close()

        return engine
    connect_args = {
        "prepare_threshold": None,
        "connect_timeout": max(1, round(timeout)),
        "application_name": "cronkeeper",
    }
    options: dict[str, Any] = {"pool_recycle": 1800}
    if kwargs.get("poolclass") is not NullPool:  # NullPool refuses the sizing arguments
        options.update(_pool_options(concurrency), pool_timeout=timeout)
    options.update(kwargs)
    engine = create_async_engine(url, connect_args=connect_args, **options)
    _ping_writes(engine)
    return engine


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "cronkeeper:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def schema_lag(connection: Connection) -> str | None:
    """Why the schema is behind this version's migrations, or ``None``.

    ``None`` too when the database is at a revision this version does not know: a newer
    replica migrated it during a rolling deploy, and migrations are written so that the
    previous version keeps working (expand first, contract later).
    """
    current = _current(connection)
    head = head_revision()
    if current == head or (current is not None and current not in _known_revisions()):
        return None
    at = f"is at {current}" if current else "has no cronkeeper schema"
    return f"the database {at}, this version needs {head}: run `cronkeeper db upgrade`"


async def check_schema(conn: AsyncConnection) -> None:
    """Raise :class:`~cronkeeper.errors.SchemaBehind` when :func:`schema_lag` says why."""
    lag = await conn.run_sync(schema_lag)
    if lag is not None:
        raise SchemaBehind(lag)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(_alembic_config(connection), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str:
    """Apply every pending migration (up to ``revision``); returns the revision the database
    is now at."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)
    return head_revision() if revision == "head" else revision


_upgraded: set[str] = set()
_upgrade_lock = asyncio.Lock()


async def ensure_schema(engine: AsyncEngine) -> None:
    """SQLite's first use creates its own schema; PostgreSQL is migrated explicitly.

    On PostgreSQL a missing schema is reported, not fixed: creating tables and RLS on a shared
    server is an operator's decision (``cronkeeper db upgrade``).
    """
    key = str(engine.url)
    if key in _upgraded:
        return
    async with _upgrade_lock:
        if key in _upgraded:
            return
        if is_sqlite(engine):
            if await current_revision(engine) != head_revision():
                log.info("creating or upgrading the SQLite schema at %s", engine.url.database)
                await upgrade(engine)
        else:
            current = await current_revision(engine)
            if current != head_revision():
                log.error(
                    "database schema is at %s, this version needs %s: run `cronkeeper db upgrade`",
                    current or "nothing",
                    head_revision(),
                )
                return
        _upgraded.add(key)
