"""Missing means "no run since the last expected fire, plus the grace" (issue 17, point 4).

A daily job's window used to be exactly 24 h: the day after an autumn change is 25 h long, so
health said ``missing`` for an hour before every on-time run (and for a few seconds of start
jitter on any day). The fires come from the job's cron expression through cronsim, the
calendar the scheduler fires by, with Debian cron's DST rules (a time skipped in spring fires
at the first minute after it; a repeated one fires once).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from cronkeeper.config import JobSpec
from cronkeeper.cron import CronExpression
from cronkeeper.health import CheckResult, HealthRules, evaluate_health, watch_facts
from cronkeeper.records import JobState, RunRow

JITTER = timedelta(seconds=7)
TOOK = timedelta(minutes=2)
STEP = timedelta(minutes=10)

# 2026's changes (tz database): New York 8 March and 1 November; Berlin 29 March and 25 October.
CHANGES = [
    ("America/New_York", date(2026, 3, 8)),
    ("America/New_York", date(2026, 11, 1)),
    ("Europe/Berlin", date(2026, 3, 29)),
    ("Europe/Berlin", date(2026, 10, 25)),
]
SCHEDULES = ["0 1 * * *", "30 2 * * *", "0 3 * * *"]  # before, inside and after the change


def spec(schedule: str, grace: timedelta = timedelta(hours=1)) -> JobSpec:
    return JobSpec(
        "collect-daily", schedule, timedelta(days=1), timedelta(hours=1), True, grace=grace
    )


def fires(schedule: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The job's fires in [start, end), as the scheduler's calendar gives them."""
    out, cron = [], CronExpression.parse(schedule)
    moment = start
    while (fire := cron.next_after(moment, zone)) is not None and fire < end:
        out.append(fire.astimezone(UTC))
        moment = fire
    return out


def runs_at(starts: list[datetime]) -> list[RunRow]:
    return [
        RunRow(f"r{i}", "collect-daily", s, s + TOOK, "success", 100, None)
        for i, s in enumerate(starts)
    ]


def latest_at(runs: list[RunRow], now: datetime) -> RunRow | None:
    """The latest run as the ledger would show it at ``now`` (``running`` until it ends)."""
    started = [r for r in runs if r.started_at <= now]
    if not started:
        return None
    run = started[-1]
    if now < run.started_at + TOOK:
        return RunRow(run.id, run.cron_name, run.started_at, None, "running", 0, None)
    return run


def walk(
    job: JobSpec, zone: ZoneInfo, runs: list[RunRow], start: datetime, end: datetime
) -> Iterator[tuple[datetime, CheckResult]]:
    rules = HealthRules(tz=zone)
    now = start
    while now < end:
        latest = latest_at(runs, now)
        [check] = evaluate_health([job], {job.name: latest}, now, rules=rules).checks
        yield now, check
        now += STEP


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(("zone_name", "day"), CHANGES, ids=[f"{z}-{d}" for z, d in CHANGES])
def test_a_daily_job_on_time_is_never_missing_across_a_dst_change(
    zone_name: str, day: date, schedule: str
) -> None:
    zone = ZoneInfo(zone_name)
    start = datetime.combine(day - timedelta(days=3), datetime.min.time(), zone)
    end = datetime.combine(day + timedelta(days=4), datetime.min.time(), zone)
    on_time = fires(schedule, zone, start, end)
    assert len(on_time) == 7, "one fire a day, the day of the change included"
    runs = runs_at([f + JITTER for f in on_time])
    job = spec(schedule)
    seen = [(now, check) for now, check in walk(job, zone, runs, on_time[0] + TOOK, end)]
    assert seen
    assert [(now, check.reason) for now, check in seen if not check.ok] == []
    # the 25-hour (autumn) or 23-hour (spring) day is inside the walk
    gaps = {b - a for a, b in pairwise(on_time)}
    assert gaps - {timedelta(days=1)}, f"no DST change between the fires: {gaps}"


@pytest.mark.parametrize(("zone_name", "day"), CHANGES, ids=[f"{z}-{d}" for z, d in CHANGES])
def test_a_skipped_fire_is_missing_once_the_grace_has_passed(zone_name: str, day: date) -> None:
    zone = ZoneInfo(zone_name)
    schedule = "30 2 * * *"
    start = datetime.combine(day - timedelta(days=2), datetime.min.time(), zone)
    end = datetime.combine(day + timedelta(days=3), datetime.min.time(), zone)
    on_time = fires(schedule, zone, start, end)
    skipped = next(f for f in on_time if f.astimezone(zone).date() == day)  # the change's day
    runs = runs_at([f + JITTER for f in on_time if f != skipped])
    rules = HealthRules(tz=zone)
    job = spec(schedule)
    last = latest_at(runs, skipped)
    before = evaluate_health([job], {job.name: last}, skipped + timedelta(hours=1), rules=rules)
    after = evaluate_health(
        [job], {job.name: last}, skipped + timedelta(hours=1, seconds=1), rules=rules
    )
    assert (before.missing, before.checks[0].ok) == ((), True)
    assert (after.missing, after.checks[0].reason) == (("collect-daily",), "missing")
    # and the watchdog sees the same absence
    assert watch_facts(job, last, None, skipped + timedelta(hours=2), rules).missing
    # until the next fire's run
    nxt = on_time[on_time.index(skipped) + 1]
    back = latest_at(runs, nxt + TOOK)
    assert evaluate_health([job], {job.name: back}, nxt + TOOK, rules=rules).missing == ()


def test_the_grace_is_configurable_per_job() -> None:
    from tests.conftest import make_settings

    settings = make_settings("sqlite:///x.db", grace="collect-daily=3h")
    assert settings.job("collect-daily").grace == timedelta(hours=3)
    assert settings.job("collect-mixpanel").grace == timedelta(hours=1)
    assert make_settings("sqlite:///x.db", grace="10m").job("sync-notion").grace == timedelta(
        minutes=10
    )
    with pytest.raises(ValueError, match="CRONKEEPER_GRACE"):
        make_settings("sqlite:///x.db", grace="soon")
    with pytest.raises(ValueError, match="CRONKEEPER_GRACE"):
        make_settings("sqlite:///x.db", grace="collect-nightly=1h")


def test_a_resumed_job_is_not_missing_before_its_next_fire_and_grace() -> None:
    zone = ZoneInfo("UTC")
    job = spec("0 1 * * *")
    old = runs_at([datetime(2026, 11, 20, 1, 0, tzinfo=UTC)])[0]
    resumed = JobState("collect-daily", resumed_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    rules = HealthRules(tz=zone)
    assert not watch_facts(
        job, old, resumed, datetime(2026, 11, 26, 2, 0, tzinfo=UTC), rules
    ).missing
    assert watch_facts(job, old, resumed, datetime(2026, 11, 26, 2, 1, tzinfo=UTC), rules).missing
