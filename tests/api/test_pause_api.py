"""POST /api/cron/{job}/pause and /resume: bearer, validation, and what health then says."""

from __future__ import annotations

import httpx
import pytest

from cronkeeper.api.app import create_app
from cronkeeper.config import Settings
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings

AUTH = {"Authorization": f"Bearer {SECRET}"}


async def test_pause_for_a_while_then_resume(settings: Settings, clock: FakeClock) -> None:
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        denied = await api.post("/api/cron/collect-daily/pause")
        assert denied.status_code == 401
        paused = await api.post(
            "/api/cron/collect-daily/pause",
            params={"for": "2h", "reason": "Meta outage"},
            headers=AUTH,
        )
        assert paused.status_code == 200
        assert paused.json() == {
            "cronName": "collect-daily",
            "paused": True,
            "pausedUntil": "2026-11-20T14:00:00+00:00",
            "pauseReason": "Meta outage",
            "pausedBy": "api",
        }
        health = (await api.get("/api/cron/health", headers=AUTH)).json()
        daily = health["checks"]["collect-daily"]
        assert (daily["ok"], daily["paused"], daily["pausedUntil"]) == (
            True,
            True,
            "2026-11-20T14:00:00+00:00",
        )
        # issue 22: the reason and who paused, in health (they were accepted, shown nowhere)
        assert (daily["pauseReason"], daily["pausedBy"]) == ("Meta outage", "api")
        assert "collect-daily" not in health["missing"]
        metrics = (await api.get("/metrics", headers=AUTH)).text
        assert 'cronkeeper_job_paused{cron="collect-daily"} 1.0' in metrics
        resumed = await api.post("/api/cron/collect-daily/resume", headers=AUTH)
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        again = (await api.get("/api/cron/health", headers=AUTH)).json()
        assert again["checks"]["collect-daily"]["paused"] is False
        metrics = (await api.get("/metrics", headers=AUTH)).text
        assert 'cronkeeper_job_paused{cron="collect-daily"} 0.0' in metrics
        assert 'cronkeeper_alert_state{cron="collect-daily",state="ok"} 1.0' in metrics
    await service.aclose()


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/cron/collect-weekly/pause", {}, 404),
        ("/api/cron/collect-weekly/resume", {}, 404),
        ("/api/cron/collect-daily/pause", {"for": "soon"}, 400),
        ("/api/cron/collect-daily/pause", {"for": "-1h"}, 400),
    ],
)
async def test_pause_refuses_unknown_jobs_and_bad_durations(
    settings: Settings, clock: FakeClock, path: str, params: dict[str, str], status: int
) -> None:
    service = Service.from_settings(settings, clock=clock)
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        answer = await api.post(path, params=params, headers=AUTH)
    await service.aclose()
    assert answer.status_code == status


async def test_pause_answers_500_without_driver_text_when_the_database_is_down(
    clock: FakeClock,
) -> None:
    settings = make_settings("postgresql://u:hunter2hunter2@127.0.0.1:1/none", ledger_timeout=1.0)
    service = Service.from_settings(settings, clock=clock)
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        answer = await api.post("/api/cron/collect-daily/pause", headers=AUTH)
    await service.aclose()
    assert answer.status_code == 500
    assert answer.json() == {"error": "database unavailable"}
