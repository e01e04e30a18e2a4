"""Fencing (issue 20.2), on two real replicas of one database: each claim of a job's lease
takes a new epoch; a holder that lost its lease (paused, cut off past the TTL) cannot
overwrite the new holder's rows nor close its run as abandoned; a run without a lease is
closed as abandoned only once it is silent; a claim whose outcome is unknown is read back;
the scheduler's "slot already served" is checked under the lease.

A "replica" is a :class:`Service` of its own (its engine, pool, lease manager and ledger) on
the same database. A pause past the TTL is played by expiring the holder's lease row — the
only thing a pause changes in the database — so no test waits for a duration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, update

from cronkeeper import jobs
from cronkeeper.errors import AlreadyRunning, DatabaseUnreachable, LeaseLost, SlotServed
from cronkeeper.jobs import Job, JobContext
from cronkeeper.lease import Lease, LeaseManager
from cronkeeper.ledger import RunTracker
from cronkeeper.ledger.models import ABANDONED
from cronkeeper.runner import run_job
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from cronkeeper.storage.dbclock import db_now_plus
from cronkeeper.storage.schema import accounts, cron_leases, cron_runs
from cronkeeper.storage.upsert import upsert
from tests.conftest import FakeClock, make_settings

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

JOB = "sync-notion"
BOUND = 10
"""Seconds a broken test may hang before it fails (a bound, never a measured duration)."""
T = TypeVar("T")
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[Service, Service]]:
    clock = FakeClock(NOW)
    settings = make_settings(database_url, schedules=f"{JOB}=0 9 * * *")
    one = Service.from_settings(settings, clock=clock)
    two = Service.from_settings(settings, clock=clock)
    try:
        yield one, two
    finally:
        await one.aclose()
        await two.aclose()


async def expire(service: Service, job: str = JOB) -> None:
    """The holder was paused (or cut off) past its TTL: its lease has expired."""
    async with service.engine.begin() as conn:
        await conn.execute(
            update(cron_leases)
            .where(cron_leases.c.job_name == job)
            .values(expires_at=db_now_plus(-5))
        )


async def lease_row(service: Service, job: str = JOB) -> tuple[str, int] | None:
    async with service.engine.connect() as conn:
        row = (
            await conn.execute(
                select(cron_leases.c.holder, cron_leases.c.epoch).where(
                    cron_leases.c.job_name == job
                )
            )
        ).first()
    return None if row is None else (row.holder, row.epoch)


def account(name: str) -> dict[str, Any]:
    return {"id": "acc-1", "name": name, "meta_ad_account_id": "111", "updated_at": NOW}


async def account_name(service: Service) -> str | None:
    async with service.engine.connect() as conn:
        return (await conn.execute(select(accounts.c.name))).scalar_one_or_none()


@dataclass
class Writer:
    """A job that waits to be let go, then writes ``name`` into ``accounts`` (fenced)."""

    name: str
    pause: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, ctx: JobContext, day: date, run: RunTracker) -> None:
        self.started.set()
        if self.pause is not None:
            await self.pause.wait()
        async with ctx.writing() as conn:
            run.stored(await upsert(conn, accounts, [account(self.name)]))


# -- the epoch -----------------------------------------------------------------------------


async def test_every_claim_takes_a_new_epoch_and_a_release_keeps_the_count(
    replicas: tuple[Service, Service],
) -> None:
    one, two = replicas
    first = await one.leases.try_acquire(JOB)
    assert (first.acquired, first.epoch) == (True, 1)
    with pytest.raises(AlreadyRunning):
        await two.leases.try_acquire(JOB)
    await one.leases.release(first)
    assert await lease_row(one) == (first.holder, 1)  # expired, not deleted: the count stays
    second = await two.leases.try_acquire(JOB)
    assert second.epoch == 2
    await expire(two)  # its holder was paused past the TTL
    third = await one.leases.try_acquire(JOB)
    assert third.epoch == 3
    with pytest.raises(LeaseLost):
        await two.leases.renew(second)
    await one.leases.release(second)  # not its lease any more: nothing happens
    assert await lease_row(one) == (third.holder, 3)


# -- data writes ---------------------------------------------------------------------------


async def test_a_paused_holder_cannot_overwrite_the_new_holders_rows(
    replicas: tuple[Service, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = replicas
    stale = Writer("written by the paused holder", pause=asyncio.Event())
    fresh = Writer("written by the new holder")
    monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "pages", stale.run, "paused"))
    paused = asyncio.create_task(run_job(one, JOB))
    try:
        await asyncio.wait_for(stale.started.wait(), BOUND)
        await expire(one)  # replica one is paused past its TTL …
        monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "pages", fresh.run, "fresh"))
        taken = await run_job(two, JOB)  # … and replica two takes the job over
        assert taken.status == "success"
    finally:
        assert stale.pause is not None
        stale.pause.set()  # replica one wakes up and writes
    late = await asyncio.wait_for(paused, BOUND)
    assert await account_name(one) == "written by the new holder"  # the late write rolled back
    assert late.status == "error"
    assert late.error_message is not None
    assert "lease lost to another run" in late.error_message
    assert "rolled back" in late.error_message
    row = await lease_row(two)
    assert row is not None and row[1] == 2  # the new holder's claim, left alone


async def test_a_holder_that_lost_its_lease_closes_no_run_as_abandoned(
    replicas: tuple[Service, Service],
) -> None:
    """Replica one claims and is paused before closing abandoned runs; replica two takes
    over and starts its run; one wakes up: before fencing, it closed two's live run."""
    one, two = replicas
    lost = await one.leases.try_acquire(JOB)
    await expire(one)
    holder = await two.leases.try_acquire(JOB)
    async with two.ledger.track(JOB, lease_epoch=holder.epoch) as run:
        with pytest.raises(LeaseLost):
            await one.ledger.close_abandoned(
                JOB, reason=ABANDONED, fence=lost.fence, stale_after=one.leases.ttl
            )
        live = await one.ledger.get_run(str(run.run_id))
        assert live is not None and live.status == "running"
        # The new holder itself leaves its own run alone, and closes one of another epoch.
        async with one.engine.begin() as conn:
            await conn.execute(
                cron_runs.insert().values(
                    id="00000000-0000-4000-8000-000000000001",
                    cron_name=JOB,
                    started_at=NOW,
                    status="running",
                    lease_epoch=lost.epoch,
                )
            )
        closed = await two.ledger.close_abandoned(
            JOB, reason=ABANDONED, fence=holder.fence, stale_after=two.leases.ttl
        )
        assert closed == ["00000000-0000-4000-8000-000000000001"]


async def test_run_job_that_lost_its_lease_before_starting_says_already_running(
    replicas: tuple[Service, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken over between the claim and the closing of abandoned runs: nothing is recorded,
    the caller hears "already running" (exit 75 for ``cronkeeper run``)."""
    one, two = replicas
    writer = Writer("never")
    monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "pages", writer.run, "never"))
    claim = one.leases.try_acquire

    async def claim_then_lose(job_name: str, holder: str | None = None) -> Lease:
        lease = await claim(job_name, holder)
        await expire(one)
        await two.leases.try_acquire(job_name)
        return lease

    monkeypatch.setattr(one.leases, "try_acquire", claim_then_lose)
    with pytest.raises(AlreadyRunning, match="lease lost to another run"):
        await run_job(one, JOB)
    assert not writer.started.is_set()
    assert await one.ledger.recent_runs(cron_name=JOB, limit=5) == []


# -- runs without a lease ------------------------------------------------------------------


async def test_a_live_run_without_a_lease_is_closed_as_abandoned_only_once_silent(
    replicas: tuple[Service, Service],
) -> None:
    one, two = replicas
    clock = one.clock
    assert isinstance(clock, FakeClock)
    unguarded = await one.ledger.start_cron_run(JOB)  # the lease could not be claimed
    assert unguarded is not None
    ttl = two.leases.ttl
    for _ in range(4):  # it works on for more than a TTL, beating every ttl / 3
        clock.advance(seconds=ttl / 3)
        assert await one.ledger.beat(unguarded)
        guard = await two.leases.try_acquire(JOB)
        assert (
            await two.ledger.close_abandoned(
                JOB, reason=ABANDONED, fence=guard.fence, stale_after=ttl
            )
            == []
        )
        await two.leases.release(guard)
    clock.advance(seconds=ttl + 1)  # then it falls silent (killed)
    guard = await two.leases.try_acquire(JOB)
    closed = await two.ledger.close_abandoned(
        JOB, reason=ABANDONED, fence=guard.fence, stale_after=ttl
    )
    assert closed == [unguarded]


async def test_an_unguarded_run_says_so_and_beats(
    replicas: tuple[Service, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = replicas
    writer = Writer("unguarded", pause=asyncio.Event())
    monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "pages", writer.run, "unguarded"))

    async def cannot_ask(job_name: str, holder: str | None = None) -> Lease:
        return Lease(job_name, "me", acquired=False, unguarded="no answer within 5 s")

    monkeypatch.setattr(one.leases, "try_acquire", cannot_ask)
    run = asyncio.create_task(run_job(one, JOB))
    await asyncio.wait_for(writer.started.wait(), BOUND)
    beat = None
    for _ in range(BOUND * 100):  # a hang guard: its first beat goes out as it starts
        async with one.engine.connect() as conn:
            beat = (await conn.execute(select(cron_runs.c.heartbeat_at))).scalar_one()
        if beat is not None:
            break
        await asyncio.sleep(0.01)
    assert writer.pause is not None
    writer.pause.set()
    result = await asyncio.wait_for(run, BOUND)
    assert beat is not None  # its first beat went with its start
    assert result.status == "success"
    assert result.error_message == (
        "ran without the one-at-a-time guard: its lease could not be claimed (no answer within 5 s)"
    )
    assert await account_name(one) == "unguarded"  # no lease, no fence: the write is kept


# -- a claim whose outcome is unknown --------------------------------------------------------


def timing_out(manager: LeaseManager, *, commit: bool, times: int = 1) -> None:
    """The manager's first ``times`` calls time out on our side; ``commit``: after the
    statement committed (the answer was lost), else before it ran."""
    call = manager.call
    left = [times]

    async def bounded(work: Callable[[], Awaitable[T]], **kw: Any) -> T:
        if left[0] > 0:
            left[0] -= 1
            if commit:
                await call(work, **kw)
            raise DatabaseUnreachable("no answer within 5 s") from TimeoutError("5 s")
        return await call(work, **kw)

    manager.call = bounded  # type: ignore[assignment]


async def test_a_claim_that_timed_out_but_committed_is_read_back_and_held(
    replicas: tuple[Service, Service], caplog: pytest.LogCaptureFixture
) -> None:
    one, two = replicas
    timing_out(one.leases, commit=True)
    with caplog.at_level(logging.WARNING, "cronkeeper.lease"):
        lease = await one.leases.try_acquire(JOB)
    assert (lease.acquired, lease.epoch) == (True, 1)
    assert "timed out but was recorded" in caplog.text
    with pytest.raises(AlreadyRunning):
        await two.leases.try_acquire(JOB)
    await one.leases.release(lease)  # held, renewed and released like any claim
    assert (await two.leases.try_acquire(JOB)).epoch == 2


async def test_a_claim_that_timed_out_against_a_live_holder_is_already_running(
    replicas: tuple[Service, Service],
) -> None:
    one, two = replicas
    await two.leases.try_acquire(JOB)
    timing_out(one.leases, commit=True)
    with pytest.raises(AlreadyRunning):
        await one.leases.try_acquire(JOB)


async def test_a_claim_that_timed_out_unrecorded_runs_unguarded_and_releases_at_the_end(
    replicas: tuple[Service, Service],
) -> None:
    one, two = replicas
    timing_out(one.leases, commit=False)
    lease = await one.leases.try_acquire(JOB)
    assert (lease.acquired, lease.uncertain) == (False, True)
    assert lease.unguarded == "no answer within 5 s"
    # The claim committed late after all (it was left to finish in the background) …
    async with one.engine.begin() as conn:
        await conn.execute(
            cron_leases.insert().values(
                job_name=JOB,
                holder=lease.holder,
                acquired_at=db_now_plus(0.001),
                expires_at=db_now_plus(60),
                epoch=1,
            )
        )
    await one.leases.release(lease)  # … so the end of the run releases it all the same
    assert (await two.leases.try_acquire(JOB)).epoch == 2


# -- the scheduler's slot ------------------------------------------------------------------


async def test_the_scheduler_checks_its_slot_under_the_lease(
    replicas: tuple[Service, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica one found the slot unserved; before it claimed the lease, replica two ran
    the slot and released the lease. Before: one claimed the free lease and ran the slot a
    second time."""
    one, two = replicas
    writer = Writer("scheduled")
    monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "pages", writer.run, "scheduled"))
    sched = CronScheduler(one, jobs=[one.settings.job(JOB)])

    async def served_elsewhere_meanwhile(name: str, slot: datetime, day: date) -> bool:
        assert (await run_job(two, name, day, slot=slot)).status == "success"
        return False  # what one saw a moment before

    monkeypatch.setattr(sched, "_served", served_elsewhere_meanwhile)
    assert await sched.fire(JOB, NOW) is None
    assert len(await one.ledger.recent_runs(cron_name=JOB, limit=5)) == 1


async def test_run_job_with_a_served_slot_runs_nothing(
    replicas: tuple[Service, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = replicas
    writer = Writer("once")
    monkeypatch.setitem(jobs.JOBS, JOB, Job(JOB, "pages", writer.run, "once"))
    day = NOW.date() - timedelta(days=1)
    first = await run_job(one, JOB, day, slot=NOW - timedelta(minutes=1))
    assert first.status == "success"
    with pytest.raises(SlotServed):
        await run_job(one, JOB, day, slot=NOW - timedelta(minutes=1))
    assert len(await one.ledger.recent_runs(cron_name=JOB, limit=5)) == 1
    assert (await lease_row(one) or ("", 0))[1] == 2  # claimed, checked, released
