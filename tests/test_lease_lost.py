"""A run whose lease is taken over stops (issue 20.2): before, renewal found the row taken,
logged "another run may start" and the run went on beside the new holder.

The lease's TTL is 0.3 s here, so the renewer looks every 0.1 s; the test waits for the run's
end (bounded only so that a broken test fails instead of hanging), never for a duration.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date

import pytest
from sqlalchemy import select, update

from cronkeeper import jobs
from cronkeeper.jobs import Job, JobContext
from cronkeeper.lease import LeaseManager
from cronkeeper.ledger import RunTracker
from cronkeeper.runner import run_job
from cronkeeper.service import Service
from cronkeeper.storage.dbclock import db_now_plus
from cronkeeper.storage.schema import cron_leases
from tests.conftest import FakeClock, make_settings

pytestmark = pytest.mark.sql

JOB = "collect-daily"
BOUND = 10


@dataclass
class Held:
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False

    async def run(self, ctx: JobContext, day: date, run: RunTracker) -> None:
        self.started.set()
        await self.release.wait()
        run.stored(1)
        self.finished = True


async def test_a_run_whose_lease_is_taken_over_stops_and_ends_error(
    database_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held()
    monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "ad accounts", held.run, "held"))
    service = Service.from_settings(make_settings(database_url), clock=clock)
    service.leases = LeaseManager(service.engine, ttl=0.3, breaker=service.ledger.breaker)
    try:
        run = asyncio.create_task(run_job(service, JOB))
        await asyncio.wait_for(held.started.wait(), BOUND)
        # This process was paused past the TTL; another replica took the lease over.
        async with service.engine.begin() as conn:
            await conn.execute(
                update(cron_leases)
                .where(cron_leases.c.job_name == JOB)
                .values(holder="another-replica", expires_at=db_now_plus(60))
            )
        result = await asyncio.wait_for(run, BOUND)
        async with service.engine.connect() as conn:
            holders = [r.holder for r in await conn.execute(select(cron_leases))]
        row = await service.ledger.get_run(str(result.run_id))
    finally:
        held.release.set()
        await service.aclose()
    assert not held.finished  # stopped, not left running beside the new holder
    assert result.status == "error"
    assert result.error_message == "LeaseLost: lease lost to another run"
    assert row is not None
    assert (row.status, row.error_message) == ("error", "LeaseLost: lease lost to another run")
    assert holders == ["another-replica"]  # the new holder's lease is left alone


async def test_a_run_cancelled_for_another_reason_still_says_cancelled(
    database_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held()
    monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "ad accounts", held.run, "held"))
    service = Service.from_settings(make_settings(database_url), clock=clock)
    try:
        run = asyncio.create_task(run_job(service, JOB))
        await asyncio.wait_for(held.started.wait(), BOUND)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        [row] = await service.ledger.recent_runs(cron_name=JOB, limit=5)
    finally:
        await service.aclose()
    assert row.status == "error"
    assert "cancelled before it finished" in (row.error_message or "")
