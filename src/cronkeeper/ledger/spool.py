"""Run starts and ends the database could not take, kept on local disk until it can.

A run that ends while the database is down has done its work; only its record is missing.
Left alone, its row would stay ``running`` and later be closed as "abandoned" — a lie about
a run that finished. So the end (status, records, message, time) is written to a spool
directory — one small JSON file per run, written to a temporary name, fsynced, renamed and
the directory fsynced, so a crash leaves either the whole file or none — and replayed at the
next contact with the database: the next run (before it closes abandoned rows), and every
command that opens the service (``serve``, ``scheduler``, ``run``, ``health``, ``runs`` …).

A run whose *start* could not be recorded is spooled the same way (``….start.json``, issue
20 item 4): replay inserts its row with its real start time before any end is replayed, so
the ledger eventually holds every run, not only those that began while the database answered.

Replay is idempotent: a start is inserted only if its row is not there (``ON CONFLICT DO
NOTHING``), an end only closes a row that is still ``running`` (or that another run closed
as abandoned meanwhile: the run's own end is the truth), and each file is deleted
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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import and_, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.clock import Clock, utcnow
from cronkeeper.ledger.models import ABANDONED, FINAL_STATUSES, FinalStatus
from cronkeeper.storage.schema import cron_runs
from cronkeeper.storage.upsert import insert_missing
from cronkeeper.storage.url import database_identity, default_spool_dir

__all__ = ["Spool", "SpooledEnd", "SpooledStart", "replay", "write_durably"]

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


R = TypeVar("R")


def _readable(paths: Iterable[Path], parse: Callable[[str], R]) -> list[R]:
    """``parse`` of each file that can be read; one gone meanwhile (replayed by another
    process) is skipped, an unreadable one logged and left alone."""
    records = []
    for path in paths:
        try:
            records.append(parse(path.read_text()))
        except FileNotFoundError:  # replayed by another process meanwhile
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring unreadable spool file %s: %s", path, exc)
    return records


def _epoch(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class SpooledStart:
    """What ``start_cron_run`` would have inserted (the row, as it began)."""

    run_id: str
    cron_name: str
    started_at: datetime
    report_date: date | None
    lease_epoch: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            asdict(self)
            | {
                "started_at": self.started_at.isoformat(),
                "report_date": self.report_date.isoformat() if self.report_date else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SpooledStart:
        data: dict[str, Any] = json.loads(text)
        started_at = datetime.fromisoformat(data["started_at"])
        if started_at.tzinfo is None:
            raise ValueError("started_at has no time zone")
        day = data["report_date"]
        return cls(
            run_id=str(uuid.UUID(data["run_id"])),
            cron_name=str(data["cron_name"]),
            started_at=started_at,
            report_date=None if day is None else date.fromisoformat(day),
            lease_epoch=_epoch(data.get("lease_epoch")),  # absent from older spool files
        )

    def row(self, recorded_at: datetime) -> dict[str, Any]:
        """The row as ``start_cron_run`` would have inserted it, except ``created_at``: when
        it was recorded (later than ``started_at``, which tells a start replayed from the
        spool — possibly of a run that went on unguarded — from one recorded on time)."""
        return {
            "id": self.run_id,
            "cron_name": self.cron_name,
            "started_at": self.started_at,
            "status": "running",
            "records_count": 0,
            "created_at": recorded_at,
            "report_date": self.report_date,
            "lease_epoch": self.lease_epoch,
        }


_START = ".start.json"


def write_durably(final: Path, text: str) -> Path:
    """Write ``text`` to ``final`` (0600, its directory 0700) so that a power cut leaves
    either nothing or the whole file: a temporary file, fsync, rename, fsync of the folder."""
    final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself is durable only once its directory is
    finally:
        os.close(directory)
    return final


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

    def _path(self, run_id: str, suffix: str = ".json") -> Path:
        return self.directory / f"{self.database}.{run_id}{suffix}"

    def write(self, record: SpooledEnd | SpooledStart) -> Path:
        """Durably store ``record``: when this returns, a power cut does not lose it."""
        suffix = _START if isinstance(record, SpooledStart) else ".json"
        return write_durably(self._path(record.run_id, suffix), record.to_json())

    def starts(self) -> list[SpooledStart]:
        """Every readable spooled start of this database, oldest first."""
        paths = sorted(self.directory.glob(f"{self.database}.*{_START}"))
        starts = _readable(paths, SpooledStart.from_json)
        return sorted(starts, key=lambda start: start.started_at)

    def pending(self) -> list[SpooledEnd]:
        """Every readable spooled end of this database, oldest end first."""
        paths = sorted(self.directory.glob(f"{self.database}.*.json"))
        ends = _readable([p for p in paths if not p.name.endswith(_START)], SpooledEnd.from_json)
        return sorted(ends, key=lambda end: end.finished_at)

    def run_ids(self) -> set[str]:
        return {end.run_id for end in self.pending()}

    def discard(self, run_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(run_id).unlink()

    def discard_start(self, run_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(run_id, _START).unlink()


async def replay(
    spool: Spool, engine: AsyncEngine, bounded: Bounded[int], clock: Clock = utcnow
) -> list[str]:
    """Insert every spooled start, then write every spooled end whose row is still
    ``running``; the ids closed.

    Stops at the first statement the database does not answer (the rest stay spooled for
    the next contact); raises nothing.
    """
    try:
        starts = await asyncio.to_thread(spool.starts)
        ends = await asyncio.to_thread(spool.pending)
    except OSError as exc:
        log.error("could not read the spool %s: %s", spool.directory, exc)
        return []
    for done, start in enumerate(starts):

        async def insert(start: SpooledStart = start) -> int:
            async with engine.begin() as conn:
                return await insert_missing(conn, cron_runs, [start.row(clock())])

        try:
            await bounded(insert)
        except Exception as exc:
            log.warning(
                "%d run start(s) and %d end(s) stay in the spool %s: the database did not"
                " take them (%s)",
                len(starts) - done,
                len(ends),
                spool.directory,
                type(exc).__name__,
            )
            return []
        await asyncio.to_thread(spool.discard_start, start.run_id)
        log.info(
            "recorded the start of run %s of %s (%s) from the spool",
            start.run_id,
            start.cron_name,
            start.started_at.isoformat(),
        )
    closed: list[str] = []
    for done, end in enumerate(ends):

        async def close(end: SpooledEnd = end) -> int:
            async with engine.begin() as conn:
                result = await conn.execute(
                    update(cron_runs)
                    .where(
                        cron_runs.c.id == end.run_id,
                        or_(
                            cron_runs.c.status == "running",
                            # Closed as abandoned meanwhile (its start was replayed while it
                            # still ran, or its lease expired during an outage): the end the
                            # run itself saw is the truth.
                            and_(
                                cron_runs.c.status == "error",
                                cron_runs.c.error_message == ABANDONED,
                            ),
                        ),
                    )
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
