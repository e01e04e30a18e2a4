"""When does a job run next? Asked of the scheduler's own calendar.

The page must show what will happen, so it uses :func:`cronkeeper.scheduler.next_fire`, the
calendar the scheduler fires by (cronsim: crontab's Sunday-0 weekdays, day-of-month *or*
day-of-week, DST as Debian cron does it).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from cronkeeper.scheduler import next_fire

__all__ = ["next_run"]


def next_run(expr: str, tz: tzinfo, now: datetime) -> datetime | None:
    """The first fire strictly after ``now``, in ``tz``; ``None`` if never or invalid."""
    try:
        return next_fire(expr, tz, now)
    except ValueError:
        return None
