"""collect-mixpanel: the configured events' daily counts (unit: one Mixpanel project).

Projects come from ``MIXPANEL_PROJECT_ID`` (a comma list) when it is set, else from the
distinct Mixpanel project ids of the active accounts. Each project counts its days in its own
time zone (``MIXPANEL_PROJECT_TIMEZONES``, else ``CRONKEEPER_TIMEZONE``): a run without a date
collects up to the project's own yesterday, ``--date D`` means D there, and a day not ended
there is left for a later run. One range query per project re-reads the last
``MIXPANEL_LOOKBACK_DAYS`` days (late events still arrive) with all the configured events at
once; the Query API allows 60 queries an hour per project, so at most two projects are
queried at a time. Every configured event gets a row per day, absent ones with a count of 0,
so a re-run overwrites a stale count instead of leaving it behind.
"""

from __future__ import annotations

from datetime import date

from cronkeeper.errors import ConfigError
from cronkeeper.jobs._common import (
    configured_or_active,
    deferral,
    describe_failure,
    for_each,
    storage_error,
)
from cronkeeper.jobs.base import JobContext, lookback, source_day
from cronkeeper.ledger import RunTracker
from cronkeeper.sources import MixpanelClient
from cronkeeper.storage.schema import accounts, mixpanel_daily_events
from cronkeeper.storage.upsert import upsert

__all__ = ["MAX_PARALLEL_PROJECTS", "projects", "run"]

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

    async def collect(project: str) -> None:
        zone = ctx.settings.mixpanel_zone(project)
        end = source_day(started, zone, day, explicit=ctx.explicit_day)
        since, until = lookback(end, ctx.settings.mixpanel_lookback_days)
        counts = await client.event_counts(project, events, since, until)
        now = ctx.clock()
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
        try:
            async with ctx.engine.begin() as conn:
                written = await upsert(conn, mixpanel_daily_events, rows)
        except Exception as exc:
            raise storage_error("fetched, but could not store the counts", exc) from exc
        run.stored(written)

    def failed(project: str, exc: Exception) -> None:
        run.skip(f"project {project}", describe_failure(exc))

    limit = min(MAX_PARALLEL_PROJECTS, ctx.settings.concurrency)
    await for_each(ids, collect, limit=limit, on_error=failed, defer=deferral(ctx))
