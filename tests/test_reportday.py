"""The report day rule, on plain dates and zones (no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from cronkeeper import reportday
from cronkeeper.reportday import (
    account_zone,
    check_report_date,
    default_day,
    earliest_day,
    is_backfill,
    last_complete_day,
    local_day,
    lookback,
    parse_report_date,
    run_day,
    slot_day,
    source_day,
)

SEOUL = ZoneInfo("Asia/Seoul")
LA = ZoneInfo("America/Los_Angeles")


def test_last_complete_day_is_yesterday_in_the_zone_not_in_utc() -> None:
    now = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # already the 11th in Seoul
    assert last_complete_day(now, UTC) == date(2026, 3, 9)
    assert last_complete_day(now, SEOUL) == date(2026, 3, 10)
    assert last_complete_day(now, LA) == date(2026, 3, 9)
    assert local_day(now, SEOUL) == date(2026, 3, 11) and local_day(now, UTC) == date(2026, 3, 10)


def test_a_scheduled_fire_collects_the_day_of_its_slot_even_when_it_runs_after_midnight() -> None:
    slot = datetime(2026, 3, 10, 23, 59, tzinfo=UTC)
    assert slot_day(slot, UTC) == date(2026, 3, 9)
    assert default_day(datetime(2026, 3, 11, 0, 1, tzinfo=UTC), UTC) == date(2026, 3, 10)


def test_an_explicit_day_never_reaches_past_the_sources_last_complete_day() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # the 10th is still open in LA
    assert source_day(now, LA, date(2026, 3, 10), explicit=True) == date(2026, 3, 9)
    assert source_day(now, LA, date(2026, 3, 1), explicit=True) == date(2026, 3, 1)
    assert source_day(now, SEOUL, date(2026, 3, 1), explicit=False) == date(2026, 3, 9)


def test_an_account_without_details_counts_days_in_the_configured_zone() -> None:
    assert account_zone(None, SEOUL) is SEOUL
    assert account_zone("America/Los_Angeles", SEOUL) == LA


def test_lookback_covers_its_days_and_at_least_one() -> None:
    assert lookback(date(2026, 3, 10), 3) == (date(2026, 3, 8), date(2026, 3, 10))
    assert lookback(date(2026, 3, 10), 0) == (date(2026, 3, 10), date(2026, 3, 10))


def test_earliest_day_is_before_every_zones_window() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    first = earliest_day(now, 28)
    for zone in (UTC, SEOUL, LA, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")):
        assert first < lookback(last_complete_day(now, zone), 28)[0]


def test_a_run_without_a_report_date_stands_for_the_day_before_it_started() -> None:
    started = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert run_day(None, started, UTC) == date(2026, 3, 9)
    assert run_day(date(2026, 1, 1), started, UTC) == date(2026, 1, 1)
    assert not is_backfill(None, started, UTC)
    assert not is_backfill(date(2026, 3, 9), started, UTC)
    assert is_backfill(date(2026, 3, 8), started, UTC)
    evening = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # already the 11th in Seoul
    assert not is_backfill(date(2026, 3, 10), evening, SEOUL)
    assert is_backfill(date(2026, 3, 10), evening, UTC)


@pytest.mark.parametrize("text", ["1773100800", "2026-03-10T00:00", "20260310", "2026-02-30"])
def test_only_iso_days_parse(text: str) -> None:
    with pytest.raises(ValueError, match="use YYYY-MM-DD"):
        parse_report_date(text)


def test_report_dates_must_be_over_and_after_2000() -> None:
    check_report_date(date(2026, 3, 9), date(2026, 3, 9), "UTC")
    with pytest.raises(ValueError, match="not over yet in UTC"):
        check_report_date(date(2026, 3, 10), date(2026, 3, 9), "UTC")
    with pytest.raises(ValueError, match="before 2000-01-01"):
        check_report_date(date(1999, 12, 31), date(2026, 3, 9), "UTC")
    assert date(2000, 1, 1) == reportday.EARLIEST_REPORT_DATE
