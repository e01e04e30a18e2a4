"""Alembic environment: always run programmatically, on a connection we hand over.

``cronkeeper db upgrade`` (and the SQLite first-use path) passes a live synchronous
connection in ``config.attributes["connection"]``; there is no alembic.ini to keep in sync.
On PostgreSQL an advisory lock makes concurrent upgrades from several replicas take turns.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from cronkeeper.storage.schema import metadata

MIGRATION_LOCK_KEY = 0x6372_6F6E  # "cron"

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the alembic CLI is not a supported entry point
    raise RuntimeError("run migrations with `cronkeeper db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    context.run_migrations()
