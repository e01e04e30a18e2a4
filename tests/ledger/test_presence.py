"""Scheduler presence (issue 22): heartbeats in the database, the one rule for "alive", what
health says, and one alert when every scheduler falls silent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.alerting.watchdog import Watchdog
from cronkeeper.api.app import create_app
from cronkeeper.ledger.presence import Heartbeat, Heartbeats, presence
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
AUTH = {"Authorization": f"Bearer {SECRET}"}


def beat(at: datetime, *, id: str = "a", stopped: datetime | None = None) -> Heartbeat:
    return Heartbeat(id, "host-a", 42, T0, at, stopped)


def test_alive_within_three_watch_intervals_silent_after() -> None:
    assert presence([], T0, MINUTE).alive is False
    assert presence([], T0, MINUTE).silent is False, "never a scheduler: nothing to warn of"
    fresh = presence([beat(T0)], T0 + 3 * MINUTE, MINUTE)
    assert fresh.alive and not fresh.silent and fresh.age_seconds == 180
    late = presence([beat(T0)], T0 + 3 * MINUTE + timedelta(seconds=1), MINUTE)
    assert not late.alive and late.silent
    assert late.warning() is not None and "host-a (pid 42) silent since" in late.warning()


def test_a_stopped_scheduler_is_not_alive_and_does_not_hide_a_live_one() -> None:
    stopped = beat(T0, id="old", stopped=T0 + timedelta(seconds=5))
    now = T0 + timedelta(seconds=10)
    assert presence([stopped], now, MINUTE).alive is False
    assert presence([stopped], now, MINUTE).silent is False, "a restart gets its intervals"
    live = beat(T0 - timedelta(seconds=20), id="live")
    assert presence([stopped, live], now, MINUTE).last == live
    assert presence([stopped, live], now, MINUTE).alive


async def test_beats_are_recorded_moved_and_stopped(engine: AsyncEngine) -> None:
    beats = Heartbeats(engine)
    assert await beats.newest() == []
    await beats.beat(beat(T0))
    await beats.beat(beat(T0 + MINUTE))
    [row] = await beats.newest()
    assert (row.host, row.pid, row.started_at, row.last_beat_at) == (
        "host-a",
        42,
        T0,
        T0 + MINUTE,
    )
    await beats.stop("a", T0 + 2 * MINUTE)
    assert (await beats.read(T0 + 2 * MINUTE, MINUTE)).last.stopped_at == T0 + 2 * MINUTE  # type: ignore[union-attr]
    # A scheduler gone for a week is forgotten by the next beat of any other.
    await beats.beat(beat(T0 + timedelta(days=8), id="b"))
    assert [b.id for b in await beats.newest()] == ["b"]


async def test_a_scheduler_beats_on_its_loop_and_says_stopped_at_shutdown(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(T0)
    service = Service.from_settings(make_settings(database_url), clock=clock, engine=engine)
    sched = CronScheduler(service, jobs=[])
    await sched._beat(clock())  # the periodic turn the loop runs first, at once
    seen = await service.heartbeats.read(clock(), MINUTE)
    assert seen.alive and seen.last is not None and seen.last.id == sched.heartbeat.id
    await sched.start()
    clock.advance(minutes=1)
    await sched.shutdown()
    after = await service.heartbeats.read(clock(), MINUTE)
    assert not after.alive and after.last is not None and after.last.stopped_at == clock()


async def test_health_shows_the_scheduler_and_warns_once_it_is_silent(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(T0)
    service = Service.from_settings(make_settings(database_url), clock=clock, engine=engine)
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        none = (await api.get("/api/cron/health", headers=AUTH)).json()
        assert none["scheduler"]["alive"] is False and none["scheduler"]["host"] is None
        assert not any("scheduler" in w for w in none["warnings"])
        await service.heartbeats.beat(beat(T0))
        alive = (await api.get("/api/cron/health", headers=AUTH)).json()
        assert alive["scheduler"]["alive"] is True and alive["scheduler"]["pid"] == 42
        clock.advance(minutes=4)  # CRONKEEPER_WATCH_INTERVAL 60 s: silent after 3 minutes
        silent = (await api.get("/api/cron/health", headers=AUTH)).json()
        assert silent["scheduler"]["alive"] is False
        assert any("silent since" in w for w in silent["warnings"])


class Outbox:
    destination = "outbox"
    url = "https://outbox.example.test/hook"
    budget = 1.0

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def send(
        self, text: str, *, about: str = "cronkeeper", key: str | None = None, title: str = ""
    ) -> bool:
        self.texts.append(text)
        return True


async def test_a_silent_scheduler_alerts_once_and_its_return_once(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(T0)
    settings = make_settings(database_url, monitored_jobs=())
    service = Service.from_settings(settings, clock=clock, engine=engine)
    outbox = Outbox()
    watchdog = Watchdog(service, alerters=[outbox])
    await watchdog.check()
    assert outbox.texts == [], "no scheduler ever: system cron, nothing to say"
    await service.heartbeats.beat(beat(T0))
    clock.advance(minutes=2)
    await watchdog.check()
    assert outbox.texts == []
    clock.advance(minutes=2)
    await watchdog.check()
    await watchdog.check()
    assert len(outbox.texts) == 1 and "silent since" in outbox.texts[0]
    await service.heartbeats.beat(beat(clock(), id="b"))
    await watchdog.check()
    assert len(outbox.texts) == 2 and "alive again" in outbox.texts[1]
