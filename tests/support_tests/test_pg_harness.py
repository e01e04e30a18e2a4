"""The throwaway PostgreSQL / PgBouncer harness the rest of the suite stands on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support.pg import (
    DEFAULT_DB,
    PgBouncer,
    PgCluster,
    PsqlError,
    find_pg_bin,
    free_port,
    start_pgbouncer,
    start_postgres,
    wait_for_port,
)

pytestmark = pytest.mark.postgres_only


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with start_postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def bouncer(cluster: PgCluster) -> Iterator[PgBouncer]:
    with start_pgbouncer(cluster) as pgb:
        yield pgb


@pytest.fixture
def running(cluster: PgCluster) -> PgCluster:
    """The cluster, restarted if an earlier test left it stopped."""
    cluster.start()
    return cluster


def scalar(url: str, sql: str = "SELECT 1", **kwargs: Any) -> Any:
    with psycopg.connect(url, connect_timeout=5, autocommit=True, **kwargs) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_find_pg_bin_has_the_server_tools() -> None:
    bin_dir = find_pg_bin()
    for tool in ("initdb", "pg_ctl", "postgres", "psql"):
        assert (bin_dir / tool).exists(), tool


def test_url_points_at_the_test_database(running: PgCluster) -> None:
    assert running.url() == f"postgresql://postgres@127.0.0.1:{running.port}/{DEFAULT_DB}"
    assert running.url("x y", password="p@ss") == (
        f"postgresql://postgres:p%40ss@127.0.0.1:{running.port}/x%20y"
    )
    assert scalar(running.url()) == 1
    assert scalar(running.url(), "SELECT current_database()") == DEFAULT_DB


def test_server_settings_for_speed(running: PgCluster) -> None:
    assert running.psql("SHOW fsync") == "off"
    assert running.psql("SHOW max_connections") == "200"
    assert running.psql("SHOW server_encoding") == "UTF8"


def test_psql_and_create_database(running: PgCluster) -> None:
    assert running.psql("SELECT 1 + 1; SELECT 'a', 'b'") == "2\na|b"
    running.create_database("harness_other")
    assert scalar(running.url("harness_other"), "SELECT current_database()") == "harness_other"
    running.drop_database("harness_other")
    with pytest.raises(PsqlError, match="does not exist"):
        running.psql("SELECT 1", db="harness_other")
    with pytest.raises(PsqlError, match="division by zero"):
        running.psql("SELECT 1/0; SELECT 2")


def test_stop_then_start_simulates_an_outage(running: PgCluster) -> None:
    port = running.port
    running.stop()
    assert not running.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(running.url(), connect_timeout=2)
    running.stop()  # idempotent

    running.start()
    assert running.is_running()
    assert running.port == port
    assert scalar(running.url()) == 1


def test_immediate_stop_is_crash_like_and_recovers(running: PgCluster) -> None:
    # synchronous_commit=off: a crash may lose the last ~0.6 s of commits; CHECKPOINT pins them.
    running.psql("CREATE TABLE IF NOT EXISTS survives (v int); INSERT INTO survives VALUES (7)")
    running.psql("CHECKPOINT")
    running.stop(mode="immediate")
    assert not running.is_running()
    running.start()
    assert running.psql("SELECT max(v) FROM survives") == "7"


def test_query_through_pgbouncer(running: PgCluster, bouncer: PgBouncer) -> None:
    assert bouncer.port != running.port
    assert bouncer.url() == f"postgresql://postgres@127.0.0.1:{bouncer.port}/{DEFAULT_DB}"
    assert scalar(bouncer.url(), "SELECT 41 + 1", prepare_threshold=None) == 42
    with psycopg.connect(bouncer.url(), prepare_threshold=None, connect_timeout=5) as conn:
        for i in range(10):  # one transaction each; fine whatever server connection we get
            with conn.transaction():
                row = conn.execute("SELECT %s::int * 2", [i]).fetchone()
            assert row == (i * 2,)


def test_pgbouncer_survives_a_postgres_restart(running: PgCluster, bouncer: PgBouncer) -> None:
    assert scalar(bouncer.url(), prepare_threshold=None) == 1
    running.restart()
    # server_login_retry = 1 keeps this quick: the first attempt may hit a dead server conn.
    for _ in range(20):
        try:
            assert scalar(bouncer.url(), prepare_threshold=None) == 1
            break
        except psycopg.OperationalError:
            pass
    else:
        pytest.fail(f"pgbouncer never recovered:\n{bouncer.log_tail()}")
    assert bouncer.is_running()


def test_prepared_statements_break_behind_transaction_pooling(
    running: PgCluster, bouncer: PgBouncer
) -> None:
    """Why the app must connect with ``prepare_threshold=None`` behind a pooler.

    A prepares a statement on server connection S1 and gives S1 back at commit; B then holds S1
    in an open transaction, so A's next transaction runs on a new S2 that never saw it.
    """
    sql = "SELECT %s::int + 100"

    def scenario(prepare_threshold: int | None) -> object:
        with (
            psycopg.connect(
                bouncer.url(), autocommit=True, prepare_threshold=prepare_threshold
            ) as a,
            psycopg.connect(bouncer.url(), prepare_threshold=None) as b,
        ):
            a.execute(sql, [1])  # prepared on S1 when prepare_threshold == 0
            b.execute("SELECT 1")  # B's open transaction now holds S1
            row = a.execute(sql, [2]).fetchone()  # runs on another server connection
            b.rollback()
            return row

    with pytest.raises(errors.InvalidSqlStatementName):
        scenario(prepare_threshold=0)
    assert scenario(prepare_threshold=None) == (102,)


def test_wait_for_port(running: PgCluster) -> None:
    wait_for_port(running.host, running.port, timeout=1)
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)


def test_cleanup_stops_and_removes_everything() -> None:
    pg = start_postgres()
    root, port = pg.root, pg.port
    with start_pgbouncer(pg) as pgb:
        assert scalar(pgb.url(), prepare_threshold=None) == 1
        pgb_root, pgb_process = pgb.root, pgb.process
    assert pgb_process.poll() is not None
    assert not pgb_root.exists()

    with pg:
        assert pg.is_running()
    assert not pg.is_running()
    assert not Path(root).exists()
    with socket.socket() as s:  # port is free again
        s.bind(("127.0.0.1", port))
    pg.cleanup()  # idempotent
