"""External jobs (``cronkeeper.toml``) are first class: health, watchdog alerts to a real
webhook receiver, pause, metrics, runs and prune see them like the built-in ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cronkeeper.alerting.watchdog import install_watchdog
from cronkeeper.api.app import create_app
from cronkeeper.ledger.prune import prune
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from tests.alerting.test_alerts import Receiver, _server, receiver  # noqa: F401 - fixtures
from tests.conftest import SECRET, FakeClock, make_settings
from tests.web.conftest import login

KEY = "backup-ping-key-0123456789"
ADMIN = {"Authorization": f"Bearer {SECRET}"}
BACKUP = {"Authorization": f"Bearer {KEY}"}
FRIDAY = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


@pytest.fixture
def declared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cronkeeper.toml").write_text(
        '[jobs.backup]\nkind = "external"\nschedule = "0 3 * * *"\nwindow = "1d"\n'
        'ping_key_env = "BACKUP_PING_KEY"\n'
    )
    monkeypatch.setenv("BACKUP_PING_KEY", KEY)


async def ping(api: httpx.AsyncClient, status: str = "success") -> None:
    answer = await api.post("/api/cron/backup/ping", headers=BACKUP, json={"status": status})
    assert answer.status_code == 201, answer.text


@pytest.mark.usefixtures("declared")
async def test_an_external_job_that_stops_checking_in_alerts_missing_once_and_recovers(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    clock.now = FRIDAY
    settings = make_settings(
        database_url, alert_webhook_url=receiver.url, monitored_jobs=("backup",)
    )
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    watchdog = install_watchdog(service)
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        await ping(api)
        assert {c.job: c.state for c in await watchdog.check()}["backup"] == "ok"
        clock.advance(days=2)  # two fires missed, whatever the grace
        for _ in range(3):
            states = {c.job: c.state for c in await watchdog.check()}
            assert states["backup"] == "missing"
        health = (await api.get("/api/cron/health", headers=ADMIN)).json()
        assert health["missing"] == ["backup"] and health["healthy"] is False
        metrics = (await api.get("/metrics", headers=ADMIN)).text
        assert 'cronkeeper_alert_state{cron="backup",state="missing"} 1.0' in metrics
        await ping(api)  # it checks in again: recovered at once (the run's end is evaluated)
        health = (await api.get("/api/cron/health", headers=ADMIN)).json()
        assert health["missing"] == [] and health["checks"]["backup"]["ok"] is True
    await service.aclose()
    backup = [t for t in receiver.texts if "backup" in t]
    assert len(backup) == 2, receiver.texts
    assert backup[0].startswith(":red_circle: backup is missing")
    assert backup[1].startswith(":large_green_circle: backup recovered")


@pytest.mark.usefixtures("declared")
async def test_a_paused_external_job_records_its_check_ins_and_alerts_nothing(
    database_url: str,
    clock: FakeClock,
    receiver: Receiver,  # noqa: F811
) -> None:
    clock.now = FRIDAY
    settings = make_settings(
        database_url, alert_webhook_url=receiver.url, monitored_jobs=("backup",)
    )
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    install_watchdog(service)
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        paused = await api.post("/api/cron/backup/pause", headers=ADMIN)
        assert paused.status_code == 200 and paused.json()["paused"] is True
        await ping(api, "error")
        runs = (await api.get("/api/cron/runs?job=backup", headers=ADMIN)).json()["runs"]
        assert [r["status"] for r in runs] == ["error"]
        check = (await api.get("/api/cron/health", headers=ADMIN)).json()["checks"]["backup"]
        assert (check["ok"], check["paused"]) == (True, True)
        assert receiver.texts == []  # (a resume would evaluate it at once: issue 17)
    await service.aclose()


@pytest.mark.usefixtures("declared")
async def test_the_scheduler_never_fires_an_external_job_and_prune_keeps_its_latest_run(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = FRIDAY
    service = Service.from_settings(make_settings(database_url), clock=clock)
    await service.prepare()
    assert "backup" not in [spec.name for spec in CronScheduler(service).specs]
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        for _ in range(3):
            await ping(api)
            clock.advance(days=40)
        deleted = await prune(service.engine, older_than=timedelta(days=30), now=clock.now)
        runs = (await api.get("/api/cron/runs?job=backup", headers=ADMIN)).json()["runs"]
    await service.aclose()
    assert deleted == 2 and len(runs) == 1


@pytest.mark.usefixtures("declared")
async def test_the_status_page_shows_an_external_job_and_its_check_ins(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = FRIDAY
    service = Service.from_settings(make_settings(database_url), clock=clock)
    await service.prepare()
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        await ping(api, "partial")
        assert (await login(api)).status_code == 303
        page = await api.get("/status")
        job = await api.get("/status", params={"job": "backup"})
    await service.aclose()
    assert page.status_code == 200 and "backup" in page.text
    assert job.status_code == 200 and "partial" in job.text
