"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL.

The PostgreSQL cluster is started once per session by the suite itself (as the ``postgres``
OS user when we are root), migrated once into a template database, and each test gets a
fresh copy of that template: fast, isolated, and the real server.
Select backends with ``CRONKEEPER_TEST_BACKENDS=sqlite`` (or ``postgresql``); default both.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.config import Settings
from cronkeeper.storage.engine import create_engine, upgrade
from tests.support.pg import PgBouncer, PgCluster, start_pgbouncer, start_postgres

BACKENDS = tuple(
    b.strip()
    for b in os.environ.get("CRONKEEPER_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
)
TEMPLATE_DB = "ck_template"
SECRET = "test-secret-0123456789"

_ENV_PREFIXES = ("CRONKEEPER_", "META_", "MIXPANEL_", "NOTION_")
_ENV_NAMES = ("DATABASE_URL", "CRON_SECRET", "ALERT_WEBHOOK_URL")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's environment or .env file."""
    for name in list(os.environ):
        keep = name == "CRONKEEPER_TEST_BACKENDS"
        if (name in _ENV_NAMES or name.startswith(_ENV_PREFIXES)) and not keep:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


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
    name = f"t_{uuid.uuid4().hex[:12]}"
    if not cluster.is_running():
        cluster.start()
    cluster.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return name


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pooler: also run this test through PgBouncer in transaction mode (Supabase's pooler)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend`` over the backends; tests marked ``pooler`` get PgBouncer too."""
    if "backend" not in metafunc.fixturenames:
        return
    explicit = any(
        "backend" in str(marker.args[0])
        for marker in metafunc.definition.iter_markers("parametrize")
    )
    if explicit:
        return
    backends = list(BACKENDS)
    if metafunc.definition.get_closest_marker("pooler") and "postgresql" in BACKENDS:
        backends.append("pgbouncer")
    metafunc.parametrize("backend", backends, indirect=True)


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
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of the current backend."""
    if backend == "sqlite":
        yield migrated(f"sqlite:///{tmp_path}/cronkeeper-test.db")
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = fresh_postgres_database(cluster)
    if backend == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        yield bouncer.url(name)
    else:
        yield cluster.url(name)
    if not cluster.is_running():
        cluster.start()
    cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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
