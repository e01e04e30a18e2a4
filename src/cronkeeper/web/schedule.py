"""When does a job run next? Asked of the scheduler's own calendar.

The page must show what will happen, so it uses :func:`cronkeeper.scheduler.next_fire`, the
calendar the scheduler fires by (cronsim: crontab's Sunday-0 weekdays, day-of-month *or*
day-of-week, DST as Debian cron does it).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Literal

from cronkeeper.config import JobSpec
from cronkeeper.scheduler import next_fire

__all__ = ["NextKind", "next_kind", "next_run"]

NextKind = Literal["scheduled", "expected", "unscheduled"]


def next_run(expr: str, tz: tzinfo, now: datetime) -> datetime | None:
    """The first fire strictly after ``now``, in ``tz``; ``None`` if never or invalid."""
    try:
        return next_fire(expr, tz, now)
    except ValueError:
        return None


def next_kind(spec: JobSpec, scheduler_alive: bool | None, system_cron: bool) -> NextKind:
    """What the page may promise about ``spec``'s next run (issue 22: "next run in 4 h" when
    nothing will run is the silent-cron trap itself).

    ``scheduled``: a live scheduler fires it. ``expected``: something else fires it (an
    external job's own cron; ``CRONKEEPER_SYSTEM_CRON`` for the built-in ones; or the
    scheduler's state could not be read): the time is what its schedule expects, not a
    promise. ``unscheduled``: no scheduler is alive, so it runs only when triggered.
    """
    if spec.kind == "external":
        return "expected"
    if scheduler_alive:
        return "scheduled"
    if system_cron or scheduler_alive is None:
        return "expected"
    return "unscheduled"
