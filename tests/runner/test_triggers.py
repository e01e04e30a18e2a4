"""Running a job on demand: the HTTP trigger, the CLI's exit codes, one run at a time."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, select

from cronkeeper.api.app import create_app
from cronkeeper.runner import ABANDONED
from cronkeeper.sandbox import Fault, MetaSimulator, serve_app
from cronkeeper.service import Service
from cronkeeper.storage.dbclock import db_now
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import cron_leases
from tests.conftest import SECRET, FakeClock, make_settings
from tests.faults.helpers import GatedApp, meta_account
from tests.support.cli import CLI, clean_env
from tests.support.cli import run_cli as cli
from tests.support.waiting import eventually_sync

AUTH = {"Authorization": f"Bearer {SECRET}"}
TOKEN = "meta-token-for-trigger-tests"
GOOD, BAD = "111", "222"


@pytest.fixture
def meta_sim() -> MetaSimulator:
    return MetaSimulator([GOOD, BAD], access_token=TOKEN, always={BAD: Fault.meta_error(100)})


@pytest.fixture
def meta_url(meta_sim: MetaSimulator) -> Iterator[str]:
    with serve_app(meta_sim.app) as url:
        yield url


def settings_for(
    database_url: str, meta_url: str, accounts: str = f"{GOOD},{BAD}"
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "CRON_SECRET": SECRET,
        "META_API_BASE": meta_url,
        "META_ACCESS_TOKEN": TOKEN,
        "META_AD_ACCOUNT_IDS": accounts,
        "META_LOOKBACK_DAYS": "1",  # one row per account; the window has its own tests
    }


async def api_client(env: dict[str, str], clock: FakeClock) -> tuple[httpx.AsyncClient, Service]:
    settings = make_settings(
        env["DATABASE_URL"], **{k: v for k, v in env.items() if k != "DATABASE_URL"}
    )
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    transport = httpx.ASGITransport(app=create_app(service))
    return httpx.AsyncClient(transport=transport, base_url="http://t"), service


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_trigger_runs_the_job_and_answers_the_contract(
    database_url: str, meta_url: str, clock: FakeClock, method: str
) -> None:
    client, service = await api_client(settings_for(database_url, meta_url), clock)
    async with client:
        response = await client.request(
            method, "/api/cron/collect-daily?date=2026-11-19", headers=AUTH
        )
    body = response.json()
    assert response.status_code == 200
    assert set(body) >= {"runId", "cronName", "status", "recordsCount", "errorMessage"}
    assert (body["cronName"], body["status"], body["recordsCount"]) == (
        "collect-daily",
        "partial",
        1,
    )
    assert "act_222" in body["errorMessage"]
    assert TOKEN not in response.text
    row = await service.ledger.get_run(body["runId"])
    assert row is not None and row.status == "partial"
    assert str(row.report_date) == "2026-11-19"
    await service.aclose()


async def test_trigger_answers_500_when_the_run_ends_error(
    database_url: str, meta_url: str, clock: FakeClock
) -> None:
    client, service = await api_client(settings_for(database_url, meta_url, accounts=BAD), clock)
    async with client:
        response = await client.post("/api/cron/collect-daily", headers=AUTH)
    assert response.status_code == 500
    assert response.json()["status"] == "error"
    await service.aclose()


async def test_trigger_of_an_unknown_job_is_404_and_records_nothing(
    database_url: str, meta_url: str, clock: FakeClock
) -> None:
    client, service = await api_client(settings_for(database_url, meta_url), clock)
    async with client:
        response = await client.post("/api/cron/collect-weekly", headers=AUTH)
        unauthorised = await client.post("/api/cron/collect-daily")
    assert response.status_code == 404
    assert "collect-daily" in response.json()["error"]
    assert unauthorised.status_code == 401
    assert await service.ledger.count_runs() == 0
    await service.aclose()


async def test_trigger_while_the_job_runs_elsewhere_is_409_and_records_no_run(
    database_url: str, meta_url: str, clock: FakeClock
) -> None:
    client, service = await api_client(settings_for(database_url, meta_url), clock)
    lease = await service.leases.try_acquire("collect-daily", holder="other-replica")
    assert lease.acquired
    async with client:
        response = await client.post("/api/cron/collect-daily", headers=AUTH)
        other_job = await client.post("/api/cron/collect-benchmarks", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["cronName"] == "collect-daily"
    assert other_job.status_code == 200  # leases are per job
    runs = await service.ledger.recent_runs(cron_name="collect-daily")
    assert runs == []
    await service.aclose()


# -- the CLI: exit codes in-process, one run at a time across real processes ----------------


def run_cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli(*args, env=env, cwd=cwd, timeout=120)


def test_cli_run_exit_codes_success_partial_error(
    database_url: str, meta_url: str, tmp_path: Path
) -> None:
    env = settings_for(database_url, meta_url)
    assert (
        run_cli(env, "run", "collect-daily", "--date", "2026-11-19", cwd=tmp_path).returncode == 3
    )
    assert (
        run_cli(env, "run", "collect-benchmarks", "--date", "2026-11-19", cwd=tmp_path).returncode
        == 0
    )
    only_bad = settings_for(database_url, meta_url, accounts=BAD)
    failed = run_cli(only_bad, "run", "collect-daily", "--date", "2026-11-19", cwd=tmp_path)
    assert failed.returncode == 1
    assert TOKEN not in failed.stdout + failed.stderr


async def test_cli_run_exits_75_when_the_job_is_already_running(
    database_url: str, meta_url: str, tmp_path: Path
) -> None:
    env = settings_for(database_url, meta_url)
    service = Service.from_settings(make_settings(database_url))
    async with service.engine.begin() as conn:
        now = datetime.now(UTC)
        await conn.execute(
            insert(cron_leases).values(
                job_name="collect-daily",
                holder="elsewhere",
                acquired_at=now,
                expires_at=now + timedelta(minutes=5),
            )
        )
    result = run_cli(env, "run", "collect-daily", cwd=tmp_path)
    assert result.returncode == 75
    assert "already running" in result.stderr
    assert await service.ledger.count_runs() == 0
    await service.aclose()


@pytest.mark.sql  # also PostgreSQL and PgBouncer
def test_two_processes_triggering_at_once_produce_exactly_one_run(
    database_url: str, tmp_path: Path
) -> None:
    slow = MetaSimulator([GOOD], access_token=TOKEN)
    # Whichever process claims the lease first is held at Meta's insights until the other
    # has ended: the two runs overlap by construction, not by a latency that a loaded
    # machine may outlast.
    gate = GatedApp(slow.app, meta_account)
    with serve_app(gate) as url:
        env = clean_env(settings_for(database_url, url, accounts=GOOD))
        args = [*CLI, "run", "collect-daily", "--date", "2026-11-19"]
        first = subprocess.Popen(
            args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        second = subprocess.Popen(
            args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            eventually_sync(
                lambda: first.poll() is not None or second.poll() is not None,
                what="one of the two processes ending while the other holds the lease",
                within=60,
            )
        finally:
            gate.release_all()
        codes = sorted([first.wait(timeout=60), second.wait(timeout=60)])
    assert codes == [0, 75]
    assert gate.arrived == [GOOD]  # one run asked Meta for the insights
    assert len(slow.log.records) == 2  # the account's details, then its insights: one run

    async def count() -> int:
        service = Service.from_settings(make_settings(database_url))
        try:
            return await service.ledger.count_runs()
        finally:
            await service.aclose()

    assert asyncio.run(count()) == 1


@pytest.mark.slow  # waits out a real lease TTL
def test_a_killed_run_leaves_a_lease_that_expires_and_a_row_closed_as_abandoned(
    database_url: str, tmp_path: Path
) -> None:
    hanging = MetaSimulator([GOOD], access_token=TOKEN, always={GOOD: Fault.hang(60)})
    with serve_app(hanging.app) as url:
        # Long enough that the refusal right after the kill cannot race the expiry on a
        # loaded machine; the test then waits for the expiry itself, not for a fixed time.
        env = clean_env(
            settings_for(database_url, url, accounts=GOOD) | {"CRONKEEPER_LEASE_TTL": "10"}
        )
        args = [*CLI, "run", "collect-daily", "--date", "2026-11-19"]
        victim = subprocess.Popen(
            args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        eventually_sync(
            lambda: bool(hanging.records_for(GOOD)), what="the job asking for the insights"
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        # The lease is still held: a new run right away is refused without a ledger row
        # (in-process: no interpreter start between the kill and the refusal).
        hanging.always(GOOD, None)
        busy = cli(*args[3:], env=env, cwd=tmp_path)
        assert busy.returncode == 75, busy.stderr

        # Once the dead holder's lease has run out by the database's clock, a run takes over.
        eventually_sync(
            lambda: asyncio.run(lease_expired(database_url)), what="lease expiry", poll=0.2
        )
        after = subprocess.run(
            args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
        assert after.returncode == 0, after.stderr

    async def rows() -> list[tuple[str, str | None]]:
        service = Service.from_settings(make_settings(database_url))
        try:
            runs = await service.ledger.recent_runs(cron_name="collect-daily")
            return [(r.status, r.error_message) for r in runs]
        finally:
            await service.aclose()

    (newest_status, _), (dead_status, dead_message) = asyncio.run(rows())
    assert newest_status == "success"
    assert dead_status == "error"
    assert dead_message == ABANDONED


async def lease_expired(database_url: str) -> bool:
    """Whether collect-daily's lease has run out by the database's own clock."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            expires = (await conn.execute(select(cron_leases.c.expires_at))).scalar_one()
            now = (await conn.execute(select(db_now()))).scalar_one()
        return bool(now > expires)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("day", ["1999-12-31", "2999-01-01"])
async def test_a_report_date_out_of_range_is_400_and_records_nothing(
    database_url: str, meta_url: str, clock: FakeClock, day: str
) -> None:
    client, service = await api_client(settings_for(database_url, meta_url), clock)
    async with client:
        response = await client.post(f"/api/cron/collect-benchmarks?date={day}", headers=AUTH)
    assert response.status_code == 400
    assert day in response.json()["error"]
    assert await service.ledger.count_runs() == 0
    await service.aclose()


@pytest.mark.parametrize(
    ("day", "says"),
    [
        ("1699920000", "YYYY-MM-DD"),  # a Unix timestamp: FastAPI's `date` read it as a day
        ("2026-11-19T00:00:00", "YYYY-MM-DD"),  # a midnight datetime: read as that day
        ("20261119", "YYYY-MM-DD"),  # ISO basic format: date.fromisoformat reads it
        ("2026-11-20", "is not over yet in UTC"),  # today on the fake clock (12:00 UTC)
    ],
)
async def test_only_a_yyyy_mm_dd_day_that_is_over_runs_a_job(
    database_url: str, meta_url: str, clock: FakeClock, day: str, says: str
) -> None:
    """Issue 12: ``?date=1699920000`` and ``?date=…T00:00:00`` ran jobs; today did too."""
    client, service = await api_client(settings_for(database_url, meta_url), clock)
    async with client:
        response = await client.post(f"/api/cron/collect-benchmarks?date={day}", headers=AUTH)
        yesterday = await client.post("/api/cron/collect-benchmarks?date=2026-11-19", headers=AUTH)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]
    assert yesterday.status_code == 200, yesterday.text
    assert await service.ledger.count_runs() == 1
    await service.aclose()
