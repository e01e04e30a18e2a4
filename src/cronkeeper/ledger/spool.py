"""Run ends the database could not take, kept on local disk until it can.

A run that ends while the database is down has done its work; only its record is missing.
Left alone, its row would stay ``running`` and later be closed as "abandoned" — a lie about
a run that finished. So the end (status, records, message, time) is written to a spool
directory — one small JSON file per run, written to a temporary name, fsynced, renamed and
the directory fsynced, so a crash leaves either the whole file or none — and replayed at the
next contact with the database: the next run (before it closes abandoned rows), and every
command that opens the service (``serve``, ``scheduler``, ``run``, ``health``, ``runs`` …).

Replay is idempotent: it only closes a row that is still ``running``, and deletes the file
once the database has answered, so two processes replaying the same spool at once, or a
replay of an end the database did record after all, change nothing. Files are named by the
database they belong to (:func:`~cronkeeper.storage.url.database_identity`): one directory
may serve several databases. Messages are redacted before they are spooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger.models import FINAL_STATUSES, FinalStatus
from cronkeeper.storage.schema import cron_runs
from cronkeeper.storage.url import database_identity, default_spool_dir

__all__ = ["Spool", "SpooledEnd", "replay"]

log = logging.getLogger("cronkeeper.ledger")
T = TypeVar("T")
Bounded = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]


@dataclass(frozen=True)
class SpooledEnd:
    """What ``complete_cron_run`` would have written."""

    run_id: str
    cron_name: str | None
    status: FinalStatus
    records_count: int
    error_message: str | None
    finished_at: datetime

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"finished_at": self.finished_at.isoformat()})

    @classmethod
    def from_json(cls, text: str) -> SpooledEnd:
        data: dict[str, Any] = json.loads(text)
        status = data["status"]
        if status not in FINAL_STATUSES:
            raise ValueError(f"status {status!r} is not a final status")
        finished_at = datetime.fromisoformat(data["finished_at"])
        if finished_at.tzinfo is None:
            raise ValueError("finished_at has no time zone")
        return cls(
            run_id=str(uuid.UUID(data["run_id"])),
            cron_name=None if data["cron_name"] is None else str(data["cron_name"]),
            status=status,
            records_count=max(0, int(data["records_count"])),
            error_message=None if data["error_message"] is None else str(data["error_message"]),
            finished_at=finished_at,
        )


class Spool:
    """A directory of spooled run ends for one database. Blocking file I/O: call it from a
    thread (:func:`replay` and the ledger do)."""

    def __init__(self, directory: Path, database: str) -> None:
        self.directory = directory
        self.database = database

    @classmethod
    def for_database(cls, database_url: str, directory: Path | None = None) -> Spool:
        """``directory`` (``CRONKEEPER_SPOOL_DIR``) or the default place for that database."""
        return cls(directory or default_spool_dir(database_url), database_identity(database_url))

    def _path(self, run_id: str) -> Path:
        return self.directory / f"{self.database}.{run_id}.json"

    def write(self, end: SpooledEnd) -> Path:
        """Durably store ``end``: when this returns, a power cut does not lose it."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self._path(end.run_id)
        temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, end.to_json().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, final)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself is durable only once its directory is
        finally:
            os.close(directory)
        return final

    def pending(self) -> list[SpooledEnd]:
        """Every readable spooled end of this database, oldest end first."""
        ends = []
        for path in sorted(self.directory.glob(f"{self.database}.*.json")):
            try:
                ends.append(SpooledEnd.from_json(path.read_text()))
            except FileNotFoundError:  # replayed by another process meanwhile
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable spool file %s: %s", path, exc)
        return sorted(ends, key=lambda end: end.finished_at)

    def run_ids(self) -> set[str]:
        return {end.run_id for end in self.pending()}

    def discard(self, run_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(run_id).unlink()


async def replay(spool: Spool, engine: AsyncEngine, bounded: Bounded[int]) -> list[str]:
    """Write every spooled end whose row is still ``running``; the ids closed.

    Stops at the first statement the database does not answer (the rest stay spooled for
    the next contact); raises nothing.
    """
    try:
        ends = await asyncio.to_thread(spool.pending)
    except OSError as exc:
        log.error("could not read the spool %s: %s", spool.directory, exc)
        return []
    closed: list[str] = []
    for done, end in enumerate(ends):

        async def close(end: SpooledEnd = end) -> int:
            async with engine.begin() as conn:
                result = await conn.execute(
                    update(cron_runs)
                    .where(cron_runs.c.id == end.run_id, cron_runs.c.status == "running")
                    .values(
                        status=end.status,
                        records_count=end.records_count,
                        error_message=end.error_message,
                        finished_at=end.finished_at,
                    )
                )
                return result.rowcount

        try:
            updated = await bounded(close)
        except Exception as exc:
            log.warning(
                "%d run end(s) stay in the spool %s: the database did not take them (%s)",
                len(ends) - done,
                spool.directory,
                type(exc).__name__,
            )
            break
        await asyncio.to_thread(spool.discard, end.run_id)
        if updated == 1:
            closed.append(end.run_id)
            log.info(
                "recorded the end of run %s of %s (%s) from the spool",
                end.run_id,
                end.cron_name or "?",
                end.status,
            )
    return closed
