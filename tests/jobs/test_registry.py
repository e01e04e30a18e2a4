"""The job registry: names, order, lookup."""

from __future__ import annotations

import inspect

import pytest

from cronkeeper.config import JOB_NAMES
from cronkeeper.errors import UnknownJob
from cronkeeper.jobs import (
    JOBS,
    collect_benchmarks,
    collect_daily,
    collect_mixpanel,
    get_job,
    sync_notion,
)


def test_the_four_jobs_in_the_order_of_a_day() -> None:
    assert list(JOBS) == [
        "sync-notion",
        "collect-daily",
        "collect-mixpanel",
        "collect-benchmarks",
    ]
    assert tuple(JOBS) == JOB_NAMES  # the names the configuration validates against
    assert [job.run for job in JOBS.values()] == [
        sync_notion.run,
        collect_daily.run,
        collect_mixpanel.run,
        collect_benchmarks.run,
    ]
    assert all(job.name == name and job.unit_label for name, job in JOBS.items())


def test_every_job_takes_context_day_and_tracker() -> None:
    for job in JOBS.values():
        assert list(inspect.signature(job.run).parameters) == ["ctx", "day", "run"]
        assert inspect.iscoroutinefunction(job.run)


def test_get_job_finds_a_job_and_names_the_known_ones_otherwise() -> None:
    assert get_job("collect-daily") is JOBS["collect-daily"]
    with pytest.raises(UnknownJob) as caught:
        get_job("collect-weekly")
    assert str(caught.value) == (
        "unknown job 'collect-weekly'; jobs are sync-notion, collect-daily, collect-mixpanel,"
        " collect-benchmarks"
    )
