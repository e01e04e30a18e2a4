"""The four jobs and their registry (the contract of a job is in :mod:`cronkeeper.jobs.base`).

``JOBS`` is in the natural order of a day: the registry first, then the daily collections,
then the weekly benchmarks that read what collect-daily wrote.
"""

from __future__ import annotations

from cronkeeper.errors import UnknownJob
from cronkeeper.jobs import collect_benchmarks, collect_daily, collect_mixpanel, sync_notion
from cronkeeper.jobs.base import Job, JobContext, JobFunc, lookback, source_day

__all__ = [
    "JOBS",
    "Job",
    "JobContext",
    "JobFunc",
    "get_job",
    "lookback",
    "source_day",
]

JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            name="sync-notion",
            unit_label="pages",
            run=sync_notion.run,
            description="Notion account registry → accounts (inactive when gone)",
        ),
        Job(
            name="collect-daily",
            unit_label="ad accounts",
            run=collect_daily.run,
            description="Meta insights of the report date, one row per ad account",
        ),
        Job(
            name="collect-mixpanel",
            unit_label="projects",
            run=collect_mixpanel.run,
            description="Mixpanel counts of the configured events, per project",
        ),
        Job(
            name="collect-benchmarks",
            unit_label="industries",
            run=collect_benchmarks.run,
            description="p25/p50/p75 of CTR, CPC, CPM, CPA per industry over the last 7 days",
        ),
    )
}


def get_job(name: str) -> Job:
    """The job called ``name``; :class:`UnknownJob` naming the known ones otherwise."""
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(f"unknown job {name!r}; jobs are {', '.join(JOBS)}") from None
