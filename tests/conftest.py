"""Shared fixtures: a migrated, empty database per test, on the backends its subject needs.

Backends. A test that takes ``database_url`` (or ``engine``, ``settings``…) runs on SQLite.
A test whose *subject is SQL* — the ledger, the lease, job state, upserts and money, the
reads, migrations, one job end to end — asks for every backend with the ``sql`` marker
(``pytestmark = pytest.mark.sql`` for a module, or ``@pytest.mark.sql`` for one test) and then
runs on SQLite, PostgreSQL and PgBouncer in transaction mode (Supabase's pooler).
``@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)`` picks backends by hand
(the tests that stop, pause or restart the server). ``pooler`` is the older name of ``sql``.
``CRONKEEPER_TEST_BACKENDS=sqlite`` (or ``postgresql``) narrows every choice; default both.

Databases (tests/support/databases.py). The PostgreSQL cluster is started once per session
(per pytest-xdist worker: each has its own cluster, since some tests stop it), migrated once
into a template, copied once into the worker's database, and emptied before every test with
one ``TRUNCATE`` over a psycopg connection; a test that changed the schema gets the template
copied again. SQLite: a migrated file is made once per session and each test gets a copy.

Time. No test compares wall-clock readings (tests/test_suite_hygiene.py fails on
``elapsed < 2.5`` and real sleeps of more than half a second): waits are proved with the
injected clock and sleep, attempt counts and request logs; a wait for an event is bounded
only so that a broken test fails instead of hanging.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.config import Settings
from cronkeeper.storage.engine import create_engine
from tests.support.databases import SharedPgDatabase, SqliteTemplate, migrated, worker_id
from tests.support.pg import PgBouncer, PgCluster, start_pgbouncer, start_postgres

__all__ = [
    "BACKENDS",
    "SECRET",
    "TEMPLATE_DB",
    "FakeClock",
    "fresh_postgres_database",
    "make_settings",
    "migrated",
]

BACKENDS = tuple(
    b.strip()
    for b in os.environ.get("CRONKEEPER_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
)
TEMPLATE_DB = "ck_template"
SECRET = "test-secret-0123456789"

_ENV_PREFIXES = ("CRONKEEPER_", "META_", "MIXPANEL_", "NOTION_")
_ENV_NAMES = ("DATABASE_URL", "CRON_SECRET", "ALERT_WEBHOOK_URL")
_SQL_MARKERS = ("sql", "pooler")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's environment or .env file."""
    for name in list(os.environ):
        keep = name == "CRONKEEPER_TEST_BACKENDS"
        if (name in _ENV_NAMES or name.startswith(_ENV_PREFIXES)) and not keep:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = start_postgres()
    try:
        cluster.create_database(TEMPLATE_DB)
        migrated(cluster.url(TEMPLATE_DB))
        yield cluster
    finally:
        cluster.cleanup()


def fresh_postgres_database(cluster: PgCluster) -> str:
    """A new database copied from the migrated template (for module-scoped fixtures)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    if not cluster.is_running():
        cluster.start()
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
            )
        )
    return name


@pytest.fixture(scope="session")
def _pg_database(pg_cluster: PgCluster) -> Iterator[SharedPgDatabase]:
    database = SharedPgDatabase(pg_cluster, TEMPLATE_DB, f"ck_{worker_id()}")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sql: the test's subject is SQL; run it on SQLite, PostgreSQL and PgBouncer "
        "(transaction mode, Supabase's pooler). Unmarked database tests run on SQLite.",
    )
    config.addinivalue_line("markers", "pooler: the older name of the `sql` marker")


def backends_for(definition: pytest.Function | pytest.Item) -> list[str]:
    """The backends a test runs on: every one for an SQL subject, else the first selected."""
    if not any(definition.get_closest_marker(m) for m in _SQL_MARKERS):
        return ["sqlite"] if "sqlite" in BACKENDS else list(BACKENDS[:1])
    backends = list(BACKENDS)
    if "postgresql" in BACKENDS:
        backends.append("pgbouncer")
    return backends


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend``: see the module docstring."""
    if "backend" not in metafunc.fixturenames:
        return
    explicit = any(
        "backend" in str(marker.args[0])
        for marker in metafunc.definition.iter_markers("parametrize")
    )
    if explicit:
        return
    metafunc.parametrize("backend", backends_for(metafunc.definition), indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first (a stable sort: the rest keep their order). With two xdist
    workers a long test collected last runs alone at the end while the other worker idles;
    started first, it runs beside everything else."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def pgbouncer(pg_cluster: PgCluster) -> Iterator[PgBouncer]:
    bouncer = start_pgbouncer(pg_cluster)
    try:
        yield bouncer
    finally:
        bouncer.cleanup()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of the current backend."""
    if backend == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("_sqlite_template")
        return template.copy_to(tmp_path / "cronkeeper-test.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    shared: SharedPgDatabase = request.getfixturevalue("_pg_database")
    name = shared.reset()
    if backend == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.url(name)
    return cluster.url(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, timeout=5.0)
    yield eng
    await eng.dispose()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "cron_secret": SECRET}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
