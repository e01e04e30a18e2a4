"""One run of a job at a time, across processes and replicas: a lease row in the database.

A lease is claimed with one atomic ``INSERT … ON CONFLICT DO UPDATE … WHERE expires_at < now``
(the conditional-write pattern of healthchecks.io's ``sendalerts``): the statement either
creates the row, takes over an expired one, or changes nothing — and the row count says
which. The holder renews it while the job runs and deletes it at the end; a holder that dies
stops renewing, so its lease expires after ``ttl`` and the next run takes over.

"Now" is the database's clock (:mod:`cronkeeper.storage.dbclock`), in the claim and in the
renewal: a claimant whose clock runs ahead cannot judge a live lease expired. Renewals and
the release are never gated by the circuit breaker: after a database blip the breaker stays
open for its cooldown, longer than the renewal interval, and a renewal skipped without even
asking the database would let the lease of a live run expire — the next claimant would then
close that run as abandoned and run the job a second time. The claim is a probe: it trusts a
failure only for a few seconds (the run's own start-up found the database down), then asks.

The claim fails closed (issue 20): only a database that cannot be asked — unreachable, no
answer in time, or SQLite's write lock held past the timeout — lets the job run unguarded
(the work matters more than its bookkeeping; the log says so). Anything else — a schema
behind this version's migrations (checked in the claim's own transaction: a rolling deploy
leaves replicas whose code is ahead of the database), a missing table, a permission denied,
a bug — refuses the run: otherwise every replica would run every job.

Fencing (issue 20.2): the row's ``epoch`` grows by one with every claim, and a release only
expires the row (it keeps its epoch), so a job's epochs never repeat. The claim returns it; a
run's :class:`Fence` checks, inside each of its data writes' own transaction and after the
writes, that the row still names this holder and epoch (``FOR SHARE`` on PostgreSQL, so a
claim cannot commit between the check and the commit; SQLite's single writer gives the same
order) — a holder that lost its lease cannot overwrite the new holder's rows or close its run
as abandoned: its transaction rolls back with :class:`LeaseLost`. The fencing-token pattern:
Kleppmann, "How to do distributed locking" (2016), and PostgreSQL's row locks
(https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-ROWS).

A claim that timed out has an unknown outcome: the statement may have committed after we
stopped waiting (:mod:`cronkeeper.storage.bounded` lets a timed-out call finish in the
background). It is checked before the run goes on: the row read back names us (the run goes
on guarded), another live holder (:class:`AlreadyRunning`), or nobody — then the run goes on
unguarded and releases the lease at its end in case the claim commits late.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cronkeeper.errors import (
    LEASE_LOST,
    AlreadyRunning,
    DatabaseLocked,
    DatabaseUnreachable,
    LeaseLost,
    StorageError,
)
from cronkeeper.redact import Redactor
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.dbclock import db_now, db_now_plus
from cronkeeper.storage.engine import check_schema, is_sqlite
from cronkeeper.storage.schema import cron_leases
from cronkeeper.storage.upsert import insert_on_conflict

__all__ = ["LEASE_LOST", "Fence", "Lease", "LeaseLost", "LeaseManager", "new_holder_id"]

log = logging.getLogger("cronkeeper.lease")
T = TypeVar("T")


def new_holder_id() -> str:
    """Who holds a lease: host, process and a random part (two runs in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Fence:
    """The check a holder's writes make in their own transaction: the lease of ``job_name``
    still names ``holder`` at ``epoch``. Raises :class:`LeaseLost` otherwise (the caller's
    transaction then rolls back). Run it after the writes, before the commit."""

    job_name: str
    holder: str
    epoch: int

    async def check(self, conn: AsyncConnection) -> None:
        row = (
            await conn.execute(
                select(cron_leases.c.holder, cron_leases.c.epoch)
                .where(cron_leases.c.job_name == self.job_name)
                .with_for_update(read=True)  # FOR SHARE on PostgreSQL; SQLite has one writer
            )
        ).first()
        if row is not None and row.holder == self.holder and row.epoch == self.epoch:
            return
        now = "gone" if row is None else f"at epoch {row.epoch}"
        raise LeaseLost(
            f"{self.job_name}: {LEASE_LOST} (this run held epoch {self.epoch}, the lease is"
            f" {now}): its write was rolled back"
        )


@dataclass(frozen=True)
class Lease:
    job_name: str
    holder: str
    acquired: bool
    """False when the database could not be asked: the run goes on unguarded (and says so)."""
    unguarded: str | None = None
    """Why not acquired: the database's answer (unreachable, timed out, locked)."""
    epoch: int | None = None
    """The claim's fencing token, when acquired."""
    uncertain: bool = False
    """Not acquired as far as we know, but the claim timed out and may commit late: the
    lease is released at the end all the same."""

    @property
    def fence(self) -> Fence | None:
        """What this run's writes check; ``None`` for a run without a lease."""
        if not self.acquired or self.epoch is None:
            return None
        return Fence(self.job_name, self.holder, self.epoch)


class LeaseManager:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl: float = 60.0,
        timeout: float = 5.0,
        breaker: Breaker | None = None,
    ) -> None:
        self.engine = engine
        self.ttl = float(ttl)
        self.timeout = timeout
        self.breaker = breaker or Breaker()
        self.call = BoundedCall(timeout, self.breaker, Redactor(), local=is_sqlite(engine))
        self._schema_checked = False
        """Once at head, a database does not go back: the check is not repeated."""

    async def _bounded(
        self, work: Callable[[], Awaitable[T]], *, gated: bool, probe: bool = False
    ) -> T:
        """Within the timeout; ``gated`` calls not at all while the database is known down
        (see :class:`~cronkeeper.storage.breaker.Breaker` for ``probe``)."""
        return await self.call(work, gated=gated, probe=probe)

    async def try_acquire(self, job_name: str, holder: str | None = None) -> Lease:
        """Claim the lease of ``job_name`` or raise :class:`AlreadyRunning`.

        If the database cannot be asked (unreachable, no answer in time, SQLite locked) the
        lease is reported as not acquired instead of failing: the job's work matters more
        than its bookkeeping (the run is logged as unguarded). Any other failure refuses the
        run: raises the :class:`~cronkeeper.errors.StorageError` kind, its message one line
        starting "refusing to run" (:class:`~cronkeeper.errors.SchemaBehind` names
        ``cronkeeper db upgrade``).
        """
        holder = holder or new_holder_id()
        values = {
            "job_name": job_name,
            "holder": holder,
            "acquired_at": db_now(),
            "expires_at": db_now_plus(self.ttl),
            "epoch": 1,
        }

        async def claim() -> int | None:
            async with self.engine.begin() as conn:
                if not self._schema_checked:
                    await check_schema(conn)
                statement = insert_on_conflict(
                    conn.dialect,
                    cron_leases,
                    values,
                    key=["job_name"],
                    update=("holder", "acquired_at", "expires_at"),
                    where=cron_leases.c.expires_at < db_now(),
                    also={"epoch": cron_leases.c.epoch + 1},
                )
                # RETURNING, not rowcount: drivers disagree on rowcount for INSERT … ON CONFLICT.
                result = await conn.execute(statement.returning(cron_leases.c.epoch))
                row = result.first()
                return None if row is None else int(row.epoch)

        try:
            # A probe: the claim is a new run's first call, the one that finds out whether the
            # database is back. Trusting the breaker for its whole cooldown, every run in the
            # 30 s after a blip would go on unguarded and unrecorded.
            epoch = await self._bounded(claim, gated=True, probe=True)
        except (DatabaseUnreachable, DatabaseLocked) as exc:
            if isinstance(exc.__cause__, TimeoutError):
                return await self._settle_unknown_claim(job_name, holder, exc)
            log.error(
                "could not claim the lease of %s (%s); running without the one-at-a-time guard",
                job_name,
                exc,
            )
            return Lease(job_name, holder, acquired=False, unguarded=str(exc))
        except StorageError as exc:
            raise type(exc)(
                f"refusing to run {job_name}: could not claim its lease: {exc}"
            ) from exc
        self._schema_checked = True
        if epoch is None:
            raise AlreadyRunning(f"{job_name} is already running (another process holds its lease)")
        return Lease(job_name, holder, acquired=True, epoch=epoch)

    async def _settle_unknown_claim(
        self, job_name: str, holder: str, failure: StorageError
    ) -> Lease:
        """The claim timed out: it may have committed. Read the row back before going on."""

        async def read_back() -> tuple[str, int, bool] | None:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(
                            cron_leases.c.holder,
                            cron_leases.c.epoch,
                            (cron_leases.c.expires_at > db_now()).label("live"),
                        ).where(cron_leases.c.job_name == job_name)
                    )
                ).first()
                return None if row is None else (str(row.holder), int(row.epoch), bool(row.live))

        try:
            found = await self._bounded(read_back, gated=False)
        except StorageError as exc:
            log.error(
                "could not claim the lease of %s (%s), nor read it back (%s); running without the"
                " one-at-a-time guard",
                job_name,
                failure,
                exc,
            )
            return Lease(job_name, holder, acquired=False, unguarded=str(failure), uncertain=True)
        if found is not None and found[0] == holder:
            log.warning(
                "the claim of the lease of %s timed out but was recorded (epoch %d): running"
                " guarded",
                job_name,
                found[1],
            )
            self._schema_checked = True
            return Lease(job_name, holder, acquired=True, epoch=found[1])
        if found is not None and found[2]:
            raise AlreadyRunning(f"{job_name} is already running (another process holds its lease)")
        log.error(
            "could not claim the lease of %s (%s; not recorded when read back); running without"
            " the one-at-a-time guard",
            job_name,
            failure,
        )
        return Lease(job_name, holder, acquired=False, unguarded=str(failure), uncertain=True)

    async def renew(self, lease: Lease) -> bool:
        """Push the expiry to the database's now + ``ttl``.

        True when renewed; False when the database could not be asked (the lease may still
        be ours: try again soon). Raises :class:`LeaseLost` when the row is no longer ours
        (it expired and another run took it over).
        """
        if not lease.acquired:
            return False

        async def extend() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(cron_leases)
                    .where(
                        cron_leases.c.job_name == lease.job_name,
                        cron_leases.c.holder == lease.holder,
                        cron_leases.c.epoch == lease.epoch,
                    )
                    .values(expires_at=db_now_plus(self.ttl))
                )
                return result.rowcount

        try:
            renewed = await self._bounded(extend, gated=False) == 1
        except StorageError as exc:
            log.warning("could not renew the lease of %s: %s", lease.job_name, type(exc).__name__)
            return False
        if not renewed:
            raise LeaseLost(f"the lease of {lease.job_name} expired and was taken over")
        return True

    async def release(self, lease: Lease) -> None:
        """Expire the lease if it is still ours. The row stays, with its epoch: the next
        claim counts on from it (a deleted row would start the count over)."""
        if not lease.acquired and not lease.uncertain:
            return

        async def drop() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(cron_leases)
                    .where(
                        cron_leases.c.job_name == lease.job_name,
                        cron_leases.c.holder == lease.holder,
                        cron_leases.c.expires_at >= db_now(),
                    )
                    .values(expires_at=db_now_plus(-1.0))
                )

        try:
            # Not gated: a lease left behind holds the job back until it expires.
            await self._bounded(drop, gated=False)
        except StorageError as exc:  # it expires by itself after ttl
            log.warning("could not release the lease of %s: %s", lease.job_name, type(exc).__name__)

    @asynccontextmanager
    async def hold(self, job_name: str) -> AsyncIterator[Lease]:
        """Claim, keep renewing every ``ttl / 3`` while the block runs, release at the end.

        A lease found taken over by another run (it expired: this process was paused, or cut
        off from the database for longer than the TTL) stops the block within one renewal
        interval: its task is cancelled with :data:`LEASE_LOST` (the ledger records the run
        ``error`` with those words) and :class:`LeaseLost` is raised here, so the two runs do
        not go on side by side (issue 20.2).
        """
        lease = await self.try_acquire(job_name)
        owner = asyncio.current_task()
        lost = asyncio.Event()
        renewer = (
            asyncio.create_task(self._keep_renewing(lease, owner, lost)) if lease.acquired else None
        )
        try:
            yield lease
        except asyncio.CancelledError:
            if lost.is_set() and owner is not None and owner.uncancel() == 0:
                raise LeaseLost(f"{job_name}: {LEASE_LOST}") from None
            raise
        finally:
            if renewer is not None:
                renewer.cancel()
                with suppress(asyncio.CancelledError):
                    await renewer
            if not lost.is_set():
                await asyncio.shield(self.release(lease))

    async def _keep_renewing(
        self,
        lease: Lease,
        owner: asyncio.Task[object] | None = None,
        lost: asyncio.Event | None = None,
    ) -> None:
        """Renew every ``ttl / 3``; after a failed attempt, again after ``ttl / 12``.

        A lease survives a database outage of up to about half its ``ttl``. When it was
        taken over, ``owner`` (the run's task) is cancelled with :data:`LEASE_LOST`.
        """
        interval = self.ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                renewed = await self.renew(lease)
            except LeaseLost:
                log.error(
                    "lost the lease of %s while running: another run took it over; stopping"
                    " this run",
                    lease.job_name,
                )
                if lost is not None:
                    lost.set()
                if owner is not None:
                    owner.cancel(LEASE_LOST)
                return
            interval = self.ttl / 3 if renewed else self.ttl / 12
