"""PostgreSQL stopped in the middle of a collect-daily run, and started again.

One long-lived service and app (no restart): the run is triggered over the API and goes on
through the outage; health answers 500 while the server is down and 200 once it is back.
Timings are events, not sleeps: the Meta simulator sits behind a gate, so the test stops the
database exactly while the second wave of accounts is being fetched, lets that wave hit the
dead server, and restarts it before (or, in the second test, after) the third wave writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cronkeeper.api.app import create_app
from cronkeeper.sandbox import MetaSimulator, serve_app
from cronkeeper.service import Service
from tests.conftest import make_settings
from tests.faults.helpers import (
    AUTH,
    DAY,
    META_TOKEN,
    POSTGRES_ONLY,
    GatedApp,
    meta_account,
    skipped_units,
    stored_insights,
    wait_until,
)
from tests.support.pg import PgCluster

pytestmark = [*POSTGRES_ONLY, pytest.mark.slow]

ACCOUNTS = [str(1001 + i) for i in range(6)]
LEDGER_TIMEOUT = 2.0
STEP = 15.0  # a hang guard per phase: a phase that never ends fails the test


@dataclass
class World:
    sim: MetaSimulator
    gate: GatedApp
    service: Service
    client: httpx.AsyncClient

    def waves(self) -> list[list[str]]:
        """The accounts in the order their first request arrived, two at a time."""
        seen = list(dict.fromkeys(self.gate.arrived))
        return [seen[i : i + 2] for i in range(0, len(seen), 2)]

    async def health(self) -> httpx.Response:
        return await self.client.get("/api/cron/health", headers=AUTH)


@pytest.fixture
def gated_meta() -> Iterator[tuple[MetaSimulator, GatedApp, str]]:
    sim = MetaSimulator(ACCOUNTS, access_token=META_TOKEN, latency=0.05)
    gate = GatedApp(sim.app, meta_account)
    with serve_app(gate) as url:
        try:
            yield sim, gate, url
        finally:
            gate.release_all()  # before the server stops: it waits for held requests


@asynccontextmanager
async def world(
    database_url: str, gated: tuple[MetaSimulator, GatedApp, str]
) -> AsyncIterator[World]:
    sim, gate, url = gated
    settings = make_settings(
        database_url,
        meta_api_base=url,
        meta_access_token=META_TOKEN,
        meta_ad_account_ids=",".join(ACCOUNTS),
        meta_lookback_days=1,  # one insights request per account: the waves stay countable
        concurrency=2,
        ledger_timeout=LEDGER_TIMEOUT,
        monitored_jobs="collect-daily",
    )
    service = Service.from_settings(settings)
    assert await service.prepare()
    transport = httpx.ASGITransport(app=create_app(service, own_service=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://cronkeeper") as client:
        try:
            yield World(sim, gate, service, client)
        finally:
            gate.release_all()
            await service.aclose()


async def expect_database_down(w: World) -> None:
    response = await w.health()
    assert response.status_code == 500
    assert response.json() == {"healthy": False, "error": "database unavailable"}


async def test_a_database_restarted_mid_run_loses_nothing_and_the_run_is_recorded(
    database_url: str,
    pg_cluster: PgCluster,
    gated_meta: tuple[MetaSimulator, GatedApp, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with world(database_url, gated_meta) as w:
        assert (await w.health()).status_code == 200
        trigger = asyncio.create_task(
            w.client.post(f"/api/cron/collect-daily?date={DAY.isoformat()}", headers=AUTH)
        )
        # Wave 1 is fetched and written while the database is up.
        await wait_until(lambda: len(w.gate.arrived) >= 2, within=STEP, what="wave 1")
        first = w.waves()[0]
        w.gate.release(*first)
        # Wave 2 arriving means wave 1 released its slots: its rows are committed.
        await wait_until(lambda: len(w.gate.arrived) >= 4, within=STEP, what="wave 2")
        second = w.waves()[1]
        await asyncio.to_thread(pg_cluster.stop)
        await expect_database_down(w)

        # Wave 2 is answered by Meta and fails to write: the database is down.
        w.gate.release(*second)
        await wait_until(lambda: len(w.gate.arrived) >= 6, within=STEP, what="wave 3")
        third = w.waves()[2]
        await expect_database_down(w)
        assert not trigger.done(), "the run must still be going"

        # The database comes back; wave 3 writes to it through the same engine and pool.
        await asyncio.to_thread(pg_cluster.start)
        w.gate.release(*third)
        response = await asyncio.wait_for(trigger, STEP)

        body = response.json()
        assert response.status_code == 200, body
        assert (body["status"], body["recordsCount"]) == ("partial", 4)
        # Every account is either stored or named as skipped, with why; none is lost silently.
        assert skipped_units(body["errorMessage"]) == set(second)
        assert "could not store the row" in body["errorMessage"]
        assert META_TOKEN not in response.text
        stored = await stored_insights(w.service.engine)
        assert set(stored) == set(first) | set(third)
        for account, row in stored.items():
            expected = w.sim.expected(account, DAY)
            assert (row["impressions"], row["clicks"], row["spend"]) == (
                expected.impressions,
                expected.clicks,
                expected.spend,
            )

        # The ledger row was started before the outage and completed after it.
        run = await w.service.ledger.get_run(body["runId"])
        assert run is not None
        assert (run.status, run.records_count) == ("partial", 4)
        assert run.finished_at is not None
        assert run.error_message == body["errorMessage"]

        healthy = await w.health()
        assert healthy.status_code == 200
        assert healthy.json()["healthy"] is True
        assert healthy.json()["checks"]["collect-daily"]["status"] == "partial"
    assert "could not record" not in caplog.text
    assert META_TOKEN not in caplog.text


async def test_a_run_that_ends_while_the_database_is_down_is_recorded_at_the_next_contact(
    database_url: str,
    pg_cluster: PgCluster,
    gated_meta: tuple[MetaSimulator, GatedApp, str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.WARNING)
    async with world(database_url, gated_meta) as w:
        trigger = asyncio.create_task(
            w.client.post(f"/api/cron/collect-daily?date={DAY.isoformat()}", headers=AUTH)
        )
        await wait_until(lambda: len(w.gate.arrived) >= 2, within=STEP, what="wave 1")
        first = w.waves()[0]
        w.gate.release(*first)
        await wait_until(lambda: len(w.gate.arrived) >= 4, within=STEP, what="wave 2")
        await asyncio.to_thread(pg_cluster.stop)
        w.gate.release_all()
        response = await asyncio.wait_for(trigger, STEP)
        await expect_database_down(w)

        # The run went on without its database, and said what it could not store.
        body = response.json()
        assert response.status_code == 200, body
        assert (body["status"], body["recordsCount"]) == ("partial", 2)
        assert skipped_units(body["errorMessage"]) == set(ACCOUNTS) - set(first)
        run_id = body["runId"]
        assert run_id is not None  # the start was recorded before the outage
        ledger_errors = [
            r.getMessage()
            for r in caplog.records
            if r.name == "cronkeeper.ledger" and r.levelno == logging.ERROR
        ]
        assert len(ledger_errors) == 1
        assert ledger_errors[0].startswith(f"could not record the end of run {run_id} as partial")
        assert any("could not release the lease of collect-daily" in m for m in caplog.messages)
        assert META_TOKEN not in caplog.text

        # The end the database could not take waits in the local spool.
        assert any(f"kept in {tmp_path}" in m for m in ledger_errors)
        assert len(list((tmp_path / "cronkeeper-spool").glob("*.json"))) == 1

        await asyncio.to_thread(pg_cluster.start)
        # What was written before the outage is there; until something contacts the database
        # again the row is `running`, which health accepts until max_runtime.
        assert set(await stored_insights(w.service.engine)) == set(first)
        run = await w.service.ledger.get_run(run_id)
        assert run is not None
        assert (run.status, run.finished_at) == ("running", None)

        # Any command is a contact: the run ends with its true outcome, never "abandoned".
        command = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cronkeeper", "health"],
            env=os.environ
            | {"DATABASE_URL": database_url, "CRONKEEPER_MONITORED_JOBS": "collect-daily"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert command.returncode == 0, command.stderr
        run = await w.service.ledger.get_run(run_id)
        assert run is not None
        assert (run.status, run.records_count) == ("partial", 2)
        assert run.error_message == body["errorMessage"]
        assert run.finished_at is not None
        assert list((tmp_path / "cronkeeper-spool").glob("*.json")) == []
        after = await w.health()
        assert after.status_code == 200
        assert after.json()["checks"]["collect-daily"]["status"] == "partial"
