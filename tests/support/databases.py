"""One migrated database per test session (per xdist worker), emptied between tests.

Creating a database per test from a template and dropping it afterwards cost two ``psql``
subprocesses per PostgreSQL test; migrating a fresh SQLite file per test cost an Alembic run.
Here each backend is migrated once per session and each test gets it empty:

- PostgreSQL (and PgBouncer in front of it): one database per worker, copied once from the
  migrated template; before each test one ``TRUNCATE`` of every table over a psycopg
  connection that stays open. If a test changed the schema (a migration test going down, a
  table dropped) the database is copied from the template again, so the next test still
  starts from the schema at head.
- SQLite: a migrated file made once; each test gets a byte copy of it in its own tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

import psycopg
from psycopg import sql

from cronkeeper.storage.engine import create_engine, upgrade
from tests.support.pg import PgCluster

__all__ = ["SharedPgDatabase", "SqliteTemplate", "migrated", "worker_id"]

_LOCK_TIMEOUT = "2s"
"""How long the TRUNCATE waits for a lock a previous test's leftover connection holds
before those connections are ended (the copy-per-test scheme ended them with DROP … FORCE)."""


def worker_id() -> str:
    """``gw0``, ``gw1``… under pytest-xdist; ``main`` otherwise."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def migrated(url: str) -> str:
    """Apply every migration to the database at ``url`` (from sync code); returns ``url``."""

    async def migrate() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    return url


class SqliteTemplate:
    """A migrated SQLite file; ``copy_to(path)`` gives a test its own empty database."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        migrated(f"sqlite:///{self.path}")
        # The engine is disposed: WAL checkpointed, the -wal/-shm files gone or empty.
        for suffix in ("-wal", "-shm"):
            extra = Path(f"{self.path}{suffix}")
            if extra.exists() and extra.stat().st_size:
                raise RuntimeError(f"{extra} still holds data after the migration")

    def copy_to(self, path: Path) -> str:
        shutil.copyfile(self.path, path)
        return f"sqlite:///{path}"


class SharedPgDatabase:
    """This worker's database on ``cluster``: copied from ``template`` once, emptied per test."""

    def __init__(self, cluster: PgCluster, template: str, name: str) -> None:
        self.cluster = cluster
        self.template = template
        self.name = name
        self._conn: psycopg.Connection | None = None
        self._expected: tuple[list[str], str] | None = None
        self._recreate()
        self._expected = self._shape(self._connection())

    # -- connections -------------------------------------------------------------------------

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.cluster.url("postgres"), autocommit=True, connect_timeout=10)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self.cluster.url(self.name), autocommit=True, connect_timeout=10
            )
            self._conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    # -- the database ------------------------------------------------------------------------

    def _recreate(self) -> None:
        self.close()
        with self._admin() as admin:
            ident = sql.Identifier(self.name)
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    ident, sql.Identifier(self.template)
                )
            )

    def _end_other_sessions(self) -> None:
        with self._admin() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )

    @staticmethod
    def _shape(conn: psycopg.Connection) -> tuple[list[str], str]:
        """(tables of ``public``, a fingerprint of its whole schema): every relation with its
        kind, access list and row-level security, column, default, constraint, function,
        trigger and policy, and the Alembic revision. A test that created a trigger (to make
        the database refuse a row) or granted a role leaves a different fingerprint."""
        row = conn.execute(_SHAPE).fetchone()
        assert row is not None
        return list(row[0]), str(row[1])

    def reset(self) -> str:
        """Empty every table (schema at head guaranteed); returns the database's name."""
        if not self.cluster.is_running():  # a test stopped it and failed before starting it
            self.cluster.start()
        for attempt in range(3):
            try:
                self._truncate()
                return self.name
            except psycopg.errors.LockNotAvailable:
                self._end_other_sessions()
            except (psycopg.errors.UndefinedTable, _SchemaChanged):
                self._recreate()
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                self.close()  # the server was restarted under the open connection
        self._truncate()
        return self.name

    def _truncate(self) -> None:
        conn = self._connection()
        tables, fingerprint = self._shape(conn)
        if (tables, fingerprint) != self._expected:
            raise _SchemaChanged
        names = [sql.Identifier(t) for t in tables if t != "alembic_version"]
        if names:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(names))
            )

    def drop(self) -> None:
        self.close()
        if self.cluster.is_running():
            with self._admin() as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.name)
                    )
                )


_SHAPE = """
WITH public_rel AS (
  SELECT c.oid, c.relname, c.relkind, c.relacl, c.relrowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
), items AS (
  SELECT concat_ws(' ', 'rel', relname, relkind::text, relacl::text, relrowsecurity::text)
    AS item FROM public_rel
  UNION ALL
  SELECT concat_ws(' ', 'col', r.relname, a.attname, a.atttypid::text, a.attnotnull::text,
                   pg_get_expr(d.adbin, d.adrelid))
  FROM public_rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE NOT a.attisdropped
  UNION ALL
  SELECT concat_ws(' ', 'con', conname::text, pg_get_constraintdef(oid)) FROM pg_constraint
  WHERE connamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'fun', proname::text, pg_get_function_identity_arguments(oid))
  FROM pg_proc WHERE pronamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'trg', tgname::text) FROM pg_trigger t
  JOIN public_rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
  UNION ALL
  SELECT concat_ws(' ', 'pol', polname::text) FROM pg_policy p
  JOIN public_rel r ON r.oid = p.polrelid
  UNION ALL
  SELECT concat_ws(' ', 'rev', version_num::text) FROM alembic_version
)
SELECT
  coalesce((SELECT array_agg(relname::text ORDER BY relname) FROM public_rel WHERE relkind = 'r'),
           '{}'),
  md5(coalesce(string_agg(item, ';' ORDER BY item), ''))
FROM items
"""


class _SchemaChanged(Exception):
    """The worker's database no longer has the template's tables or revision."""
