"""``cronkeeper exec NAME -- COMMAND [ARGS…]``: any crontab line becomes a recorded run.

Records the start, runs the command, records the end from its exit status (0 ``success``,
3 ``partial``, anything else ``error``; a signal ``error`` with its name), the last lines of
its standard error as the (redacted) message, and the records count the command may write to
the file named by ``CRONKEEPER_RECORDS_FILE``. Standard output and input are the command's
own; standard error is passed through as it comes.

It takes the job's lease first, so overlapping invocations do not both run (exit 75, like
``cronkeeper run``), forwards SIGINT and SIGTERM to the command and exits with its status
(128 + N for a command killed by signal N, as a shell does). It talks to the database
directly, or over HTTP when ``CRONKEEPER_URL`` is set (with the job's ping key, else
``CRON_SECRET``): the lease is then a local file lock, one run at a time on this host.

The seed's rule holds: recording history never stops the work. A start the ledger does not
take leaves the command running; an end it does not take is spooled (``CRONKEEPER_SPOOL_DIR``)
and sent by the next ``exec`` — over HTTP a finish is idempotent and a ping carries its
``startedAt``, so a replay never records a run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from cronkeeper.clock import Clock, utcnow
from cronkeeper.config import Settings
from cronkeeper.errors import AlreadyRunning, CronkeeperError, StorageError
from cronkeeper.ledger.models import FinalStatus
from cronkeeper.ledger.spool import write_durably
from cronkeeper.redact import Redactor
from cronkeeper.storage.url import database_identity, default_spool_dir

if TYPE_CHECKING:
    from cronkeeper.service import Service

__all__ = [
    "EXIT_ALREADY_RUNNING",
    "RECORDS_FILE_ENV",
    "Outcome",
    "exec_job",
    "outcome_of",
]

log = logging.getLogger("cronkeeper.exec")

EXIT_ALREADY_RUNNING = 75
RECORDS_FILE_ENV = "CRONKEEPER_RECORDS_FILE"
STDERR_LINES = 20
"""How many of the command's last standard-error lines become the run's message."""
FORWARDED = (signal.SIGINT, signal.SIGTERM)
ABANDONED = "abandoned: the cronkeeper exec that ran it stopped before recording its end"


# -- the pure part: what an exit means ---------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: FinalStatus
    records_count: int
    error_message: str | None
    exit_code: int
    """What ``exec`` itself exits with: the command's status, 128 + N for signal N."""


def outcome_of(
    returncode: int, stderr_tail: Sequence[str], records_text: str | None, redactor: Redactor
) -> Outcome:
    """The run a command's exit describes (``returncode`` < 0: killed by that signal, as
    :mod:`subprocess` reports it)."""
    records, note = 0, None
    text = (records_text or "").strip()
    if text:
        if text.isascii() and text.isdigit():
            records = int(text)
        else:
            note = f"{RECORDS_FILE_ENV} held {text[:40]!r}, not a whole number (0 recorded)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        status: FinalStatus = "error"
        head: str | None = f"killed by {name}"
        exit_code = 128 - returncode
    else:
        status = "success" if returncode == 0 else "partial" if returncode == 3 else "error"
        head = None if returncode == 0 else f"exit status {returncode}"
        exit_code = returncode
    lines = [line for line in (head, note) if line]
    if status != "success":
        lines += [line.rstrip() for line in stderr_tail if line.strip()]
    message = redactor.message("\n".join(lines)) if lines else None
    return Outcome(status, min(records, 2**31 - 1), message, exit_code)


# -- running the command ------------------------------------------------------------------


async def run_command(argv: Sequence[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``argv``; its return code and the last lines of its standard error (which is
    passed through to ours as it comes). SIGINT and SIGTERM sent to us go to it."""
    try:
        child = await asyncio.create_subprocess_exec(*argv, env=env, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        return 127, [f"command not found: {argv[0]}"]
    except PermissionError:
        return 126, [f"permission denied: {argv[0]}"]
    loop = asyncio.get_running_loop()
    for signum in FORWARDED:
        loop.add_signal_handler(signum, _forward, child, signum)
    tail: deque[str] = deque(maxlen=STDERR_LINES)
    try:
        assert child.stderr is not None
        out = sys.stderr.buffer
        while True:
            line = await child.stderr.readline()
            if not line:
                break
            out.write(line)
            out.flush()
            tail.append(line.decode("utf-8", "replace")[:1000])
        returncode = await child.wait()
    finally:
        for signum in FORWARDED:
            loop.remove_signal_handler(signum)
    return returncode, list(tail)


def _read_records(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read(100)


def _forward(child: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signum)


# -- the spool of run ends not yet recorded ------------------------------------------------


@dataclass(frozen=True)
class RunEnd:
    """A whole run as ``exec`` saw it; ``started``: the ledger took its start."""

    run_id: str
    cron_name: str
    started: bool
    started_at: datetime
    finished_at: datetime
    status: FinalStatus
    records_count: int
    error_message: str | None

    def to_json(self) -> str:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RunEnd:
        data: dict[str, Any] = json.loads(text)
        if data["status"] not in ("success", "partial", "error"):
            raise ValueError(f"status {data['status']!r}")
        return cls(
            run_id=str(uuid.UUID(data["run_id"])),
            cron_name=str(data["cron_name"]),
            started=bool(data["started"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
            status=data["status"],
            records_count=max(0, int(data["records_count"])),
            error_message=None if data["error_message"] is None else str(data["error_message"]),
        )


class ExecSpool:
    """``exec-<destination>.<run id>.json`` files: whole runs, unlike the ledger's spool of
    run ends (:mod:`cronkeeper.ledger.spool`), whose replay only closes rows that exist."""

    def __init__(self, directory: Path, destination: str) -> None:
        self.directory = directory
        self.prefix = f"exec-{destination}."

    def write(self, end: RunEnd) -> Path:
        return write_durably(self.directory / f"{self.prefix}{end.run_id}.json", end.to_json())

    def pending(self) -> list[tuple[Path, RunEnd]]:
        found = []
        for path in sorted(self.directory.glob(f"{self.prefix}*.json")):
            try:
                found.append((path, RunEnd.from_json(path.read_text())))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable spool file %s: %s", path, exc)
        return sorted(found, key=lambda item: item[1].finished_at)


# -- where runs are recorded ----------------------------------------------------------------


class Unsent(Exception):
    """The destination did not take a run end; keep it for later."""


class Recorder(Protocol):
    name: str
    spool: ExecSpool
    clock: Clock
    reachable: bool
    """Worth replaying the spool (the database answered the lease claim)."""

    def lease(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    def alive(self, run_id: str | None) -> contextlib.AbstractAsyncContextManager[None]:
        """Around the command: a run recorded without the lease beats while it works."""

    async def start(self, run_id: str) -> str | None:
        """Record the start; the run's id in the ledger (``None``: not recorded)."""

    async def finish(self, end: RunEnd) -> None:
        """Record ``end``; :class:`Unsent` to spool it. A refusal that no retry can change
        (a bad key, an undeclared job) is logged and dropped."""

    async def aclose(self) -> None: ...


class DatabaseRecorder:
    """Straight into the ledger, under the job's database lease."""

    def __init__(self, settings: Settings, name: str) -> None:
        from cronkeeper.alerting.watchdog import install_watchdog
        from cronkeeper.service import Service

        self.name = name
        self.clock = utcnow
        directory = settings.spool_dir or default_spool_dir(settings.database_url)
        self.spool = ExecSpool(directory, database_identity(settings.database_url))
        self.service: Service | None = None
        self.reachable = False
        self.epoch: int | None = None
        try:
            self.service = Service.from_settings(settings)
            install_watchdog(self.service)
        except CronkeeperError as exc:  # e.g. a SQLite directory that cannot be made
            log.error("the ledger cannot be opened (the command runs anyway): %s", exc)
            return
        self.clock = self.service.clock

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[None]:
        if self.service is None:
            yield
            return
        await self.service.prepare(announce=False)
        async with self.service.leases.hold(self.name) as lease:
            # No lease claimed: the database did not answer; replaying now would only make
            # the command wait for the timeout again.
            self.reachable = lease.acquired
            self.epoch = lease.epoch
            if lease.acquired:
                # Holding the lease, no other exec of this job is alive: a row still running
                # under another epoch belongs to one that was killed before it could record
                # its end (one without a lease, once silent for the lease's TTL).
                # Their warning waits in the outbox for the next delivery round.
                await self.service.close_abandoned(lease, reason=ABANDONED)
            yield

    async def start(self, run_id: str) -> str | None:
        from cronkeeper.ledger.checkins import start_run

        if self.service is None:
            return None
        try:
            return await start_run(
                self.service.ledger,
                self.name,
                None,
                run_id=run_id,
                gated=True,
                lease_epoch=self.epoch,
            )
        except StorageError as exc:
            log.error(
                "could not record the start of %s (the command runs anyway): %s", self.name, exc
            )
            return None

    @contextlib.asynccontextmanager
    async def alive(self, run_id: str | None) -> AsyncIterator[None]:
        if self.service is None or run_id is None or self.epoch is not None:
            yield  # nothing recorded, or guarded: the lease's renewals say it is alive
            return
        async with self.service.ledger.beating(run_id, self.service.leases.ttl / 3):
            yield

    async def finish(self, end: RunEnd) -> None:
        from cronkeeper.ledger.checkins import record_run_end

        if self.service is None:
            raise Unsent("the ledger cannot be opened")
        try:
            changed = await record_run_end(
                self.service.ledger,
                end.run_id,
                end.cron_name,
                started_at=end.started_at,
                finished_at=end.finished_at,
                status=end.status,
                records_count=end.records_count,
                error_message=end.error_message,
            )
        except StorageError as exc:
            raise Unsent(str(exc)) from None
        if changed and end.cron_name == self.name:
            await self._notify(end.run_id)

    async def _notify(self, run_id: str) -> None:
        service = self.service
        assert service is not None
        ledger = service.ledger
        try:
            runs = await ledger.last_runs([self.name], 2)
        except CronkeeperError:
            return
        run = next((r for r in runs if r.id == run_id), None)
        previous = next((r for r in runs if r.id != run_id), None)
        if run is not None:
            await service.notify(lambda o: o.run_finished(run, previous))

    async def aclose(self) -> None:
        if self.service is not None:
            await self.service.aclose()


class HttpRecorder:
    """Over the check-in API of a cronkeeper at ``url``; a local file lock for overlap."""

    def __init__(self, settings: Settings, name: str, url: str) -> None:
        from cronkeeper.http.client import build_client

        self.name = name
        self.url = url.rstrip("/")
        self.clock = utcnow
        self.reachable = True  # a replay is one bounded request: always worth trying
        key = settings.ping_keys.get(name)
        if key is None and settings.cron_secret is not None:
            key = settings.cron_secret.get_secret_value()
        self.key = key
        self.client = build_client(timeout=settings.ledger_timeout * 2, redactor=settings.redactor)
        directory = settings.spool_dir or default_spool_dir(settings.database_url)
        # One spool whatever the URL: a cronkeeper that moved gets what the old one missed.
        self.spool = ExecSpool(directory, "http")

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[None]:
        self.spool.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.spool.directory / f"exec-{self.name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AlreadyRunning(
                    f"{self.name} is already running (another cronkeeper exec on this host holds"
                    f" {path})"
                ) from None
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.asynccontextmanager
    async def alive(self, run_id: str | None) -> AsyncIterator[None]:
        yield  # check-ins carry no heartbeat; the overlap guard is this host's file lock

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(f"{self.url}{path}", json=body, headers=self._headers())

    async def start(self, run_id: str) -> str | None:
        if not self.key:
            log.error(
                "cannot report %s to %s: set its ping_key_env variable or CRON_SECRET",
                self.name,
                self.url,
            )
            return None
        try:
            answer = await self._post(f"/api/cron/{self.name}/start", {})
            if answer.status_code == 201:
                return str(answer.json()["runId"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.error(
                "could not record the start of %s (the command runs anyway): %s",
                self.name,
                type(exc).__name__,
            )
            return None
        log.error(
            "%s refused the start of %s: HTTP %d %s",
            self.url,
            self.name,
            answer.status_code,
            _error(answer),
        )
        return None

    async def finish(self, end: RunEnd) -> None:
        if not self.key:
            return
        body: dict[str, Any] = {
            "status": end.status,
            "recordsCount": end.records_count,
            "errorMessage": end.error_message,
        }
        if end.started:
            path = f"/api/cron/runs/{end.run_id}/finish"
        else:
            path = f"/api/cron/{end.cron_name}/ping"
            body["startedAt"] = end.started_at.isoformat()
            body["durationSeconds"] = max(0.0, (end.finished_at - end.started_at).total_seconds())
        try:
            answer = await self._post(path, body)
        except httpx.HTTPError as exc:
            raise Unsent(type(exc).__name__) from None
        if answer.status_code >= 500 or answer.status_code in (408, 429):
            raise Unsent(f"HTTP {answer.status_code}")
        if answer.status_code not in (200, 201, 409):
            log.error(
                "%s refused the end of %s: HTTP %d %s (not kept for a retry)",
                self.url,
                end.cron_name,
                answer.status_code,
                _error(answer),
            )

    async def aclose(self) -> None:
        await self.client.aclose()


def _error(answer: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        body = answer.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])[:300]
    return ""


# -- the whole of exec ----------------------------------------------------------------------


async def replay(recorder: Recorder) -> None:
    """Send what earlier ``exec`` runs spooled, oldest first; stop at the first refusal."""
    if not recorder.reachable:
        return
    for path, end in await asyncio.to_thread(recorder.spool.pending):
        try:
            await recorder.finish(end)
        except Unsent:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.info("recorded the end of run %s of %s from the spool", end.run_id, end.cron_name)


async def exec_job(settings: Settings, name: str, argv: Sequence[str]) -> int:
    """Run ``argv`` as a recorded run of ``name``; the exit code ``exec`` ends with.

    Raises :class:`AlreadyRunning` (the command did not start).
    """
    url = os.environ.get("CRONKEEPER_URL", "").strip()
    recorder: Recorder = (
        HttpRecorder(settings, name, url) if url else DatabaseRecorder(settings, name)
    )
    try:
        async with recorder.lease():
            await replay(recorder)
            started_at = recorder.clock()
            local_id = str(uuid.uuid4())
            recorded_id = await recorder.start(local_id)
            records = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below
                prefix="cronkeeper-records-", delete=False
            )
            records.close()
            env = dict(os.environ) | {RECORDS_FILE_ENV: records.name}
            try:
                async with recorder.alive(recorded_id):
                    returncode, tail = await run_command(argv, env)
                text = await asyncio.to_thread(_read_records, records.name)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(records.name)
            outcome = outcome_of(returncode, tail, text, settings.redactor)
            end = RunEnd(
                run_id=recorded_id or local_id,
                cron_name=name,
                started=recorded_id is not None,
                started_at=started_at,
                finished_at=max(recorder.clock(), started_at),
                status=outcome.status,
                records_count=outcome.records_count,
                error_message=outcome.error_message,
            )
            try:
                await recorder.finish(end)
            except Unsent as exc:
                try:
                    path = await asyncio.to_thread(recorder.spool.write, end)
                except OSError as error:
                    log.error(
                        "could not record the end of %s (%s) nor spool it: %s", name, exc, error
                    )
                else:
                    log.error(
                        "could not record the end of %s (%s); kept in %s for the next exec",
                        name,
                        exc,
                        path,
                    )
            return outcome.exit_code
    finally:
        await recorder.aclose()
