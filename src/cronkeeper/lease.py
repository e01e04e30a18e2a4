"""One run of a job at a time, across processes and replicas: a lease row in the database.

A lease is claimed with one atomic ``INSERT … ON CONFLICT DO UPDATE … WHERE expires_at < now``
(the conditional-write pattern of healthchecks.io's ``sendalerts``): the statement either
creates the row, takes over an expired one, or changes nothing — and the row count says
which. The holder renews it while the job runs and deletes it at the end; a holder that dies
stops renewing, so its lease expires after ``ttl`` and the next run takes over.
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
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.clock import Clock, utcnow
from cronkeeper.errors import AlreadyRunning
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.schema import cron_leases

__all__ = ["Lease", "LeaseManager", "new_holder_id"]

log = logging.getLogger("cronkeeper.lease")
T = TypeVar("T")


def new_holder_id() -> str:
    """Who holds a lease: host, process and a random part (two runs in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Lease:
    job_name: str
    holder: str
    acquired: bool
    """False when the database could not be asked: the run goes on unguarded (and says so)."""


class LeaseManager:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl: float = 60.0,
        timeout: float = 5.0,
        clock: Clock = utcnow,
        breaker: Breaker | None = None,
    ) -> None:
        self.engine = engine
        self.ttl = timedelta(seconds=ttl)
        self.timeout = timeout
        self.clock = clock
        self.breaker = breaker or Breaker()

    async def _bounded(self, work: Callable[[], Awaitable[T]]) -> T:
        """Within the timeout, and not at all while the database is known to be unreachable."""
        return await self.breaker.call(work, seconds=self.timeout)

    async def try_acquire(self, job_name: str, holder: str | None = None) -> Lease:
        """Claim the lease of ``job_name`` or raise :class:`AlreadyRunning`.

        If the database cannot be reached the lease is reported as not acquired instead of
        failing: the job's work matters more than its bookkeeping (the run is logged as
        unguarded).
        """
        holder = holder or new_holder_id()
        now = self.clock()
        values = {
            "job_name": job_name,
            "holder": holder,
            "acquired_at": now,
            "expires_at": now + self.ttl,
        }

        async def claim() -> int:
            async with self.engine.begin() as conn:
                insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                statement = insert(cron_leases).values(**values)
                statement = statement.on_conflict_do_update(
                    index_elements=["job_name"],
                    set_={
                        k: statement.excluded[k] for k in ("holder", "acquired_at", "expires_at")
                    },
                    where=cron_leases.c.expires_at < now,
                )
                # RETURNING, not rowcount: drivers disagree on rowcount for INSERT … ON CONFLICT.
                result = await conn.execute(statement.returning(cron_leases.c.holder))
                return len(result.all())

        try:
            claimed = await self._bounded(claim)
        except Exception as exc:
            log.error(
                "could not claim the lease of %s (%s); running without the one-at-a-time guard",
                job_name,
                type(exc).__name__,
            )
            return Lease(job_name, holder, acquired=False)
        if claimed != 1:
            raise AlreadyRunning(f"{job_name} is already running (another process holds its lease)")
        return Lease(job_name, holder, acquired=True)

    async def renew(self, lease: Lease) -> bool:
        """Push the expiry forward; False if the lease was lost (expired and taken over)."""
        if not lease.acquired:
            return False

        async def extend() -> int:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(cron_leases)
                    .where(
                        cron_leases.c.job_name == lease.job_name,
                        cron_leases.c.holder == lease.holder,
                    )
                    .values(expires_at=self.clock() + self.ttl)
                )
                return result.rowcount

        try:
            return await self._bounded(extend) == 1
        except Exception as exc:
            log.warning("could not renew the lease of %s: %s", lease.job_name, type(exc).__name__)
            return False

    async def release(self, lease: Lease) -> None:
        if not lease.acquired:
            return

        async def drop() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(
                    delete(cron_leases).where(
                        cron_leases.c.job_name == lease.job_name,
                        cron_leases.c.holder == lease.holder,
                    )
                )

        try:
            await self._bounded(drop)
        except Exception as exc:  # it expires by itself after ttl
            log.warning("could not release the lease of %s: %s", lease.job_name, type(exc).__name__)

    @asynccontextmanager
    async def hold(self, job_name: str) -> AsyncIterator[Lease]:
        """Claim, keep renewing every ``ttl / 3`` while the block runs, release at the end."""
        lease = await self.try_acquire(job_name)
        renewer = asyncio.create_task(self._keep_renewing(lease)) if lease.acquired else None
        try:
            yield lease
        finally:
            if renewer is not None:
                renewer.cancel()
                with suppress(asyncio.CancelledError):
                    await renewer
            await asyncio.shield(self.release(lease))

    async def _keep_renewing(self, lease: Lease) -> None:
        interval = self.ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            if not await self.renew(lease):
                log.error(
                    "lost the lease of %s while running: another run may start", lease.job_name
                )
