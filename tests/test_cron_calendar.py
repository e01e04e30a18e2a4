"""The crontab calendar (cronsim underneath): cron's own rules, time zones and DST as Debian
cron has them, missed-fire decisions (no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cronkeeper.config import DEFAULT_JOBS
from cronkeeper.scheduler import (
    CronExpression,
    Fire,
    due_fires,
    missed_fire,
    next_fire,
    previous_fire,
)

PARIS = ZoneInfo("Europe/Paris")
SEOUL = ZoneInfo("Asia/Seoul")
HOUR = timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def fires(expr: str, tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """Every fire in ``(start, end]``, in UTC."""
    out = []
    moment = start
    while (fire := next_fire(expr, tz, moment)) is not None and fire <= end:
        out.append(fire.astimezone(UTC))
        moment = fire
    return out


# -- crontab semantics ----------------------------------------------------------------------


def test_weekday_1_is_monday_as_in_crontab() -> None:
    # APScheduler 3's CronTrigger.from_crontab, the scheduler's old base, said Tuesday.
    friday = utc(2026, 11, 20, 12)
    ours = next_fire("0 2 * * 1", UTC, friday)
    assert ours == utc(2026, 11, 23, 2)
    assert ours is not None and ours.strftime("%A") == "Monday"


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "SUN"])
def test_sunday_is_0_or_7_or_its_name(sunday: str) -> None:
    assert next_fire(f"0 0 * * {sunday}", UTC, utc(2026, 11, 20)) == utc(2026, 11, 22)


def test_ranges_steps_lists_and_names() -> None:
    # Thursday 1 January 2026: minutes 0/20/40 of hours 9, 13, 17 on weekdays of Jan and Jul.
    got = fires("*/20 9-17/4 * jan,jul mon-fri", UTC, utc(2025, 12, 31), utc(2026, 1, 2))
    assert [f.strftime("%d %H:%M") for f in got] == [
        f"{day:02d} {hour:02d}:{minute:02d}"
        for day in (1,)
        for hour in (9, 13, 17)
        for minute in (0, 20, 40)
    ]
    assert fires("0 0 * JUL FRI-SAT", UTC, utc(2026, 6, 30), utc(2026, 7, 6)) == [
        utc(2026, 7, 3),
        utc(2026, 7, 4),
    ]
    # cronie reads ``5/15`` as ``5-59/15``.
    got = fires("5/15 * * * *", UTC, utc(2026, 1, 1), utc(2026, 1, 1, 1))
    assert [f.minute for f in got] == [5, 20, 35, 50]


def test_day_of_month_and_day_of_week_both_restricted_means_either() -> None:
    # The 1st of the month OR any Monday (Vixie cron), not "a Monday that is the 1st".
    got = fires("0 0 1 * 1", UTC, utc(2026, 11, 20), utc(2026, 12, 8))
    assert [f.date() for f in got] == [
        date(2026, 11, 23),
        date(2026, 11, 30),
        date(2026, 12, 1),
        date(2026, 12, 7),
    ]


def test_a_starred_day_field_means_both_must_match() -> None:
    got = fires("0 0 * 11 1", UTC, utc(2026, 11, 20), utc(2026, 12, 31))
    assert [f.date() for f in got] == [date(2026, 11, 23), date(2026, 11, 30)]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 1 * *", "expected 5 fields"),
        ("61 * * * *", "minute 61 is outside 0-59"),
        ("0 24 * * *", "hour 24 is outside 0-23"),
        ("0 0 0 * *", "day of month 0 is outside 1-31"),
        ("0 0 * 13 *", "month 13 is outside 1-12"),
        ("0 0 * * 8", "day of week 8 is outside 0-7"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("0 5-1 * * *", "range '5-1' runs backwards"),
        ("0 0 L * *", "day of month 'L' is not a number"),
        ("0 0 * * mon#2", "is not a number"),
        ("0 0 LW * *", "day of month 'LW' is not a number"),
        ("0 0 0 1 * *", "expected 5 fields"),  # cronsim's seconds field: not cron's syntax
        ("0 0 31 2 *", "day-of-month '31' can never match"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression") as info:
        CronExpression.parse(expr)
    assert message in str(info.value)


def test_default_schedules_parse_and_fire_when_the_spec_says() -> None:
    monday = utc(2026, 11, 23, 0, 0)
    got = {
        spec.name: next_fire(spec.schedule, UTC, monday - timedelta(seconds=1))
        for spec in DEFAULT_JOBS
    }
    assert got == {
        "sync-notion": utc(2026, 11, 23, 0, 0),
        "collect-daily": utc(2026, 11, 23, 1, 0),
        "collect-mixpanel": utc(2026, 11, 23, 1, 30),
        "collect-benchmarks": utc(2026, 11, 23, 2, 0),
    }


def test_an_expression_that_never_fires_is_refused_and_a_rare_one_found() -> None:
    with pytest.raises(ValueError, match="can never match"):
        next_fire("0 0 31 2 *", UTC, utc(2026, 1, 1))
    assert previous_fire("0 0 29 2 *", UTC, utc(2026, 11, 20)) == utc(2024, 2, 29)
    assert next_fire("0 0 29 2 *", UTC, utc(2026, 11, 20)) == utc(2028, 2, 29)


# -- previous / next ------------------------------------------------------------------------


def test_previous_fire_is_inclusive_and_next_fire_is_strict() -> None:
    assert previous_fire("0 1 * * *", UTC, utc(2026, 11, 20, 1, 0)) == utc(2026, 11, 20, 1, 0)
    assert previous_fire("0 1 * * *", UTC, utc(2026, 11, 20, 0, 59)) == utc(2026, 11, 19, 1, 0)
    assert next_fire("0 1 * * *", UTC, utc(2026, 11, 20, 1, 0)) == utc(2026, 11, 21, 1, 0)


def test_fires_are_local_times_of_the_configured_zone() -> None:
    # 01:00 in Seoul is 16:00 UTC the day before.
    fire = previous_fire("0 1 * * *", SEOUL, utc(2026, 11, 20, 12, 0))
    assert fire == utc(2026, 11, 19, 16, 0)
    assert fire is not None and (fire.hour, fire.utcoffset()) == (1, timedelta(hours=9))
    assert next_fire("0 1 * * *", SEOUL, utc(2026, 11, 20, 12, 0)) == utc(2026, 11, 20, 16, 0)


def test_a_daily_job_keeps_its_local_time_across_the_october_change_in_paris() -> None:
    # Sunday 25 October 2026, 03:00 CEST → 02:00 CET: the day between the fires has 25 hours.
    got = fires("0 1 * * *", PARIS, utc(2026, 10, 23, 12), utc(2026, 10, 27, 12))
    assert got == [
        utc(2026, 10, 23, 23),
        utc(2026, 10, 24, 23),
        utc(2026, 10, 26, 0),
        utc(2026, 10, 27, 0),
    ]
    assert {f.astimezone(PARIS).hour for f in got} == {1}
    # Half an hour after Monday's local midnight, the latest fire is still Sunday's 01:00 CEST.
    assert previous_fire("0 1 * * *", PARIS, utc(2026, 10, 25, 23, 30)) == utc(2026, 10, 24, 23)


def test_a_fixed_time_in_the_repeated_hour_fires_once() -> None:
    # 02:30 happens twice on 25 October in Paris; cron runs a fixed-time job once.
    got = fires("30 2 * * *", PARIS, utc(2026, 10, 23, 12), utc(2026, 10, 27, 12))
    assert got == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
        utc(2026, 10, 27, 1, 30),
    ]


def test_a_fixed_time_asked_from_inside_the_repeated_hour_is_not_in_the_past() -> None:
    # 02:10 CET, the second pass: 02:30 CEST has already been, 02:30 CET is not a fire.
    # (In UTC: a local time inside a fold never compares equal to another zone's, PEP 495.)
    second_pass = utc(2026, 10, 25, 1, 10)
    assert next_fire("30 2 * * *", PARIS, second_pass) == utc(2026, 10, 26, 1, 30)
    before = previous_fire("30 2 * * *", PARIS, second_pass)
    assert before is not None and before.astimezone(UTC) == utc(2026, 10, 25, 0, 30)
    before = previous_fire("55 2 * * *", PARIS, second_pass)
    assert before is not None and before.astimezone(UTC) == utc(2026, 10, 25, 0, 55)


def test_a_wildcard_job_keeps_its_rhythm_through_the_repeated_hour() -> None:
    got = fires("*/30 * * * *", PARIS, utc(2026, 10, 24, 23, 59), utc(2026, 10, 25, 2, 0))
    assert got == [utc(2026, 10, 25, 0, 0) + i * timedelta(minutes=30) for i in range(5)]
    assert [f.astimezone(PARIS).strftime("%H:%M%z") for f in got] == [
        "02:00+0200",
        "02:30+0200",
        "02:00+0100",
        "02:30+0100",
        "03:00+0100",
    ]


def test_a_time_skipped_in_spring_fires_once_when_the_clock_jumps() -> None:
    # Sunday 29 March 2026, 02:00 CET → 03:00 CEST: 02:30 does not exist that day. Debian
    # cron (and cronsim) run it at once, at 03:00 CEST.
    got = fires("30 2 * * *", PARIS, utc(2026, 3, 28), utc(2026, 3, 30, 12))
    assert got == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert got[1].astimezone(PARIS).strftime("%H:%M%z") == "03:00+0200"
    assert previous_fire("30 2 * * *", PARIS, utc(2026, 3, 29, 1, 5)) == utc(2026, 3, 29, 1)
    hourly = fires("0 * * * *", PARIS, utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 3, 0))
    assert hourly == sorted(set(hourly))  # no instant twice
    assert hourly == [utc(2026, 3, 29, h) for h in range(0, 4)]


def test_two_times_in_the_skipped_hour_fire_once_at_the_jump_and_the_next_on_time() -> None:
    """The issue's case: ``15 2,3`` where 02:00 springs to 03:00 fires at 03:00 and 03:15."""
    for zone, day in ((PARIS, 29), (ZoneInfo("America/New_York"), 8)):
        start = datetime(2026, 3, day - 1, 12, tzinfo=zone)
        got = fires("15 2,3 * * *", zone, start, start + timedelta(days=2))
        assert [f.astimezone(zone).strftime("%d %H:%M") for f in got] == [
            f"{day:02d} 03:00",
            f"{day:02d} 03:15",
            f"{day + 1:02d} 02:15",
            f"{day + 1:02d} 03:15",
        ]
    # Two skipped times give one fire at the jump, not two.
    got = fires("15,45 2 * * *", PARIS, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert got == [utc(2026, 3, 29, 1)]


ZONES = st.sampled_from(
    ["UTC", "Europe/Paris", "Asia/Seoul", "America/New_York", "Australia/Lord_Howe"]
)
EXPRESSIONS = st.sampled_from(
    [
        "0 1 * * *",
        "30 2 * * *",
        "*/30 * * * *",
        "0 2 * * 1",
        "15 */3 1,15 * *",
        "0 0 1 * 1",
        "45 23 * * 0",
        "0 3 29 2 *",
        "15 2,3 * * *",
        "0 0 * * 7",
    ]
)
MOMENTS = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(expr=EXPRESSIONS, zone=ZONES, moment=MOMENTS)
def test_previous_and_next_bracket_every_moment(expr: str, zone: str, moment: datetime) -> None:
    tz = ZoneInfo(zone)
    before = previous_fire(expr, tz, moment)
    after = next_fire(expr, tz, moment)
    assert before is not None and after is not None
    assert before <= moment < after
    assert next_fire(expr, tz, before) == after
    # Nothing fires strictly between them, and each is a fire of the expression.
    assert previous_fire(expr, tz, after - timedelta(microseconds=1)) == before
    assert previous_fire(expr, tz, after) == after


# -- decisions ------------------------------------------------------------------------------


def test_missed_fire_runs_the_latest_slot_once_even_after_three_missed() -> None:
    now = utc(2026, 11, 20, 11, 10)
    last_started = utc(2026, 11, 20, 8, 0)  # slots 09:00, 10:00 and 11:00 were missed
    assert missed_fire("0 * * * *", UTC, last_started, now, HOUR) == utc(2026, 11, 20, 11, 0)


def test_missed_fire_not_when_outside_the_grace() -> None:
    now = utc(2026, 11, 20, 2, 30)
    assert missed_fire("0 1 * * *", UTC, utc(2026, 11, 19, 1), now, HOUR) is None
    assert missed_fire("0 1 * * *", UTC, None, now, timedelta(hours=2)) == utc(2026, 11, 20, 1)


def test_missed_fire_not_when_a_run_started_after_the_slot() -> None:
    now = utc(2026, 11, 20, 1, 30)
    assert missed_fire("0 1 * * *", UTC, utc(2026, 11, 20, 1, 0), now, HOUR) is None
    assert missed_fire("0 1 * * *", UTC, utc(2026, 11, 20, 1, 5), now, HOUR) is None
    assert missed_fire("0 1 * * *", UTC, utc(2026, 11, 20, 0, 59), now, HOUR) == utc(
        2026, 11, 20, 1
    )


def test_missed_fire_for_a_job_that_never_ran() -> None:
    now = utc(2026, 11, 20, 1, 20)
    assert missed_fire("0 1 * * *", UTC, None, now, HOUR) == utc(2026, 11, 20, 1)


def test_missed_fire_honours_the_zone() -> None:
    # 01:00 KST = 16:00 UTC: at 16:30 UTC the Seoul slot is 30 min old, the UTC one 15.5 h.
    now = utc(2026, 11, 19, 16, 30)
    assert missed_fire("0 1 * * *", SEOUL, None, now, HOUR) == utc(2026, 11, 19, 16)
    assert missed_fire("0 1 * * *", UTC, None, now, HOUR) is None


def test_due_fires_coalesce_to_the_latest_slot_and_come_in_slot_order() -> None:
    since, now = utc(2026, 11, 20, 12), utc(2026, 11, 23, 2, 0)  # Friday noon → Monday 02:00
    assert due_fires(DEFAULT_JOBS, UTC, since, now) == [
        Fire("sync-notion", utc(2026, 11, 23, 0)),
        Fire("collect-daily", utc(2026, 11, 23, 1)),
        Fire("collect-mixpanel", utc(2026, 11, 23, 1, 30)),
        Fire("collect-benchmarks", utc(2026, 11, 23, 2)),
    ]
    assert due_fires(DEFAULT_JOBS, UTC, now, now + timedelta(minutes=59)) == []
