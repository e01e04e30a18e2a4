"""The one bounded database call (issue 16): one timeout, one breaker, one error mapping.

Each kind is produced by a real database, not a fabricated exception: the mapping reads
SQLSTATEs and SQLite result codes, and only a real driver proves it reads the right ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import (
    BreakerOpen,
    DatabaseLocked,
    DatabaseUnreachable,
    SchemaBehind,
    StatementFailed,
    StorageError,
)
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.engine import create_engine

pytestmark = pytest.mark.sql


async def _execute(engine: AsyncEngine, sql: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql))


async def test_a_missing_table_is_a_schema_behind_and_leaves_the_breaker_closed(
    engine: AsyncEngine,
) -> None:
    call = BoundedCall(5.0)
    with pytest.raises(SchemaBehind, match="cronkeeper db upgrade"):
        await call(lambda: _execute(engine, "SELECT * FROM cron_nothing"))
    assert call.breaker.allow()


async def test_a_refused_row_is_a_statement_failure_not_an_outage(engine: AsyncEngine) -> None:
    call = BoundedCall(5.0)
    await call(lambda: _execute(engine, "CREATE TABLE t_unique (x INTEGER PRIMARY KEY)"))
    insert = "INSERT INTO t_unique (x) VALUES (1)"
    await call(lambda: _execute(engine, insert))
    with pytest.raises(StatementFailed) as raised:
        await call(lambda: _execute(engine, insert))
    assert isinstance(raised.value.__cause__, IntegrityError)
    assert "INSERT" not in str(raised.value)  # the driver's first line, not the statement
    assert call.breaker.allow()


async def test_a_database_that_refuses_connections_is_unreachable_and_opens_the_breaker() -> None:
    engine = create_engine("postgresql://nobody:pw@127.0.0.1:9/nothing", timeout=1.0)
    call = BoundedCall(5.0, Breaker(cooldown=60))
    try:
        with pytest.raises(DatabaseUnreachable) as raised:
            await call(lambda: _execute(engine, "SELECT 1"))
        assert "pw" not in str(raised.value)
        assert not call.breaker.allow()
        with pytest.raises(BreakerOpen):
            await call(lambda: _execute(engine, "SELECT 1"), gated=True)
    finally:
        await engine.dispose()


async def test_no_answer_in_time_is_unreachable_and_says_the_timeout() -> None:
    never = asyncio.Event()
    call = BoundedCall(0.01)
    with pytest.raises(DatabaseUnreachable, match=r"no answer within 0\.01 s"):
        await call(never.wait)
    assert not call.breaker.allow()


async def test_on_a_sqlite_file_running_out_of_time_is_contention_not_an_outage() -> None:
    """A loaded machine can outlast the busy timeout's margin: the call's own timeout then
    fires first. A local file cannot be unreachable, so the breaker stays closed (the merged
    contention test failed this way under two pytest workers)."""
    never = asyncio.Event()
    call = BoundedCall(0.01, local=True)
    with pytest.raises(DatabaseLocked, match=r"no answer within 0\.01 s"):
        await call(never.wait)
    assert call.breaker.allow()


async def test_sqlite_held_locked_by_another_writer_is_contention_not_an_outage(
    tmp_path: Path,
) -> None:
    """An analyst's ``sqlite3`` shell in ``BEGIN IMMEDIATE`` (issue 20, item 5)."""
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}", timeout=0.05)
    call = BoundedCall(5.0)
    await call(lambda: _execute(engine, "CREATE TABLE t (x INTEGER)"))
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseLocked, match="write lock"):
            await call(lambda: _execute(engine, "INSERT INTO t VALUES (1)"))
        assert call.breaker.allow()
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
        await engine.dispose()


async def test_errors_already_mapped_pass_through_unchanged() -> None:
    mine = StorageError("said by the work itself")

    async def work() -> None:
        raise mine

    with pytest.raises(StorageError) as raised:
        await BoundedCall(1.0)(work)
    assert raised.value is mine
