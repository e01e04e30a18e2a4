"""The report day: which day a run collects, counted in which zone.

One rule, asked by the runner, the scheduler, backfill, coverage, volume and the jobs:

- a day is *complete* in a zone once it has ended there; the last complete day is yesterday
  in that zone (:func:`last_complete_day`);
- a run without a date collects the configured zone's last complete day
  (``CRONKEEPER_TIMEZONE``, :func:`default_day`); a scheduled run takes it from its *slot*,
  not from the moment it started, so a fire delayed past midnight still collects the day it
  was scheduled for (:func:`slot_day`);
- a source counts days in its own zone (Meta: the ad account's ``timezone_name``; Mixpanel:
  the project's zone), and never collects a day that has not ended there
  (:func:`source_day`), over a restatement window that ends on that day (:func:`lookback`);
- a recorded run stands for its ``report_date``; a run recorded without one stood for the
  default day of when it started (:func:`run_day`), and a run whose date is not that default
  is a backfill or a re-run (:func:`is_backfill`).

Pure functions over dates, datetimes and zones: the clock is the caller's.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

__all__ = [
    "EARLIEST_REPORT_DATE",
    "EARLIEST_ZONE",
    "account_zone",
    "check_report_date",
    "default_day",
    "earliest_day",
    "is_backfill",
    "last_complete_day",
    "local_day",
    "lookback",
    "parse_report_date",
    "run_day",
    "slot_day",
    "source_day",
]

EARLIEST_REPORT_DATE = date(2000, 1, 1)
"""No report date before this one: the sources have nothing, and it is a typo."""

EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")
"""UTC+14 (Line Islands, ``Etc`` signs are inverted): the first zone where a day ends, so its
last complete day is the latest any source can have."""

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def local_day(now: datetime, zone: tzinfo) -> date:
    """The calendar day ``now`` falls on in ``zone`` (today there): e.g. whether stored
    details were read today in the account's zone."""
    return now.astimezone(zone).date()


def last_complete_day(now: datetime, zone: tzinfo) -> date:
    """Yesterday in ``zone``: the last day that has ended there at ``now``."""
    return local_day(now, zone) - timedelta(days=1)


def default_day(now: datetime, zone: tzinfo) -> date:
    """The day a run without an explicit date collects: the configured zone's last complete
    day (``CRONKEEPER_TIMEZONE``)."""
    return last_complete_day(now, zone)


def slot_day(slot: datetime, zone: tzinfo) -> date:
    """The report day of a scheduled fire: the last complete day *at its slot* in the
    scheduler's zone, whatever time the fire actually ran."""
    return last_complete_day(slot, zone)


def source_day(now: datetime, zone: tzinfo, day: date, *, explicit: bool) -> date:
    """The last day to collect from a source that counts days in ``zone``.

    Without an explicit date it is the source's own yesterday. An explicit ``day`` means that
    day in the source's zone, but never a day that has not ended there yet: a day still open
    would be stored as if complete (and, without a later re-read, never corrected). Meta counts
    a day in the ad account's ``timezone_name`` (airbyte source-facebook-marketing,
    ``_get_end_date_for_account``: "the Facebook Insights API interprets time_range dates in the
    ad account's timezone"); Mixpanel in the project's time zone.
    """
    yesterday = last_complete_day(now, zone)
    return min(day, yesterday) if explicit else yesterday


def account_zone(timezone_name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """An ad account's zone: its ``timezone_name`` once its details were read, else
    ``fallback`` (the configured zone)."""
    return ZoneInfo(timezone_name) if timezone_name else fallback


def lookback(end: date, days: int) -> tuple[date, date]:
    """The restatement window of ``days`` days that ends on ``end``, both included."""
    return end - timedelta(days=max(1, days) - 1), end


def earliest_day(now: datetime, days: int) -> date:
    """A day before every source's window of ``days`` days ending on its last complete day,
    whatever its zone (with a day to spare): the lower bound for reading stored days."""
    return last_complete_day(now, EARLIEST_ZONE) - timedelta(days=days + 1)


def run_day(report_date: date | None, started_at: datetime, zone: tzinfo) -> date:
    """The day a recorded run stands for: its report date, or (recorded without one) the
    default day of when it started."""
    if report_date is not None:
        return report_date
    return default_day(started_at, zone)


def is_backfill(report_date: date | None, started_at: datetime, zone: tzinfo) -> bool:
    """A run for another date than the one its job collects by default when it started: a
    backfill or a re-run."""
    if report_date is None:
        return False
    return report_date != default_day(started_at, zone)


def parse_report_date(text: str) -> date:
    """``YYYY-MM-DD`` and nothing else, or ``ValueError``.

    Not a Unix timestamp, not a datetime at midnight, not ``20261129``: pydantic (``?date=``)
    and ``date.fromisoformat`` (``--date``) each accept some of these, and a run for a date
    the caller did not mean is worse than a refusal.
    """
    if _ISO_DAY.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"invalid date {text[:40]!r}: use YYYY-MM-DD")


def check_report_date(day: date, last_complete: date, zone: str) -> None:
    """Refuse dates no source has complete data for, with a message (``ValueError``).

    One rule for ``run --date``, ``?date=`` and ``backfill``: a report date is a day that has
    ended in ``zone`` (``CRONKEEPER_TIMEZONE``); ``last_complete`` is yesterday there.
    Today would be collected half-way and then look complete.
    """
    if day < EARLIEST_REPORT_DATE:
        raise ValueError(f"report date {day.isoformat()} is before {EARLIEST_REPORT_DATE}")
    if day > last_complete:
        raise ValueError(
            f"report date {day.isoformat()} is not over yet in {zone}: the last complete day "
            f"is {last_complete.isoformat()}"
        )
