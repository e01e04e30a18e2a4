"""PostgreSQL paused (SIGSTOP) rather than stopped: a database that hangs instead of refusing.

That is what a stalled host or a network partition looks like to a client, and it is the
harder case: nothing fails, calls just never end. Two promises are held against it:
a bounded database call ends on time, and a short outage during a run neither starts a
second run of the job nor gets the first one closed as abandoned (issue 12, item 1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text

from cronkeeper.errors import AlreadyRunning, DatabaseUnreachable
from cronkeeper.runner import run_job
from cronkeeper.sandbox import MetaSimulator, serve_app
from cronkeeper.service import Service
from cronkeeper.storage.bounded import BoundedCall
from cronkeeper.storage.dbclock import db_now
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_leases
from tests.conftest import make_settings
from tests.faults.helpers import DAY, META_TOKEN, POSTGRES_ONLY, GatedApp, meta_account, wait_until
from tests.support.pg import PgCluster

pytestmark = POSTGRES_ONLY

ACCOUNT = "1001"
TTL = 6.0  # renewed every 2 s (0.5 s after a failure): the outage lasts one failed renewal
HANG_GUARD = 30.0  # a wait for an event that never comes fails the test


@pytest.fixture
def gated_meta() -> Iterator[tuple[GatedApp, str]]:
    sim = MetaSimulator([ACCOUNT], access_token=META_TOKEN)
    gate = GatedApp(sim.app, meta_account)
    with serve_app(gate) as url:
        try:
            yield gate, url
        finally:
            gate.release_all()


async def test_a_call_to_a_hung_database_ends_at_its_timeout(
    database_url: str, pg_cluster: PgCluster
) -> None:
    """psycopg spends 10 s trying to cancel a query on a server that does not answer; the
    bounded call must not wait for that."""
    engine = create_engine(database_url, timeout=1.0)
    call = BoundedCall(1.0)
    breaker = call.breaker

    async def select_one() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())

    try:
        assert await call(select_one) == 1  # a pooled, live connection
        with pg_cluster.paused():
            # A hang guard well under psycopg's 10 s of cancelling: a bounded call that
            # waited for the driver's clean-up would trip it; one that ends at its timeout
            # does not. (It fails only for a call that waits eight times its bound.)
            async with asyncio.timeout(8.0):
                with pytest.raises(DatabaseUnreachable, match="no answer within 1 s"):
                    await call(select_one)
        assert not breaker.allow()
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_an_outage_mid_run_starts_no_second_run_and_abandons_nothing(
    database_url: str,
    pg_cluster: PgCluster,
    gated_meta: tuple[GatedApp, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database hangs until a renewal of the run's lease has failed, then comes back:
    the holder's next renewal keeps the lease, so another replica is refused once the lease
    as first claimed has run out, and the run ends once, as success."""
    caplog.set_level(logging.WARNING, logger="cronkeeper")
    gate, url = gated_meta
    settings = make_settings(
        database_url,
        meta_api_base=url,
        meta_access_token=META_TOKEN,
        meta_ad_account_ids=ACCOUNT,
        ledger_timeout=1.0,
        lease_ttl=TTL,
        http_timeout=60,  # the gate holds the request through the outage
    )
    holder = Service.from_settings(settings)
    replica = Service.from_settings(settings)  # another replica: its own engine and breaker
    assert await holder.prepare()
    try:
        run = asyncio.create_task(run_job(holder, "collect-daily", DAY))
        await wait_until(lambda: bool(gate.arrived), within=15, what="the run to call Meta")
        async with replica.engine.connect() as conn:
            first_expiry = (await conn.execute(select(cron_leases.c.expires_at))).scalar_one()

        await asyncio.to_thread(pg_cluster.pause)
        try:
            await wait_until(
                lambda: "could not renew the lease of collect-daily" in caplog.text,
                within=HANG_GUARD,
                what="a renewal to fail during the outage",
            )
        finally:
            await asyncio.to_thread(pg_cluster.resume)

        async def lease_expiry() -> Any:
            async with replica.engine.connect() as conn:
                return (await conn.execute(select(cron_leases.c.expires_at))).scalar_one()

        async def database_now() -> Any:
            async with replica.engine.connect() as conn:
                return (await conn.execute(select(db_now()))).scalar_one()

        # The holder renews again after the outage, and the lease as first claimed runs
        # out by the database's clock: only that renewal keeps the lease now.
        async with asyncio.timeout(HANG_GUARD):
            while True:
                if await lease_expiry() > first_expiry and await database_now() > first_expiry:
                    break
                await asyncio.sleep(0.1)

        with pytest.raises(AlreadyRunning):
            await run_job(replica, "collect-daily", DAY)

        gate.release_all()
        result = await asyncio.wait_for(run, 15)
        assert result.status == "success"
        assert result.records_count > 0
        runs = await replica.ledger.recent_runs(cron_name="collect-daily")
        assert [(r.id, r.status) for r in runs] == [(result.run_id, "success")]
    finally:
        gate.release_all()
        await holder.aclose()
        await replica.aclose()
