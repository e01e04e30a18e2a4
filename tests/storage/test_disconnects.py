"""Connections the server dropped while they sat in the pool (issue 16, point 3).

Reads check their connection out without a ping (a round trip saved on every health read)
and are read again once on a fresh connection when the first one was gone
(:func:`cronkeeper.storage.engine.run_read`); writes are never retried, so they keep the
ping. Proved against a real server that ends every connection of the pool: PostgreSQL's
``pg_terminate_backend``, and PgBouncer's ``KILL`` (which drops its clients' connections,
the ones the pool holds).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cronkeeper.api.app import create_app
from cronkeeper.config import Settings
from cronkeeper.ledger import Ledger
from cronkeeper.service import Service
from cronkeeper.storage import engine as engine_module
from cronkeeper.storage.engine import create_engine, run_read
from cronkeeper.storage.schema import cron_runs
from tests.conftest import SECRET, FakeClock

AUTH = {"Authorization": f"Bearer {SECRET}"}
SERVERS = pytest.mark.parametrize("backend", ["postgresql", "pgbouncer"], indirect=True)

pytestmark = pytest.mark.sql


def drop_every_connection(request: pytest.FixtureRequest, backend: str, url: str) -> int:
    """End every connection cronkeeper holds to ``url``'s database; how many were ended."""
    database = make_url(url).database
    if backend == "pgbouncer":
        bouncer = request.getfixturevalue("pgbouncer")
        admin = psycopg.connect(bouncer.url("pgbouncer"), autocommit=True)
        try:
            clients = admin.cursor().execute("SHOW CLIENTS").fetchall()
            ours = sum(1 for row in clients if row[2] == database)  # type, user, database, …
            admin.execute(f'KILL "{database}"', prepare=False)
            admin.execute(f'RESUME "{database}"', prepare=False)
        finally:
            admin.close()
        return ours
    cluster = request.getfixturevalue("pg_cluster")
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'cronkeeper'",
            (database,),
        ).fetchone()
    assert ended is not None
    return int(ended[0])


def retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum("reading again on a new one" in r.getMessage() for r in caplog.records)


@SERVERS
async def test_health_answers_at_once_after_the_server_dropped_every_pooled_connection(
    settings: Settings,
    clock: FakeClock,
    backend: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(service)), base_url="http://t"
    )
    async with client:
        before = await client.get("/api/cron/health", headers=AUTH)
        assert before.status_code == 200
        # The health read's connection (one statement: runs, job states, heartbeats) is back
        # in the pool.
        assert drop_every_connection(request, backend, settings.database_url) >= 1
        caplog.set_level(logging.INFO, logger="cronkeeper.storage")
        after = await client.get("/api/cron/health", headers=AUTH)
    await service.aclose()
    assert after.status_code == 200, after.text
    assert after.json()["checks"] == before.json()["checks"]
    assert retries(caplog) >= 1, "the first read met a dropped connection and read again"


@SERVERS
async def test_a_write_after_the_server_dropped_every_pooled_connection_is_stored(
    engine: AsyncEngine, backend: str, request: pytest.FixtureRequest, database_url: str
) -> None:
    """A write is not retried (it may have been applied), so its connection is pinged at
    checkout, as ``pool_pre_ping`` did: the first write after a restart is stored, not
    spooled."""
    async with engine.connect() as conn:  # a connection to drop
        await conn.execute(text("SELECT 1"))
    assert drop_every_connection(request, backend, database_url) >= 1
    ledger = Ledger(engine)  # no spool: a start it could not store comes back as None
    assert await ledger.start_cron_run("collect-daily") is not None
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(cron_runs))).scalar() == 1


@SERVERS
async def test_reads_skip_the_ping_and_writes_keep_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(database_url)
    pings = 0
    real_ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        nonlocal pings
        pings += 1
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)

    async def one(conn: AsyncConnection) -> Any:
        return (await conn.execute(text("SELECT 1"))).scalar()

    try:
        assert await run_read(engine, one) == 1  # a new connection: never pinged
        assert await run_read(engine, one) == 1  # a pooled one, for a read: not pinged
        assert pings == 0
        async with engine.begin() as conn:  # a pooled one, for a write: pinged
            await conn.execute(text("SELECT 1"))
        assert pings == 1
        assert await run_read(engine, one) == 1  # and the next read still is not
        assert pings == 1
    finally:
        await engine.dispose()


# -- the retry's rule, on any backend --------------------------------------------------------


def _dropped(invalidated: bool) -> DBAPIError:
    return OperationalError(
        "SELECT 1",
        None,
        Exception("server closed the connection"),
        connection_invalidated=invalidated,
    )


def _failing(
    times: int, invalidated: bool = True
) -> tuple[Callable[[AsyncConnection], Awaitable[int]], list[int]]:
    attempts: list[int] = []

    async def work(conn: AsyncConnection) -> int:
        attempts.append(1)
        if len(attempts) <= times:
            raise _dropped(invalidated)
        return int((await conn.execute(text("SELECT 7"))).scalar_one())

    return work, attempts


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_read_on_a_dropped_connection_is_read_once_more(engine: AsyncEngine) -> None:
    work, attempts = _failing(times=1)
    assert await run_read(engine, work) == 7
    assert len(attempts) == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_read_dropped_twice_fails_after_two_attempts(engine: AsyncEngine) -> None:
    work, attempts = _failing(times=2)
    with pytest.raises(OperationalError):
        await run_read(engine, work)
    assert len(attempts) == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_any_other_read_failure_is_not_retried(engine: AsyncEngine) -> None:
    work, attempts = _failing(times=1, invalidated=False)
    with pytest.raises(OperationalError):
        await run_read(engine, work)
    assert len(attempts) == 1


async def test_a_failed_read_checkout_leaves_later_checkouts_pinged() -> None:
    """The "reading" mark covers a read's checkout only, even when that checkout fails."""
    engine = create_engine("postgresql://u:p@127.0.0.1:1/none", timeout=1.0)
    try:
        with pytest.raises(DBAPIError):
            await run_read(engine, _failing(times=0)[0])
    finally:
        await engine.dispose()
    assert engine_module._reading.get() is False


def test_reads_outside_storage_take_their_connection_through_run_read() -> None:
    """An unpinged connection without the retry would fail the first read after a restart."""
    src = Path(engine_module.__file__).resolve().parents[1]
    users = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.name != "engine.py" and "read_connection" in path.read_text(encoding="utf-8")
    ]
    assert users == []
