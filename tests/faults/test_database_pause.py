"""PostgreSQL paused (SIGSTOP) rather than stopped: a database that hangs instead of refusing.

That is what a stalled host or a network partition looks like to a client, and it is the
harder case: nothing fails, calls just never end. Two promises are held against it:
a bounded database call ends on time, and a short outage during a run neither starts a
second run of the job nor gets the first one closed as abandoned (issue 12, item 1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from cronkeeper.errors import AlreadyRunning
from cronkeeper.runner import run_job
from cronkeeper.sandbox import MetaSimulator, serve_app
from cronkeeper.service import Service
from cronkeeper.storage.breaker import Breaker
from cronkeeper.storage.dbclock import db_now
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_leases
from tests.conftest import make_settings
from tests.faults.helpers import DAY, META_TOKEN, POSTGRES_ONLY, GatedApp, meta_account, wait_until
from tests.support.pg import PgCluster

pytestmark = POSTGRES_ONLY

ACCOUNT = "1001"
OUTAGE = 6.0
TTL = 12.0  # renewed every 4 s: an outage of 6 s fits, and the test stays short


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
    breaker = Breaker()

    async def select_one() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())

    try:
        assert await breaker.call(select_one, seconds=1.0) == 1  # a pooled, live connection
        with pg_cluster.paused():
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await breaker.call(select_one, seconds=1.0, gated=False)
            took = time.monotonic() - started
        assert took < 2.0
        assert not breaker.allow()
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_a_six_second_outage_mid_run_starts_no_second_run_and_abandons_nothing(
    database_url: str, pg_cluster: PgCluster, gated_meta: tuple[GatedApp, str]
) -> None:
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
            await asyncio.sleep(OUTAGE)
        finally:
            await asyncio.to_thread(pg_cluster.resume)

        # Wait, by the database's clock, until the lease as claimed has run out: only the
        # holder's renewals keep it now.
        async def database_now() -> object:
            async with replica.engine.connect() as conn:
                return (await conn.execute(select(db_now()))).scalar_one()

        deadline = time.monotonic() + TTL + 5
        while await database_now() <= first_expiry:  # type: ignore[operator]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)

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
