"""When does a job run next? Crontab expressions read the way cron reads them.

APScheduler 3's ``CronTrigger.from_crontab`` numbers weekdays from Monday (0 = Monday), while
crontab numbers them from Sunday (0 and 7 = Sunday): ``0 2 * * 1`` would mean Tuesday there.
:func:`crontab_trigger` rewrites the day-of-week field into weekday *names*, which both
agree on, before handing the expression over.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger

__all__ = ["crontab_trigger", "crontab_weekdays", "next_run"]

_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekday_number(token: str) -> int:
    token = token.strip().lower()
    if token in _NAMES:
        return _NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"invalid day of week {token!r}: use 0-7 or sun..sat")


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (Sunday = 0 or 7) as APScheduler 3 weekday names.

    ``"1"`` → ``"mon"``, ``"1-5"`` → ``"mon,tue,wed,thu,fri"``, ``"*/2"`` → ``"sun,tue,thu,sat"``;
    ``"*"`` stays ``"*"``.
    """
    if field.strip() == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.strip().partition("/")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"invalid step in day of week {part!r}")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            low, _, high = base.partition("-")
            first, last = _weekday_number(low), _weekday_number(high)
            if high.strip() == "7":
                last = 7
            if last < first:
                raise ValueError(f"invalid day-of-week range {part!r}")
        else:
            first = _weekday_number(base)
            last = 6 if slash else first
        days.update(day % 7 for day in range(first, last + 1, step))
    ordered = sorted(days, key=lambda day: (day + 6) % 7)  # Monday first, like APScheduler
    return ",".join(_NAMES[day] for day in ordered)


def crontab_trigger(expr: str, tz: tzinfo) -> Any:
    """An APScheduler ``CronTrigger`` that fires when crontab would, in ``tz``."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} is not a 5-field cron expression")
    fields[4] = crontab_weekdays(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=tz)


def next_run(expr: str, tz: tzinfo, now: datetime) -> datetime | None:
    """The first time after ``now`` that ``expr`` fires in ``tz`` (``None`` if never or invalid)."""
    try:
        trigger = crontab_trigger(expr, tz)
    except ValueError:
        return None
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire
