"""One run at a time: the lease is judged by the database's clock and renewed whatever the
breaker says (issue 12, item 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import AlreadyRunning
from cronkeeper.lease import LeaseLost, LeaseManager
from cronkeeper.service import Service
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.dbclock import db_now, db_now_plus
from cronkeeper.storage.schema import cron_leases
from tests.conftest import FakeClock, make_settings

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

JOB = "collect-daily"


async def db_time(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        return (await conn.execute(select(db_now()))).scalar_one()


async def expires_at(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(cron_leases.c.expires_at).where(cron_leases.c.job_name == JOB)
            )
        ).scalar_one()


async def test_the_database_clock_reads_back_as_aware_utc_and_moves_by_the_offset(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        now, later = (await conn.execute(select(db_now(), db_now_plus(90)))).one()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert later - now == timedelta(seconds=90)


@pytest.mark.parametrize("skew", [timedelta(hours=1), timedelta(days=-10)])
async def test_a_claimant_whose_clock_is_wrong_neither_takes_nor_shortens_a_live_lease(
    database_url: str, skew: timedelta
) -> None:
    """Expiry is the database's business: a replica whose clock runs an hour ahead must not
    judge a live lease expired, and one whose clock is ten days behind must not write a lease
    that has already expired for everybody else."""
    honest = Service.from_settings(make_settings(database_url))
    skewed = Service.from_settings(
        make_settings(database_url), clock=FakeClock(datetime.now(UTC) + skew)
    )
    try:
        lease = await skewed.leases.try_acquire(JOB, holder="skewed")
        assert lease.acquired
        left = await expires_at(skewed.engine) - await db_time(skewed.engine)
        assert timedelta(seconds=50) < left <= timedelta(seconds=60)
        with pytest.raises(AlreadyRunning):
            await honest.leases.try_acquire(JOB, holder="honest")
        await skewed.leases.release(lease)

        await honest.leases.try_acquire(JOB, holder="honest")
        with pytest.raises(AlreadyRunning):
            await skewed.leases.try_acquire(JOB, holder="skewed")
    finally:
        await honest.aclose()
        await skewed.aclose()


async def test_a_lease_past_its_expiry_by_the_database_clock_is_taken_over(
    engine: AsyncEngine,
) -> None:
    leases = LeaseManager(engine, ttl=60)
    await leases.try_acquire(JOB, holder="dead")
    async with engine.begin() as conn:  # its holder stopped renewing a minute ago
        await conn.execute(update(cron_leases).values(expires_at=db_now_plus(-1)))
    taken = await leases.try_acquire(JOB, holder="next")
    assert taken.acquired
    async with engine.connect() as conn:
        holder = (await conn.execute(select(cron_leases.c.holder))).scalar_one()
    assert holder == "next"


async def test_renewal_reaches_the_database_while_the_breaker_is_open(
    engine: AsyncEngine,
) -> None:
    """After one slow call anywhere the breaker stays open for 30 s — longer than the renewal
    interval. A renewal that skipped the database then would let a live run's lease expire."""
    breaker = Breaker(cooldown=300)
    leases = LeaseManager(engine, ttl=60, breaker=breaker)
    lease = await leases.try_acquire(JOB)
    async with engine.begin() as conn:  # the lease is about to run out
        await conn.execute(update(cron_leases).values(expires_at=db_now_plus(2)))
    breaker.record(TimeoutError())  # a ledger call of this run just timed out
    assert not breaker.allow()

    assert await leases.renew(lease) is True
    left = await expires_at(engine) - await db_time(engine)
    assert left > timedelta(seconds=50)


async def test_a_new_run_claims_its_lease_once_the_database_is_back_even_in_the_cooldown(
    engine: AsyncEngine,
) -> None:
    """The claim is how a new run finds out the database answers again. Gated by the breaker
    for its whole cooldown, every run in the 30 s after a blip went on unguarded (and
    unrecorded), though the database was back: two replicas could then run one job at once."""
    now = [1000.0]
    breaker = Breaker(cooldown=30, recheck=5, monotonic=lambda: now[0])
    leases = LeaseManager(engine, ttl=60, breaker=breaker)
    breaker.record(TimeoutError())  # the blip
    now[0] += 1  # moments later (the run's own start-up failed): trusted, run unguarded
    assert (await leases.try_acquire(JOB)).acquired is False

    now[0] += 5  # the database is back, well within the breaker's cooldown
    lease = await leases.try_acquire(JOB)
    assert lease.acquired
    assert breaker.allow()  # and the rest of the run's bookkeeping goes through again


async def test_a_renewal_that_finds_the_lease_taken_over_says_so(engine: AsyncEngine) -> None:
    leases = LeaseManager(engine, ttl=60)
    mine = await leases.try_acquire(JOB, holder="me")
    async with engine.begin() as conn:
        await conn.execute(update(cron_leases).values(expires_at=db_now_plus(-1)))
    await leases.try_acquire(JOB, holder="someone else")
    with pytest.raises(LeaseLost):
        await leases.renew(mine)
