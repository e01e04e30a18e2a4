"""collect-mixpanel: the configured events' daily counts (unit: one Mixpanel project).

Projects come from ``MIXPANEL_PROJECT_ID`` (a comma list) when it is set, else from the
distinct Mixpanel project ids of the active accounts. Each project counts its days in its own
time zone (``MIXPANEL_PROJECT_TIMEZONES``, else ``CRONKEEPER_TIMEZONE``): a run without a date
collects up to the project's own yesterday, ``--date D`` means D there, and a day not ended
there is left for a later run. One range query per project re-reads the last
``MIXPANEL_LOOKBACK_DAYS`` days (late events still arrive) with all the configured events at
once; the Query API allows 60 queries an hour per project, so at most two projects are
queried at a time. Every configured event gets a row per day (a day missing from an event's
answer is 0), so a re-run overwrites a stale count instead of leaving it behind.

A well-formed answer can still be wrong (issue 19): ``{"data": {"series": [], "values": {}}}``
once set 21 stored counts to 0. So an answer that holds none of the requested events fails the
project, and an event missing from an answer is taken as 0 only when nothing above 0 is stored
for it in the window (an event the project knows and that had no data); otherwise the project
fails and its stored counts stay. The run's message says how many stored counts it changed.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cronkeeper.errors import ConfigError, CronkeeperError, PayloadError
from cronkeeper.jobs._changes import changed_rows, rewrote_note
from cronkeeper.jobs._common import (
    configured_or_active,
    deferral,
    describe_failure,
    for_each,
    storage_error,
)
from cronkeeper.jobs.base import JobContext, lookback, source_day
from cronkeeper.ledger import RunTracker
from cronkeeper.sources import MixpanelClient, MixpanelCount
from cronkeeper.storage.schema import accounts, mixpanel_daily_events
from cronkeeper.storage.upsert import upsert

__all__ = ["MAX_PARALLEL_PROJECTS", "absent_events", "projects", "run"]

MAX_PARALLEL_PROJECTS = 2


async def projects(ctx: JobContext) -> list[str]:
    """The project ids to query, sorted; ``ConfigError`` when there are none."""
    return await configured_or_active(
        ctx,
        ctx.settings.mixpanel_project_id,
        accounts.c.mixpanel_project_id,
        what="the accounts' Mixpanel projects",
        none_message=(
            "no Mixpanel project to query: MIXPANEL_PROJECT_ID is not set and no active"
            " account has a Mixpanel project id; set one or fill 'Mixpanel Project ID' in Notion"
        ),
    )


def absent_events(
    project: str, events: list[str], counts: list[MixpanelCount], since: date, until: date
) -> list[str]:
    """The requested events the answer lacks; :class:`PayloadError` when it lacks them all."""
    present = {c.event for c in counts}
    absent = [e for e in dict.fromkeys(events) if e not in present]
    if absent and not present:
        raise PayloadError(
            f"Mixpanel project {project}: the answer holds none of the {len(absent)} requested"
            f" events for {since} … {until}; an answer without any event is not trusted, so"
            " nothing was stored and the stored counts stay"
        )
    return absent


async def _zeros_for(
    conn: AsyncConnection, project: str, absent: list[str], since: date, until: date
) -> list[MixpanelCount]:
    """Zero counts for ``absent`` events, or :class:`PayloadError` if that would overwrite a
    stored count above 0 (Mixpanel does not forget events that happened)."""
    table = mixpanel_daily_events
    result = await conn.execute(
        select(table.c.event, func.count())
        .where(
            and_(
                table.c.project_id == project,
                table.c.event.in_(absent),
                table.c.date.between(since, until),
                table.c.count > 0,
            )
        )
        .group_by(table.c.event)
    )
    stored = {str(event): int(n) for event, n in result}
    if stored:
        named = ", ".join(f"{e!r} ({n} day{'s' if n != 1 else ''})" for e, n in stored.items())
        raise PayloadError(
            f"Mixpanel project {project}: the answer lacks {named} for {since} … {until},"
            " whose stored counts are above 0; not overwriting them with 0, so nothing of this"
            " project was stored. Check the event names in MIXPANEL_EVENTS and in Mixpanel"
        )
    days = [since.fromordinal(n) for n in range(since.toordinal(), until.toordinal() + 1)]
    return [MixpanelCount(project, e, d, 0) for e in absent for d in days]


async def run(ctx: JobContext, day: date, run: RunTracker) -> None:
    events = ctx.settings.mixpanel_events
    if not events:
        raise ConfigError(
            "MIXPANEL_EVENTS is empty: list the events to count, comma-separated"
            " (e.g. MIXPANEL_EVENTS=signup,purchase)"
        )
    client = MixpanelClient.from_settings(ctx.http, ctx.settings)
    ids = await projects(ctx)
    started = ctx.clock()
    changed: dict[str, int] = {}

    async def collect(project: str) -> None:
        zone = ctx.settings.mixpanel_zone(project)
        end = source_day(started, zone, day, explicit=ctx.explicit_day)
        since, until = lookback(end, ctx.settings.mixpanel_lookback_days)
        counts = await client.event_counts(project, events, since, until)
        absent = absent_events(project, list(events), counts, since, until)
        now = ctx.clock()
        try:
            async with ctx.writing() as conn:
                if absent:
                    counts = counts + await _zeros_for(conn, project, absent, since, until)
                rows = [
                    {
                        "project_id": c.project_id,
                        "event": c.event,
                        "date": c.date,
                        "count": c.count,
                        "collected_at": now,
                    }
                    for c in counts
                ]
                key = ("project_id", "event", "date")
                rewritten = await changed_rows(
                    conn, mixpanel_daily_events, rows, key=key, figures=("count",)
                )
                written = await upsert(conn, mixpanel_daily_events, rows)
        except CronkeeperError:
            raise
        except Exception as exc:
            raise storage_error("fetched, but could not store the counts", exc) from exc
        changed[project] = rewritten
        run.stored(written)

    def failed(project: str, exc: Exception) -> None:
        run.skip(f"project {project}", describe_failure(exc))

    limit = min(MAX_PARALLEL_PROJECTS, ctx.settings.concurrency)
    await for_each(ids, collect, limit=limit, on_error=failed, defer=deferral(ctx))
    if any(changed.values()):
        run.note(rewrote_note(sum(changed.values()), "stored count", "Mixpanel"))
