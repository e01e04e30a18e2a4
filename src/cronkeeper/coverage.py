"""Coverage: per ad account (and Mixpanel project) and day, is the day collected, missing,
still inside its restatement window (stored, but the source may still revise it), or answered
with no delivery (Meta sent no row for it: collected, and empty)?

The picture an analyst checks before trusting a dashboard. Each source's days are its own
(the ad account's ``timezone_name`` from ``meta_account_details``, the project's zone from
``MIXPANEL_PROJECT_TIMEZONES``), and the last day shown is that source's own yesterday.
:func:`day_states` is the pure rule; :func:`load_coverage` reads the database (three small
queries, bounded by the number of days shown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.config import Settings
from cronkeeper.errors import StorageError
from cronkeeper.reportday import account_zone, earliest_day, last_complete_day, lookback
from cronkeeper.storage.schema import (
    accounts,
    meta_account_details,
    meta_daily_insights,
    meta_no_delivery_days,
    mixpanel_daily_events,
)

__all__ = ["DayState", "SourceCoverage", "day_states", "load_coverage", "render_text"]

DayState = Literal["collected", "restating", "no delivery", "missing"]
_MARKS: dict[DayState, str] = {
    "collected": "#",
    "restating": "~",
    "no delivery": "0",
    "missing": ".",
}


@dataclass(frozen=True)
class SourceCoverage:
    source: Literal["meta", "mixpanel"]
    unit: str
    zone: str
    last_day: date
    days: dict[date, DayState]

    def count(self, state: DayState) -> int:
        return sum(1 for s in self.days.values() if s == state)

    @property
    def missing_days(self) -> int:
        return self.count("missing")

    @property
    def label(self) -> str:
        """How a person names the unit: ``act_…`` or ``Mixpanel …``."""
        return f"act_{self.unit}" if self.source == "meta" else f"Mixpanel {self.unit}"

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "unit": self.unit,
            "zone": self.zone,
            "lastDay": self.last_day.isoformat(),
            "collected": self.count("collected"),
            "restating": self.count("restating"),
            "noDelivery": self.count("no delivery"),
            "missing": self.count("missing"),
            "days": {d.isoformat(): s for d, s in self.days.items()},
        }


def day_states(
    collected: set[date],
    last_day: date,
    days: int,
    window: int,
    no_delivery: set[date] | None = None,
) -> dict[date, DayState]:
    """The state of each of the ``days`` days ending on ``last_day`` (oldest first).

    A stored day younger than the source's restatement ``window`` is ``restating``: the next
    runs will rewrite it as the source revises its figures. A day the source answered
    without a row (Meta: no delivery that day) is ``no delivery``: collected, and empty; only
    a day never answered is ``missing``.
    """
    empty = no_delivery or set()
    first_final, _ = lookback(last_day, window)
    states: dict[date, DayState] = {}
    for i in range(days - 1, -1, -1):
        day = last_day - timedelta(days=i)
        if day not in collected:
            states[day] = "no delivery" if day in empty else "missing"
        else:
            states[day] = "restating" if day >= first_final else "collected"
    return states


async def load_coverage(
    engine: AsyncEngine, settings: Settings, now: datetime, days: int = 28
) -> list[SourceCoverage]:
    """Coverage of every ad account and Mixpanel project the jobs would collect."""
    earliest = earliest_day(now, days)
    try:
        async with engine.connect() as conn:
            active = (
                await conn.execute(
                    select(accounts.c.meta_ad_account_id, accounts.c.mixpanel_project_id).where(
                        accounts.c.active.is_(True)
                    )
                )
            ).all()
            zones = {
                r.ad_account_id: r.timezone_name
                for r in await conn.execute(
                    select(
                        meta_account_details.c.ad_account_id, meta_account_details.c.timezone_name
                    )
                )
            }
            meta_rows = await conn.execute(
                select(meta_daily_insights.c.ad_account_id, meta_daily_insights.c.date).where(
                    meta_daily_insights.c.date >= earliest
                )
            )
            meta_days: dict[str, set[date]] = {}
            for r in meta_rows:
                meta_days.setdefault(str(r.ad_account_id), set()).add(r.date)
            empty_rows = await conn.execute(
                select(meta_no_delivery_days.c.ad_account_id, meta_no_delivery_days.c.date).where(
                    meta_no_delivery_days.c.date >= earliest
                )
            )
            empty_days: dict[str, set[date]] = {}
            for r in empty_rows:
                empty_days.setdefault(str(r.ad_account_id), set()).add(r.date)
            mp_rows = await conn.execute(
                select(mixpanel_daily_events.c.project_id, mixpanel_daily_events.c.date)
                .where(mixpanel_daily_events.c.date >= earliest)
                .distinct()
            )
            mp_days: dict[str, set[date]] = {}
            for r in mp_rows:
                mp_days.setdefault(str(r.project_id), set()).add(r.date)
    except Exception as exc:
        raise StorageError(
            f"database unavailable, cannot read coverage ({type(exc).__name__})"
        ) from None
    ad_ids = sorted(set(settings.meta_ad_account_ids) or {str(a) for a, _ in active if a})
    projects = sorted(set(settings.mixpanel_project_id) or {str(p) for _, p in active if p})
    out: list[SourceCoverage] = []
    for account in ad_ids:
        zone_name = zones.get(account)
        last = last_complete_day(now, account_zone(zone_name, settings.tz))
        out.append(
            SourceCoverage(
                "meta",
                account,
                zone_name or f"{settings.timezone} (account details not read yet)",
                last,
                day_states(
                    meta_days.get(account, set()),
                    last,
                    days,
                    settings.meta_lookback_days,
                    empty_days.get(account),
                ),
            )
        )
    for project in projects:
        zone = settings.mixpanel_zone(project)
        last = last_complete_day(now, zone)
        out.append(
            SourceCoverage(
                "mixpanel",
                project,
                str(zone),
                last,
                day_states(
                    mp_days.get(project, set()), last, days, settings.mixpanel_lookback_days
                ),
            )
        )
    return out


def render_text(coverage: list[SourceCoverage]) -> list[str]:
    """One line per source: the days oldest → newest (``#`` collected, ``~`` restating, ``.``
    missing), then the counts."""
    if not coverage:
        return ["no ad account or Mixpanel project configured: nothing to cover"]
    lines = [
        "# collected (final)   ~ collected, still inside its restatement window"
        "   0 no delivery (answered, no row)   . missing"
    ]
    width = max(len(_label(c)) for c in coverage)
    for c in coverage:
        strip = "".join(_MARKS[s] for s in c.days.values())
        first = min(c.days).isoformat() if c.days else "-"
        lines.append(
            f"{_label(c):<{width}}  {first}…{c.last_day.isoformat()}  {strip}  "
            f"{c.count('missing')} missing, {c.count('restating')} restating,"
            f" {c.count('no delivery')} no delivery  ({c.zone})"
        )
    return lines


def _label(c: SourceCoverage) -> str:
    return f"act_{c.unit}" if c.source == "meta" else f"mixpanel {c.unit}"
