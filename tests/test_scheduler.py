"""The scheduler on SQLite and PostgreSQL: its loop driven by a fake clock and a sleep that only
moves it (the production path, no real waiting), catch-up, time zones and DST, failures that
never stop it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.scheduler import CronScheduler, Fire, RunJob, RunOutcome
from cronkeeper.service import Service
from cronkeeper.storage.schema import cron_runs
from tests.conftest import FakeClock, make_settings
from tests.support.fakes import FakeRun, insert_run


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def make_service(
    database_url: str, engine: AsyncEngine, clock: FakeClock, **settings: Any
) -> Service:
    return Service.from_settings(
        make_settings(database_url, **settings), clock=clock, engine=engine
    )


def scheduler(
    service: Service, run: FakeRun, *only: str, grace: timedelta = timedelta(hours=1)
) -> CronScheduler:
    jobs = [s for s in service.settings.jobs if not only or s.name in only]
    return CronScheduler(service, run=run, misfire_grace=grace, jobs=jobs)


async def drive(sched: CronScheduler, clock: FakeClock, until: datetime) -> list[float]:
    """Run the scheduler's own loop until the fake clock reaches ``until``; returns the sleeps.

    Its sleep lets whatever the scheduler started finish (as it would in the time slept),
    then moves the clock: the loop, its waits and its fires are production's, time is not.
    """
    slept: list[float] = []
    reached = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await sched.idle()
        if clock.now >= until:
            reached.set()
            await asyncio.Event().wait()  # until shutdown cancels the loop
        slept.append(seconds)
        clock.advance(seconds=seconds)

    sched.sleep = sleep
    await sched.start()
    try:
        await asyncio.wait_for(reached.wait(), 60)
    finally:
        await sched.shutdown(wait=True)
    return slept


def timed(clock: FakeClock, run: FakeRun) -> tuple[RunJob, list[tuple[str, datetime]]]:
    """``run`` that also notes the clock at each call."""
    at: list[tuple[str, datetime]] = []

    async def go(
        service: Service, name: str, day: date, *, slot: datetime | None = None
    ) -> RunOutcome:
        at.append((name, clock.now))
        return await run(service, name, day, slot=slot)

    return go, at


async def test_tick_fires_each_job_on_its_cron_expression(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 19, 23, 59))  # Thursday
    service = make_service(database_url, engine, clock)
    run = FakeRun()
    sched = scheduler(service, run)

    fired: list[tuple[str, list[str]]] = []
    for minute in range(0, 3 * 60, 15):  # Friday 00:00 … 02:45, every quarter of an hour
        clock.now = utc(2026, 11, 20) + timedelta(minutes=minute)
        names = [f.name for f in await sched.tick()]
        if names:
            fired.append((clock.now.strftime("%H:%M"), names))
    assert fired == [
        ("00:00", ["sync-notion"]),
        ("01:00", ["collect-daily"]),
        ("01:30", ["collect-mixpanel"]),
    ]  # collect-benchmarks is weekly: Monday 02:00
    assert run.calls == [
        ("sync-notion", date(2026, 11, 19)),
        ("collect-daily", date(2026, 11, 19)),
        ("collect-mixpanel", date(2026, 11, 19)),
    ]

    # Nobody ticked over the weekend: Monday 02:00 runs each job once, for Sunday.
    run.calls.clear()
    clock.now = utc(2026, 11, 23, 2, 0)
    assert [f.name for f in await sched.tick()] == [
        "sync-notion",
        "collect-daily",
        "collect-mixpanel",
        "collect-benchmarks",
    ]
    assert sorted(run.calls) == sorted(
        (name, date(2026, 11, 22))
        for name in ("sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks")
    )


async def test_tick_honours_the_configured_time_zone(
    database_url: str, engine: AsyncEngine
) -> None:
    # 01:00 in Seoul is 16:00 UTC the day before; the report date is yesterday *in Seoul*.
    clock = FakeClock(utc(2026, 11, 19, 15, 30))
    service = make_service(database_url, engine, clock, timezone="Asia/Seoul")
    run = FakeRun()
    sched = scheduler(service, run, "collect-daily")

    assert await sched.tick(utc(2026, 11, 19, 15, 59)) == []
    assert await sched.tick(utc(2026, 11, 19, 16, 0)) == [
        Fire("collect-daily", utc(2026, 11, 19, 16, 0))
    ]
    assert run.calls == [("collect-daily", date(2026, 11, 19))]


async def test_tick_in_paris_around_the_october_change_fires_once_a_day(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 10, 23, 12))
    service = make_service(
        database_url,
        engine,
        clock,
        timezone="Europe/Paris",
        schedules="collect-daily=30 2 * * *",
    )
    run = FakeRun()
    sched = scheduler(service, run, "collect-daily")
    fired = []
    moment = clock.now
    while moment < utc(2026, 10, 27, 12):  # every 10 minutes through the repeated hour
        moment += timedelta(minutes=10)
        clock.now = moment
        fired += [f.slot.astimezone(UTC) for f in await sched.tick()]
    assert fired == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first of the two 02:30s that night
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
        utc(2026, 10, 27, 1, 30),
    ]
    assert run.days() == [date(2026, 10, d) for d in (23, 24, 25, 26)]


async def test_catch_up_runs_a_missed_fire_once_even_when_three_slots_were_missed(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 11, 10))
    service = make_service(database_url, engine, clock, schedules="collect-daily=0 * * * *")
    await insert_run(engine, "collect-daily", utc(2026, 11, 20, 8), report_date=date(2026, 11, 19))
    run = FakeRun()
    sched = scheduler(service, run, "collect-daily")
    # Down from 08:30 to 11:10: the 09:00, 10:00 and 11:00 slots were missed.
    assert await sched.catch_up() == [Fire("collect-daily", utc(2026, 11, 20, 11))]
    assert run.calls == [("collect-daily", date(2026, 11, 19))]
    # Started again a minute later: the slot is served now.
    clock.advance(minutes=1)
    assert await sched.catch_up() == []
    assert len(run.calls) == 1


async def test_catch_up_does_not_run_a_fire_older_than_the_grace(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 2, 30))  # 01:00 slot is 90 min old
    service = make_service(database_url, engine, clock)
    run = FakeRun()
    assert await scheduler(service, run, "collect-daily").catch_up() == []
    assert await scheduler(service, run, "collect-daily", grace=timedelta(hours=2)).catch_up() == [
        Fire("collect-daily", utc(2026, 11, 20, 1))
    ]
    assert run.calls == [("collect-daily", date(2026, 11, 19))]


async def test_catch_up_does_not_run_when_a_run_already_happened_after_the_slot(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 1, 30))
    service = make_service(database_url, engine, clock)
    await insert_run(
        engine, "collect-daily", utc(2026, 11, 20, 1, 0, 2), report_date=date(2026, 11, 19)
    )
    run = FakeRun()
    assert await scheduler(service, run, "collect-daily").catch_up() == []
    assert run.calls == []


async def test_catch_up_runs_when_the_run_after_the_slot_was_for_another_date(
    database_url: str, engine: AsyncEngine
) -> None:
    # A manual `cronkeeper run --date 2026-10-01` at 01:05 does not collect yesterday.
    clock = FakeClock(utc(2026, 11, 20, 1, 30))
    service = make_service(database_url, engine, clock)
    await insert_run(
        engine, "collect-daily", utc(2026, 11, 20, 1, 5), report_date=date(2026, 10, 1)
    )
    run = FakeRun()
    assert await scheduler(service, run, "collect-daily").catch_up() == [
        Fire("collect-daily", utc(2026, 11, 20, 1))
    ]


async def test_catch_up_runs_missed_jobs_one_after_another_oldest_slot_first(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 23, 2, 10))  # Monday; every job's slot < 1h… but notion's
    service = make_service(database_url, engine, clock)
    run = FakeRun()
    missed = await scheduler(service, run, grace=timedelta(hours=3)).catch_up()
    assert [f.name for f in missed] == [
        "sync-notion",
        "collect-daily",
        "collect-mixpanel",
        "collect-benchmarks",
    ]
    assert run.names() == [f.name for f in missed]
    assert set(run.days()) == {date(2026, 11, 22)}


async def test_start_catches_up_in_the_background_and_knows_the_next_runs(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 1, 20))  # the 01:00 slot is 20 minutes old
    service = make_service(database_url, engine, clock)
    run = FakeRun()
    sched = scheduler(service, run, "collect-daily")
    await sched.start()
    try:
        await asyncio.wait_for(run.called.wait(), 10)
        assert sched.running
        assert sched.next_run_times() == {"collect-daily": utc(2026, 11, 21, 1)}
    finally:
        await sched.shutdown(wait=True)
    assert run.calls == [("collect-daily", date(2026, 11, 19))]
    assert not sched.running


async def test_already_running_elsewhere_is_swallowed_and_logged(
    database_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 0, 59))
    service = make_service(database_url, engine, clock)
    run = FakeRun(busy={"collect-daily"})
    sched = scheduler(service, run, "collect-daily")
    with caplog.at_level(logging.INFO, logger="cronkeeper.scheduler"):
        assert await sched.tick(utc(2026, 11, 20, 1)) == [
            Fire("collect-daily", utc(2026, 11, 20, 1))
        ]
    assert run.calls == [("collect-daily", date(2026, 11, 19))]
    assert "collect-daily is already running elsewhere" in caplog.text
    assert await sched.fire("collect-daily") is None


async def test_a_failing_job_never_stops_the_scheduler_or_the_other_jobs(
    database_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(utc(2026, 11, 23, 1, 59))
    service = make_service(database_url, engine, clock, schedules="collect-daily=0 2 * * *")
    run = FakeRun(crash={date(2026, 11, 22)})
    sched = scheduler(service, run, "collect-daily", "collect-benchmarks")
    with caplog.at_level(logging.ERROR, logger="cronkeeper.scheduler"):
        fired = await sched.tick(utc(2026, 11, 23, 2))
    assert {f.name for f in fired} == {"collect-daily", "collect-benchmarks"}
    assert sorted(run.names()) == ["collect-benchmarks", "collect-daily"]
    assert "scheduled run of collect-daily for 2026-11-22 failed: RuntimeError" in caplog.text
    # Next day, everything runs again.
    run.crash.clear()
    assert [f.name for f in await sched.tick(utc(2026, 11, 24, 2))] == ["collect-daily"]


async def test_a_slot_served_by_another_replica_is_not_run_again(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 1, 0, 3))
    service = make_service(database_url, engine, clock)
    await insert_run(
        engine, "collect-daily", utc(2026, 11, 20, 1, 0, 1), report_date=date(2026, 11, 19)
    )
    run = FakeRun()
    assert await scheduler(service, run, "collect-daily").fire("collect-daily") is None
    assert run.calls == []


async def test_shutdown_cancels_a_running_job_and_its_run_is_recorded(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 1, 0))
    service = make_service(database_url, engine, clock)
    run = FakeRun(block=asyncio.Event())
    sched = scheduler(service, run, "collect-daily")
    task = asyncio.create_task(sched.fire("collect-daily"))
    await asyncio.wait_for(run.inside.wait(), 10)
    await sched.shutdown()
    assert task.cancelled()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(cron_runs.c.status, cron_runs.c.error_message))).all()
    assert len(rows) == 1
    assert rows[0].status == "error"
    assert "cancelled" in rows[0].error_message


def test_an_invalid_schedule_fails_at_start_up_naming_it(database_url: str) -> None:
    # The settings refuse it, so every command stops at start, not only the scheduler.
    with pytest.raises(ValidationError, match=r"(?s)schedules.*'61 \* \* \* \*'.*minute"):
        make_settings(database_url, schedules="collect-daily=61 * * * *")


async def test_next_runs_are_in_the_configured_zone(database_url: str, engine: AsyncEngine) -> None:
    clock = FakeClock(utc(2026, 11, 20, 12))  # Friday
    service = make_service(database_url, engine, clock, timezone="Asia/Seoul")
    runs = CronScheduler(service, run=FakeRun()).next_run_times()
    assert set(runs) == {"sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks"}
    daily = runs["collect-daily"]
    assert daily is not None
    assert (daily.hour, daily.minute, daily.utcoffset()) == (1, 0, timedelta(hours=9))
    assert daily == utc(2026, 11, 20, 16)
    weekly = runs["collect-benchmarks"]
    assert weekly is not None
    assert (weekly.isoweekday(), weekly.hour) == (1, 2)  # Monday 02:00 KST
    assert weekly == utc(2026, 11, 22, 17)


async def test_a_fire_off_schedule_collects_the_date_of_the_latest_slot(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 0, 30))  # before today's 01:00 slot
    service = make_service(database_url, engine, clock)
    run = FakeRun()
    await scheduler(service, run, "collect-daily").fire("collect-daily")
    assert run.calls == [("collect-daily", date(2026, 11, 18))]  # the slot of 19 Nov 01:00


async def test_the_loop_fires_each_job_at_its_slot_with_a_fake_clock(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 22, 23, 30))  # Sunday evening
    service = make_service(database_url, engine, clock)
    run, at = timed(clock, FakeRun())
    sched = CronScheduler(service, run=run)
    slept = await drive(sched, clock, until=utc(2026, 11, 23, 3))
    assert at == [
        ("sync-notion", utc(2026, 11, 23, 0)),
        ("collect-daily", utc(2026, 11, 23, 1)),
        ("collect-mixpanel", utc(2026, 11, 23, 1, 30)),
        ("collect-benchmarks", utc(2026, 11, 23, 2)),  # Monday
    ]
    assert max(slept) <= 60, "the loop looks at the wall clock at least once a minute"


async def test_the_loop_around_a_spring_forward_fires_at_the_jump_and_then_on_time(
    database_url: str, engine: AsyncEngine
) -> None:
    """Paris jumps from 02:00 to 03:00 on 29 March 2026: ``15 2,3`` fires at 03:00 and 03:15
    (02:15 does not exist; Debian cron runs it when the clock jumps), then 02:15 and 03:15."""
    clock = FakeClock(utc(2026, 3, 28, 22))
    service = make_service(
        database_url,
        engine,
        clock,
        timezone="Europe/Paris",
        schedules="collect-daily=15 2,3 * * *",
    )
    run = FakeRun()
    go, at = timed(clock, run)
    sched = CronScheduler(service, run=go, jobs=[service.settings.job("collect-daily")])
    await drive(sched, clock, until=utc(2026, 3, 30, 3))
    paris = ZoneInfo("Europe/Paris")
    assert [when.astimezone(paris).strftime("%d %H:%M%z") for _, when in at] == [
        "29 03:00+0200",
        "29 03:15+0200",
        "30 02:15+0200",
        "30 03:15+0200",
    ]
    assert run.days() == [
        date(2026, 3, 28),
        date(2026, 3, 28),
        date(2026, 3, 29),
        date(2026, 3, 29),
    ]


async def test_the_loop_around_a_fall_back_fires_a_fixed_time_once(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 10, 24, 22))
    service = make_service(
        database_url, engine, clock, timezone="Europe/Paris", schedules="collect-daily=30 2 * * *"
    )
    go, at = timed(clock, FakeRun())
    sched = CronScheduler(service, run=go, jobs=[service.settings.job("collect-daily")])
    await drive(sched, clock, until=utc(2026, 10, 26, 3))
    assert [when for _, when in at] == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


async def test_a_long_run_does_not_hold_up_the_next_job(
    database_url: str, engine: AsyncEngine
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 1, 0, 30))  # collect-daily's slot: 30 s ago
    service = make_service(database_url, engine, clock)
    run = FakeRun(block=asyncio.Event())  # every run blocks once inside: daily never ends
    finished = asyncio.Event()

    async def go(
        service: Service, name: str, day: date, *, slot: datetime | None = None
    ) -> RunOutcome:
        if name == "collect-mixpanel":
            run.block = None
        result = await run(service, name, day, slot=slot)
        finished.set()
        return result

    jobs = [service.settings.job("collect-daily"), service.settings.job("collect-mixpanel")]
    # heartbeat off: this test counts the loop's sleeps, and the heartbeat wakes it too
    sched = CronScheduler(service, run=go, jobs=jobs, max_sleep=3600, heartbeat=False)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 1:
            await asyncio.Event().wait()  # the test ends here
        await run.inside.wait()  # collect-daily (caught up) is running and stays so
        clock.advance(seconds=seconds)

    sched.sleep = sleep
    await sched.start()
    try:
        await asyncio.wait_for(finished.wait(), 10)
        assert run.names() == ["collect-daily", "collect-mixpanel"]
        assert slept[0] == 29.5 * 60  # one sleep to 01:30, not a wait for collect-daily
    finally:
        await sched.shutdown()


async def test_periodic_work_rides_the_loop_and_survives_its_failures(
    database_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(utc(2026, 11, 20, 12))
    service = make_service(database_url, engine, clock)
    sched = CronScheduler(service, run=FakeRun())
    seen: list[datetime] = []

    async def watch(now: datetime) -> None:
        seen.append(now)
        if len(seen) == 2:
            raise RuntimeError("watchdog hiccup")

    sched.every(timedelta(minutes=1), "watchdog", watch)
    with caplog.at_level(logging.ERROR, logger="cronkeeper.scheduler"):
        await drive(sched, clock, until=utc(2026, 11, 20, 12, 3))
    assert seen == [utc(2026, 11, 20, 12, m) for m in range(4)]
    assert "watchdog failed: RuntimeError: watchdog hiccup" in caplog.text
    with pytest.raises(ValueError, match="positive"):
        sched.every(timedelta(0), "never", watch)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_catch_up_with_the_real_runner_records_the_report_date(
    database_url: str, engine: AsyncEngine
) -> None:
    """The default ``run`` is ``run_job``: the weekly job needs no API, so it runs for real."""
    clock = FakeClock(utc(2026, 11, 23, 2, 5))
    service = make_service(database_url, engine, clock)
    sched = CronScheduler(service, jobs=[service.settings.job("collect-benchmarks")])
    assert await sched.catch_up() == [Fire("collect-benchmarks", utc(2026, 11, 23, 2))]
    rows = await service.ledger.recent_runs(cron_name="collect-benchmarks")
    assert [(r.status, r.report_date) for r in rows] == [("success", date(2026, 11, 22))]


async def test_run_forever_starts_and_stops_cleanly_on_its_stop_event(
    database_url: str, engine: AsyncEngine
) -> None:
    service = Service.from_settings(make_settings(database_url), engine=engine)
    sched = CronScheduler(service, run=FakeRun())
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run_forever(stop=stop))
    await asyncio.sleep(0)  # one turn: run_forever starts, then waits for the event
    assert sched.running
    assert set(sched.next_run_times()) == {s.name for s in service.settings.jobs}
    stop.set()
    await asyncio.wait_for(task, 10)
    assert not sched.running
