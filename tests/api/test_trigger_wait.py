"""Triggers that answer at once (issue 20.6): a run that outlasts ``CRONKEEPER_TRIGGER_WAIT``
is answered ``202`` with its id and goes on; ``GET /api/cron/runs/{id}`` answers its row.

The run is a stub job held on an :class:`asyncio.Event`; the trigger's wait goes through the
service's injected sleep, so no test waits for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date

import httpx
import pytest
from fastapi import FastAPI

from cronkeeper import jobs
from cronkeeper.api.app import create_app
from cronkeeper.jobs import Job, JobContext
from cronkeeper.ledger import RunRow, RunTracker
from cronkeeper.service import RunObserver, Service
from tests.conftest import SECRET, FakeClock, make_settings

AUTH = {"Authorization": f"Bearer {SECRET}"}
JOB = "collect-daily"
BOUND = 10  # seconds: only so that a broken test fails instead of hanging


@dataclass
class Stub:
    """A job that records one row and ends when ``release`` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, ctx: JobContext, day: date, run: RunTracker) -> None:
        self.started.set()
        await self.release.wait()
        run.stored(7)


@dataclass
class Waits:
    """The service's sleep: records what the trigger asked, returns when ``due`` is set."""

    asked: list[float] = field(default_factory=list)
    due: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.due.wait()


@dataclass
class Api:
    client: httpx.AsyncClient
    service: Service
    app: FastAPI
    stub: Stub
    waits: Waits

    async def join(self) -> None:
        await asyncio.wait_for(self.app.state.triggered.join(), BOUND)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Stub:
    stub = Stub()
    monkeypatch.setitem(
        jobs.JOBS, JOB, Job(name=JOB, unit_label="ad accounts", run=stub.run, description="a stub")
    )
    return stub


@pytest.fixture
async def api(database_url: str, clock: FakeClock, stub: Stub) -> AsyncIterator[Api]:
    waits = Waits()
    settings = make_settings(database_url, trigger_wait="1.5s")
    service = Service.from_settings(settings, clock=clock, sleep=waits)
    await service.prepare()
    app = create_app(service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Api(client, service, app, stub, waits)
        stub.release.set()
        await asyncio.wait_for(app.state.triggered.aclose(), BOUND)
    await service.aclose()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_run_that_ends_in_time_is_answered_as_before(api: Api, method: str) -> None:
    api.stub.release.set()
    response = await api.client.request(method, f"/api/cron/{JOB}?date=2026-11-19", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert (body["cronName"], body["status"], body["recordsCount"]) == (JOB, "success", 7)
    assert api.waits.asked == [1.5]  # CRONKEEPER_TRIGGER_WAIT, through the injected sleep


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_run_still_going_after_the_wait_is_202_and_goes_on(api: Api, method: str) -> None:
    api.waits.due.set()  # the wait is over at once; the run is held
    response = await api.client.request(method, f"/api/cron/{JOB}?date=2026-11-19", headers=AUTH)
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"runId", "cronName", "status"}
    assert (body["cronName"], body["status"]) == (JOB, "running")
    run_id = body["runId"]
    assert response.headers["location"] == f"/api/cron/runs/{run_id}"

    row = await api.client.get(response.headers["location"], headers=AUTH)
    assert row.status_code == 200
    assert (row.json()["id"], row.json()["status"]) == (run_id, "running")

    api.stub.release.set()
    await api.join()
    row = await api.client.get(f"/api/cron/runs/{run_id}", headers=AUTH)
    assert (row.json()["status"], row.json()["recordsCount"]) == ("success", 7)


async def test_the_run_goes_on_when_the_caller_hangs_up(api: Api) -> None:
    request = asyncio.create_task(api.client.post(f"/api/cron/{JOB}", headers=AUTH))
    await asyncio.wait_for(api.stub.started.wait(), BOUND)
    request.cancel()  # the caller (or its proxy) gives up
    with pytest.raises(asyncio.CancelledError):
        await request
    api.stub.release.set()
    await api.join()
    [run] = await api.service.ledger.recent_runs(cron_name=JOB, limit=5)
    assert (run.status, run.records_count) == ("success", 7)


class SlowWebhook(RunObserver):
    """An observer (like the webhook) that takes its time with every run end."""

    def __init__(self) -> None:
        self.heard: list[str] = []
        self.release = asyncio.Event()

    async def run_finished(self, run: RunRow, previous: RunRow | None) -> None:
        await self.release.wait()
        self.heard.append(run.id)


async def test_webhook_delivery_never_delays_the_answer(api: Api) -> None:
    webhook = SlowWebhook()
    api.service.observers.append(webhook)
    api.stub.release.set()
    response = await asyncio.wait_for(api.client.post(f"/api/cron/{JOB}", headers=AUTH), BOUND)
    assert (response.status_code, response.json()["status"]) == (200, "success")
    assert webhook.heard == []  # answered while the observer still delivers
    webhook.release.set()
    await api.join()
    assert webhook.heard == [response.json()["runId"]]


async def test_shutdown_cancels_a_run_still_going_and_records_its_end(api: Api) -> None:
    api.waits.due.set()
    response = await api.client.post(f"/api/cron/{JOB}", headers=AUTH)
    assert response.status_code == 202
    await asyncio.wait_for(api.app.state.triggered.aclose(), BOUND)
    row = (await api.client.get(f"/api/cron/runs/{response.json()['runId']}", headers=AUTH)).json()
    assert row["status"] == "error"
    assert "cancelled before it finished" in row["errorMessage"]


@pytest.mark.parametrize(
    "path", ["/api/cron/runs/7e0c54a4-3f0e-4a8b-9c55-0c1b2d3e4f50", "/api/cron/runs/not-a-uuid"]
)
async def test_an_unknown_run_is_404(api: Api, path: str) -> None:
    response = await api.client.get(path, headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "unknown run"}


async def test_the_run_endpoint_needs_the_bearer_and_the_list_still_answers(api: Api) -> None:
    assert (await api.client.get("/api/cron/runs/x")).status_code == 401
    listing = await api.client.get("/api/cron/runs", headers=AUTH)
    assert (listing.status_code, listing.json()) == (200, {"runs": []})


async def test_refusals_before_the_run_are_answered_as_before(api: Api) -> None:
    assert (await api.client.post("/api/cron/nope", headers=AUTH)).status_code == 404
    bad_day = await api.client.post(f"/api/cron/{JOB}?date=2026-13-01", headers=AUTH)
    assert bad_day.status_code == 400
    assert api.app.state.triggered.tasks == set()


@pytest.mark.parametrize(("value", "seconds"), [("10s", 10.0), ("2m", 120.0), ("0.5", 0.5)])
def test_trigger_wait_parses_like_every_duration(
    database_url: str, value: str, seconds: float
) -> None:
    assert make_settings(database_url, trigger_wait=value).trigger_wait_seconds == seconds


def test_a_bad_trigger_wait_is_refused_naming_it(database_url: str) -> None:
    with pytest.raises(ValueError, match="CRONKEEPER_TRIGGER_WAIT"):
        make_settings(database_url, trigger_wait="soon")


def test_the_default_trigger_wait_is_ten_seconds(database_url: str) -> None:
    assert make_settings(database_url).trigger_wait_seconds == 10.0
