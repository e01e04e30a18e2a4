"""Turn the ``DATABASE_URL`` a user writes into the async SQLAlchemy URL we connect with.

Users paste what their provider shows them: ``postgres://`` (Heroku, Supabase),
``postgresql://…?sslmode=require``, or a plain ``sqlite:///file.db``. The async driver is
our business, not theirs, so it is chosen here (psycopg 3 for PostgreSQL, aiosqlite for
SQLite). Error messages never repeat the password.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "database_identity",
    "database_password",
    "default_spool_dir",
    "normalize_database_url",
    "safe_url",
]

DEFAULT_URL = "sqlite:///cronkeeper.db"
# Query parameters some providers add that libpq does not know; they would make it refuse
# to connect ("invalid connection option"), so they are dropped.
_NON_LIBPQ_PARAMS = ("pgbouncer", "connection_limit", "pool_timeout", "schema", "supa")


def _parse(raw: str) -> URL:
    text = (raw or DEFAULT_URL).strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    try:
        return make_url(text)
    except ArgumentError:
        scheme = text.split("://", 1)[0] if "://" in text else "?"
        raise ValueError(
            f"DATABASE_URL is not a valid URL (scheme {scheme!r}); expected "
            "sqlite:///relative.db, sqlite:////absolute/path.db or postgresql://user:pass@host/db"
        ) from None


def normalize_database_url(raw: str) -> str:
    """The async SQLAlchemy URL (as a string, password included) for ``raw``."""
    url = _parse(raw)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, ""):
            raise ValueError(
                "DATABASE_URL names no SQLite file: use sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        url = url.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        if not url.host and "host" not in url.query:
            raise ValueError(
                "DATABASE_URL names no PostgreSQL host: postgresql://user:pass@host/db"
            )
        query = {k: v for k, v in url.query.items() if k not in _NON_LIBPQ_PARAMS}
        url = url.set(drivername="postgresql+psycopg", query=query)
    else:
        raise ValueError(
            f"DATABASE_URL scheme {url.drivername!r} is not supported: use sqlite:///file.db "
            "or postgresql://user:pass@host/db (postgres:// works too)"
        )
    return url.render_as_string(hide_password=False)


def safe_url(raw: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return _parse(raw).render_as_string(hide_password=True)
    except ValueError:
        return "<invalid DATABASE_URL>"


def database_password(raw: str) -> str | None:
    try:
        return _parse(raw).password
    except ValueError:
        return None


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser().resolve()


DEFAULT_SPOOL_DIR = "cronkeeper-spool"


def default_spool_dir(raw: str) -> Path:
    """Where unrecorded run ends wait for the database when ``CRONKEEPER_SPOOL_DIR`` is unset.

    SQLite: beside the database file (``cronkeeper.db-spool/``, like its ``-wal`` file), so
    the two travel together. PostgreSQL: ``cronkeeper-spool/`` in the working directory, where
    the default SQLite file and ``.env`` live too.
    """
    sqlite = _sqlite_file(_parse(raw))
    if sqlite is not None:
        return sqlite.with_name(sqlite.name + "-spool")
    return Path(DEFAULT_SPOOL_DIR).resolve()


def database_identity(raw: str) -> str:
    """A short stable name for the database ``raw`` points at (no credentials in it).

    Spooled run ends are filed under it, so one spool directory shared by several databases
    never replays a run into the wrong one.
    """
    url = _parse(raw)
    sqlite = _sqlite_file(url)
    if sqlite is not None:
        where = f"sqlite:{sqlite}"
    else:
        host = url.host or url.query.get("host")
        where = f"{url.get_backend_name()}:{host}:{url.port}/{url.database}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]
