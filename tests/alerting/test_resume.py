"""Resume re-evaluates (issue 17, point 6): a job still down when its pause ends alerts once.

A real local webhook receiver hears the alerts; the clock is injected. ``resume`` (the CLI's
and ``POST /api/cron/{job}/resume``, both through :func:`resume_job`) evaluates the job at
once instead of waiting for the watchdog's next tick; a job that was already ``missing`` when
its pause began gets no "one window after the resume" grace; a pause that ends by itself is
evaluated at the next tick. Each alerts once, as if the job had just gone down.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx

from cronkeeper.alerting.pause import pause_job, resume_job
from cronkeeper.alerting.watchdog import Watchdog, install_watchdog
from cronkeeper.api.app import create_app
from cronkeeper.service import Service
from tests.alerting import test_alerts
from tests.alerting.test_alerts import Receiver
from tests.conftest import SECRET, FakeClock, make_settings

FRIDAY = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {SECRET}"}

_server = test_alerts._server  # the real local receiver of the webhook tests
receiver = test_alerts.receiver


def make(database_url: str, clock: FakeClock, hook: Receiver) -> tuple[Service, Watchdog]:
    """A service wired as ``serve`` and the CLI wire it: the watchdog and the settings' webhook."""
    settings = make_settings(
        database_url, monitored_jobs=("collect-daily",), alert_webhook_url=hook.url
    )
    service = Service.from_settings(settings, clock=clock)
    return service, install_watchdog(service)


async def finish(service: Service, clock: FakeClock, status: str) -> None:
    run_id = await service.ledger.start_cron_run("collect-daily", report_date=date(2026, 11, 19))
    clock.advance(minutes=2)
    await service.ledger.complete_cron_run(
        run_id, status, 10, "boom" if status != "success" else None
    )
    run = await service.ledger.get_run(str(run_id))
    assert run is not None
    await service.notify(lambda o: o.run_finished(run, None))


async def test_resuming_a_failed_job_over_the_api_alerts_once_at_once(
    database_url: str, clock: FakeClock, receiver: Receiver
) -> None:
    clock.now = FRIDAY
    service, dog = make(database_url, clock, receiver)
    await service.prepare()
    await finish(service, clock, "error")
    assert len(receiver.texts) == 1 and "collect-daily failed" in receiver.texts[0]
    transport = httpx.ASGITransport(app=create_app(service, own_service=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        paused = await api.post("/api/cron/collect-daily/pause", headers=AUTH)
        assert paused.status_code == 200
        await dog.check()  # the watchdog's tick sees the pause: silent
        clock.advance(hours=3)
        resumed = await api.post("/api/cron/collect-daily/resume", headers=AUTH)
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        # No tick in between: the resume itself evaluated the job.
        assert len(receiver.texts) == 2, receiver.texts
        assert receiver.texts[1].startswith(":red_circle: collect-daily failed")
        await dog.check()
        await dog.check()
    await service.aclose()
    assert len(receiver.texts) == 2, "once, not at every tick"


async def test_a_job_missing_before_its_pause_is_missing_again_when_resumed(
    database_url: str, clock: FakeClock, receiver: Receiver
) -> None:
    clock.now = FRIDAY
    service, dog = make(database_url, clock, receiver)
    await finish(service, clock, "success")
    clock.advance(hours=26)  # daily window of 25 h: nothing started since
    await dog.check()
    assert len(receiver.texts) == 1 and "collect-daily is missing" in receiver.texts[0]
    await pause_job(service, "collect-daily", reason="looking into it")
    await dog.check()
    clock.advance(days=2)
    await resume_job(service, "collect-daily")
    assert len(receiver.texts) == 2, "the resume hid an outage that began before the pause"
    assert receiver.texts[1].startswith(":red_circle: collect-daily is missing")
    clock.advance(hours=1)
    await dog.check()
    [state] = (await service.job_states.read(["collect-daily"])).values()
    await service.aclose()
    assert len(receiver.texts) == 2 and state.state == "missing"


async def test_a_job_paused_while_healthy_gets_one_window_after_resume(
    database_url: str, clock: FakeClock, receiver: Receiver
) -> None:
    """Its fires were skipped on purpose: ``missing`` only once a window has passed."""
    clock.now = FRIDAY
    service, dog = make(database_url, clock, receiver)
    await finish(service, clock, "success")
    await pause_job(service, "collect-daily")
    await dog.check()
    clock.advance(days=3)
    await resume_job(service, "collect-daily")
    await dog.check()
    assert receiver.texts == []
    clock.advance(hours=26)
    await dog.check()
    await dog.check()
    await service.aclose()
    assert len(receiver.texts) == 1 and "collect-daily is missing" in receiver.texts[0]


async def test_a_pause_that_ends_by_itself_on_a_stuck_job_alerts_once(
    database_url: str, clock: FakeClock, receiver: Receiver
) -> None:
    clock.now = FRIDAY
    service, dog = make(database_url, clock, receiver)
    await service.ledger.start_cron_run("collect-daily", report_date=date(2026, 11, 19))
    await pause_job(service, "collect-daily", for_="2h")
    await dog.check()
    clock.advance(minutes=90)  # stuck (max runtime 1 h), but paused: silent
    await dog.check()
    assert receiver.texts == []
    clock.advance(hours=1)  # the pause has ended by itself
    await dog.check()
    await dog.check()
    await service.aclose()
    assert len(receiver.texts) == 1 and "collect-daily is stuck" in receiver.texts[0]


async def test_resuming_a_job_that_was_never_paused_says_nothing(
    database_url: str, clock: FakeClock, receiver: Receiver
) -> None:
    clock.now = FRIDAY
    service, _ = make(database_url, clock, receiver)
    await finish(service, clock, "success")
    await resume_job(service, "collect-daily")
    await service.aclose()
    assert receiver.texts == []
