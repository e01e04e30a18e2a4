"""What every job is given, and what it must do.

A job is ``async def run(ctx: JobContext, day: date, run: RunTracker) -> None``. It collects
the data of ``day`` (always explicit: re-runs and backfills pass their own), writes it with
idempotent upserts in one transaction per unit, and reports each unit to ``run``:
``run.stored(records)`` after a unit was committed, ``run.skip(unit, reason)`` when a unit
failed after its retries. The ledger turns that into ``success``/``partial``/``error``. A job
raises only when it cannot work at all (missing configuration, database down); the run is
then ``error`` with that message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.clock import Clock
from cronkeeper.config import Settings
from cronkeeper.http import HttpContext
from cronkeeper.ledger import RunTracker

__all__ = ["Job", "JobContext", "JobFunc", "lookback", "report_date", "source_day"]


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    engine: AsyncEngine
    http: HttpContext
    clock: Clock
    explicit_day: bool = True
    """``False`` when the caller gave no date: each source then collects up to *its own*
    yesterday (its own time zone), not the configured zone's."""
    deadline: datetime | None = None
    """The run's start + ``CRONKEEPER_RUN_BUDGET``: until then, units may be set aside."""


JobFunc = Callable[[JobContext, date, RunTracker], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    name: str
    unit_label: str
    """What one unit is, for messages: ``accounts``, ``projects``, ``pages``, ``industries``."""
    run: JobFunc
    description: str


def report_date(now: datetime, tz: ZoneInfo) -> date:
    """Yesterday in the configured time zone: the last complete day."""
    return now.astimezone(tz).date() - timedelta(days=1)


def source_day(now: datetime, zone: ZoneInfo, day: date, *, explicit: bool) -> date:
    """The last day to collect from a source that counts days in ``zone``.

    Without an explicit date it is the source's own yesterday. An explicit ``day`` means that
    day in the source's zone, but never a day that has not ended there yet: a day still open
    would be stored as if complete (and, without a later re-read, never corrected). Meta counts
    a day in the ad account's ``timezone_name`` (airbyte source-facebook-marketing,
    ``_get_end_date_for_account``: "the Facebook Insights API interprets time_range dates in the
    ad account's timezone"); Mixpanel in the project's time zone.
    """
    yesterday = report_date(now, zone)
    return min(day, yesterday) if explicit else yesterday


def lookback(end: date, days: int) -> tuple[date, date]:
    """The restatement window of ``days`` days that ends on ``end``, both included."""
    return end - timedelta(days=max(1, days) - 1), end
