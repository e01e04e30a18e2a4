"""The watchdog on SQLite and PostgreSQL, with a test clock: absences, thresholds, volume,
pauses and reminders, each change alerted once however many watchdogs look."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.alerting.delivery import WebhookAlerter
from cronkeeper.alerting.watchdog import Watchdog
from cronkeeper.ledger import RunRow
from cronkeeper.metrics import LedgerCollector, read_snapshot
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine
from tests.conftest import FakeClock, make_settings
from tests.support.fakes import FakeRun

FRIDAY = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


@dataclass
class Outbox(WebhookAlerter):
    """Records what would be posted (delivery itself is tested against a real receiver)."""

    texts: list[str] = field(default_factory=list)

    def __init__(self) -> None:
        super().__init__("https://hooks.example.test/x")
        self.texts = []

    async def send(
        self, text: str, *, about: str = "cronkeeper", key: str | None = None, title: str = ""
    ) -> bool:
        self.texts.append(text)
        return True


def make(
    database_url: str, clock: FakeClock, engine: AsyncEngine | None = None, **env: Any
) -> tuple[Service, Watchdog, Outbox]:
    env.setdefault("monitored_jobs", ("collect-daily",))
    service = Service.from_settings(make_settings(database_url, **env), clock=clock, engine=engine)
    outbox = Outbox()
    watchdog = Watchdog(service, alerters=[outbox])
    service.observers.append(watchdog)
    return service, watchdog, outbox


async def finish(
    service: Service,
    clock: FakeClock,
    status: str,
    records: int = 200,
    *,
    job: str = "collect-daily",
    day: date | None = None,
) -> RunRow:
    """Record one run that ends now, as the runner does, and tell the observers."""
    day = day or clock.now.date() - timedelta(days=1)
    run_id = await service.ledger.start_cron_run(job, report_date=day)
    clock.advance(minutes=2)
    await service.ledger.complete_cron_run(
        run_id, status, records, "boom" if status != "success" else None
    )
    run = await service.ledger.get_run(str(run_id))
    assert run is not None
    await service.notify(lambda o: o.run_finished(run, None))
    return run


async def test_thresholds_3_and_2_alert_on_the_third_failure_and_recover_on_the_second_success(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = FRIDAY
    service, _, outbox = make(database_url, clock, failure_threshold="3", recovery_threshold=2)
    seen = []
    for status in ["error", "error", "error", "success", "success", "success"]:
        await finish(service, clock, status)
        seen.append(len(outbox.texts))
        clock.advance(hours=1)
    await service.aclose()
    assert seen == [0, 0, 1, 1, 2, 2]
    assert outbox.texts[0].startswith(":red_circle: collect-daily failed")
    assert "(3 runs in a row ended error)" in outbox.texts[0]
    assert outbox.texts[1].startswith(":large_green_circle: collect-daily recovered")
    assert "after a run that ended error" in outbox.texts[1]


async def test_a_job_that_never_starts_alerts_once_however_many_watchdogs_look(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = FRIDAY
    services = []
    for _ in range(3):  # three replicas: their own engines, one database
        engine = create_engine(database_url)
        services.append(make(database_url, clock, engine))
    try:
        await finish(services[0][0], clock, "success")
        clock.advance(hours=23)
        for _, dog, _ in services:
            assert [c.state for c in await dog.check()] == ["ok"] * 4
        clock.advance(hours=2)  # 25 h since collect-daily last started: missing
        for _ in range(3):
            changes = await asyncio.gather(*(dog.check() for _, dog, _ in services))
        texts = [t for _, _, box in services for t in box.texts]
        assert len(texts) == 1, texts
        assert texts[0].startswith(
            ":red_circle: collect-daily is missing: no run started by its expected fire"
            " (0 1 * * *) + 1h grace"
        )
        assert sum(c.sent for batch in changes for c in batch) == 0, "later checks send nothing"
        # It runs again: one "recovered", from whichever replica saw it first.
        await finish(services[1][0], clock, "success")
        await asyncio.gather(*(dog.check() for _, dog, _ in services))
        texts = [t for _, _, box in services for t in box.texts]
        assert len(texts) == 2
        assert sum(t.startswith(":large_green_circle: collect-daily recovered") for t in texts) == 1
    finally:
        for service, _, _ in services:
            await service.aclose()


async def test_a_drop_from_about_200_to_20_after_8_weeks_is_low_volume(
    database_url: str, clock: FakeClock
) -> None:
    start = FRIDAY - timedelta(weeks=8)
    clock.now = start
    service, _, outbox = make(database_url, clock)
    for n in range(56):
        clock.now = start + timedelta(days=n)
        await finish(service, clock, "success", 195 + (n * 7) % 11)
    assert outbox.texts == []
    clock.now = FRIDAY
    await finish(service, clock, "success", 20)
    report = (await service.health()).as_json()
    scrape = generate_latest(LedgerCollector(await read_snapshot(service))).decode()
    await service.aclose()
    assert 'cronkeeper_volume_anomaly{anomaly="low-volume",cron="collect-daily"} 1.0' in scrape
    assert 'cronkeeper_alert_state{cron="collect-daily",state="anomalous"} 1.0' in scrape
    [text] = outbox.texts
    assert text.startswith(":large_orange_circle: collect-daily wrote unusually few records")
    assert "wrote 20 (expected" in text
    daily = report["checks"]["collect-daily"]
    assert daily["anomaly"] == "low-volume"
    assert daily["expectedRecords"]["low"] > 20 and daily["expectedRecords"]["high"] < 260
    assert daily["ok"] is True, "volume changes ok only with CRONKEEPER_VOLUME_AFFECTS_HEALTH"


async def test_volume_affects_health_when_asked(database_url: str, clock: FakeClock) -> None:
    clock.now = FRIDAY - timedelta(days=8)
    service, _, _ = make(database_url, clock, volume_affects_health=True)
    for _ in range(8):
        await finish(service, clock, "success", 200)
        clock.advance(days=1)
    clock.now = FRIDAY
    await finish(service, clock, "success", 0)  # zero after non-zero: always an anomaly
    report = (await service.health()).as_json()
    await service.aclose()
    assert report["checks"]["collect-daily"]["anomaly"] == "low-volume"
    assert report["healthy"] is False and report["checks"]["collect-daily"]["reason"] == "anomalous"


async def test_a_paused_job_is_skipped_by_the_scheduler_silent_and_ok(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = FRIDAY - timedelta(days=2)
    service, dog, outbox = make(database_url, clock)
    await finish(service, clock, "success")
    await service.job_states.pause("collect-daily", clock.now, until=None, reason="Meta outage")
    run = FakeRun()
    jobs = [s for s in service.settings.jobs if s.name == "collect-daily"]
    sched = CronScheduler(service, run=run, jobs=jobs)
    clock.now = FRIDAY  # 01:00: collect-daily's slot
    assert [f.name for f in await sched.tick()] == ["collect-daily"]
    assert run.calls == [], "not fired"
    await finish(service, clock, "error")  # a manual run that fails: still silent
    await dog.check()
    report = (await service.health()).as_json()
    assert outbox.texts == []
    daily = report["checks"]["collect-daily"]
    assert (daily["ok"], daily["paused"], daily["pausedUntil"]) == (True, True, None)
    # Resumed: the job is failed (its last run errored): that is one alert, now.
    await service.job_states.resume("collect-daily", clock.now)
    await dog.check()
    await dog.check()
    clock.now = FRIDAY + timedelta(days=1)
    await sched.tick()
    await service.aclose()
    assert len(outbox.texts) == 1 and "collect-daily failed" in outbox.texts[0]
    assert run.calls == [("collect-daily", date(2026, 11, 20))], "fired again after resume"


async def test_a_pause_for_a_while_ends_by_itself(database_url: str, clock: FakeClock) -> None:
    clock.now = FRIDAY
    service, dog, outbox = make(database_url, clock)
    await finish(service, clock, "success")
    await service.job_states.pause(
        "collect-daily", clock.now, until=clock.now + timedelta(hours=2), reason=None
    )
    await dog.check()
    assert (await service.health()).as_json()["checks"]["collect-daily"]["paused"] is True
    clock.advance(hours=3)
    [change] = await dog.check(["collect-daily"])
    report = (await service.health()).as_json()
    await service.aclose()
    assert (change.before, change.state) == ("paused", "ok")
    assert report["checks"]["collect-daily"]["paused"] is False and outbox.texts == []


async def test_a_resumed_job_is_not_missing_for_one_window(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = FRIDAY
    service, dog, outbox = make(database_url, clock)
    await finish(service, clock, "success")
    await service.job_states.pause("collect-daily", clock.now, until=None, reason=None)
    clock.advance(days=3)
    await service.job_states.resume("collect-daily", clock.now)
    assert [c.state for c in await dog.check(["collect-daily"])] == ["ok"]
    clock.advance(hours=25)
    assert [c.state for c in await dog.check(["collect-daily"])] == ["missing"]
    await service.aclose()
    assert len(outbox.texts) == 1


async def test_a_stuck_run_alerts_and_a_reminder_repeats_while_down(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = FRIDAY
    service, dog, outbox = make(database_url, clock, alert_repeat="24h")
    await service.ledger.start_cron_run("collect-daily", report_date=date(2026, 11, 19))
    clock.advance(minutes=90)  # max runtime 1 h
    await dog.check()
    assert len(outbox.texts) == 1 and "collect-daily is stuck" in outbox.texts[0]
    clock.advance(hours=23)
    await dog.check()
    assert len(outbox.texts) == 1
    clock.advance(hours=1)
    await asyncio.gather(dog.check(), dog.check())
    await service.aclose()
    assert len(outbox.texts) == 2
    assert outbox.texts[1].startswith(":repeat: still stuck since")


async def test_a_partial_run_warns_but_is_no_state(database_url: str, clock: FakeClock) -> None:
    clock.now = FRIDAY
    service, dog, outbox = make(database_url, clock)
    await finish(service, clock, "partial")
    [change] = await dog.check(["collect-daily"])
    await service.aclose()
    assert change.state == "ok"
    [text] = outbox.texts
    assert text.startswith(":large_yellow_circle: collect-daily partial")


async def test_a_missing_agency_job_recovers_on_partial_runs_within_the_tolerance(
    database_url: str, clock: FakeClock
) -> None:
    """Issue 17: 1,000 accounts, a dozen always failing: every run is ``partial``. Leaving
    ``missing`` needed ``success`` runs, so the job stayed down and ``check`` exited 1 for
    ever while health said ok."""
    clock.now = FRIDAY
    service, dog, outbox = make(database_url, clock, recovery_threshold=2)
    clock.advance(days=3)
    assert [c.state for c in await dog.check(["collect-daily"])] == ["missing"]
    for _ in range(2):
        run_id = await service.ledger.start_cron_run("collect-daily")
        clock.advance(minutes=2)
        await service.ledger.complete_cron_run(
            run_id, "partial", 9700, "skipped 12 of 1000 ad accounts:\n- act_1: (#200) denied"
        )
        clock.advance(hours=1)
        changes = await dog.check(["collect-daily"])
    await service.aclose()
    assert [c.state for c in changes] == ["ok"]
    assert outbox.texts[-1].startswith(":large_green_circle: collect-daily recovered")


async def test_an_agency_job_always_partial_learns_its_volume_baseline(
    database_url: str, clock: FakeClock
) -> None:
    """Issue 17: the baseline read only ``success`` runs, so a job whose runs are all
    ``partial`` (a few accounts always fail) never had one and no drop was ever noticed."""
    start = FRIDAY - timedelta(weeks=8)
    service, _, outbox = make(database_url, clock)

    async def partial(records: int) -> None:
        run_id = await service.ledger.start_cron_run(
            "collect-daily", report_date=clock.now.date() - timedelta(days=1)
        )
        clock.advance(minutes=2)
        await service.ledger.complete_cron_run(
            run_id, "partial", records, "skipped 3 of 1000 ad accounts:\n- act_1: (#200) denied"
        )
        run = await service.ledger.get_run(str(run_id))
        assert run is not None
        await service.notify(lambda o: o.run_finished(run, None))

    for n in range(56):
        clock.now = start + timedelta(days=n)
        await partial(195 + (n * 7) % 11)
    clock.now = FRIDAY
    await partial(20)
    report = (await service.health()).as_json()
    await service.aclose()
    volume = [t for t in outbox.texts if t.startswith(":large_orange_circle:")]
    assert len(volume) == 1 and "wrote 20 (expected" in volume[0]
    assert report["checks"]["collect-daily"]["anomaly"] == "low-volume"
    assert report["checks"]["collect-daily"]["skippedShare"] == 0.003
