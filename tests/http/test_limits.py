"""Client-side quotas: Mixpanel's 60 queries an hour and 5 at once per project, Notion's 3/s.

Sources: https://docs.mixpanel.com/reference/rate-limits ("Query API: A maximum of 5
concurrent queries and 60 queries per hour", "scope per project") and
https://developers.notion.com/reference/request-limits ("an average of three requests per
second"). The decision is a pure function; the limiter is driven by a fake clock whose sleep
moves it, so nothing here waits for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from cronkeeper.errors import WaitTooLong
from cronkeeper.http import HttpContext, Quota, RequestLimiter, RetryPolicy, next_start
from cronkeeper.sandbox import Fault, MixpanelSimulator, serve_app
from cronkeeper.sources import MixpanelClient
from cronkeeper.sources.mixpanel import QUERY_API_QUOTA
from cronkeeper.sources.notion import API_QUOTA as NOTION_QUOTA

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
HOURLY = Quota("test API", requests=3, window=3600.0)


class TimeMachine:
    """A clock, and a sleep that moves it instead of waiting."""

    def __init__(self) -> None:
        self.now = T0
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)

    @property
    def elapsed(self) -> float:
        return (self.now - T0).total_seconds()


# -- the pure decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recent", "now", "expected"),
    [
        ([], 100.0, 100.0),  # nothing sent: go
        ([10.0, 20.0], 100.0, 100.0),  # under the quota: go
        ([10.0, 20.0, 30.0], 100.0, 3610.0),  # full: when the oldest of the last 3 leaves
        ([0.0, 10.0, 20.0, 30.0], 100.0, 3610.0),  # only the last `requests` starts count
        ([10.0, 20.0, 30.0], 3610.0, 3610.0),  # the oldest just left the window
        ([10.0, 20.0, 30.0], 5000.0, 5000.0),
        ([10.0, 3700.0], 100.0, 3700.0),  # a slot granted in the future: never before it
    ],
)
def test_next_start_is_the_earliest_moment_the_window_allows(
    recent: list[float], now: float, expected: float
) -> None:
    assert next_start(recent, now, HOURLY) == expected


def test_the_quotas_are_the_documented_ones() -> None:
    assert (QUERY_API_QUOTA.requests, QUERY_API_QUOTA.window) == (60, 3600.0)
    assert QUERY_API_QUOTA.concurrent == 5
    assert (NOTION_QUOTA.requests, NOTION_QUOTA.window, NOTION_QUOTA.concurrent) == (3, 1.0, None)


# -- the limiter, on a fake clock ---------------------------------------------------------------


async def test_notion_gets_three_requests_a_second_in_order() -> None:
    clock = TimeMachine()
    limiter = RequestLimiter(clock=clock, sleep=clock.sleep)
    starts: list[float] = []
    for _ in range(7):
        async with limiter.slot(NOTION_QUOTA.of("the integration")):
            starts.append(clock.elapsed)
    assert starts == [0, 0, 0, 1, 1, 1, 2]


async def test_the_61st_mixpanel_query_of_an_hour_waits_for_the_first_to_leave_the_window() -> None:
    clock = TimeMachine()
    limiter = RequestLimiter(clock=clock, sleep=clock.sleep, max_wait=3600)
    project = QUERY_API_QUOTA.of("project 1")
    for _ in range(60):
        async with limiter.slot(project):
            await clock.sleep(10)  # one query every 10 s: 60 of them in the first 600 s
    assert clock.elapsed == 600
    async with limiter.slot(project):
        assert clock.elapsed == 3600  # the first (t=0) has left the hour: not a second earlier


async def test_a_slot_beyond_max_wait_is_refused_at_once_and_not_taken() -> None:
    clock = TimeMachine()
    limiter = RequestLimiter(clock=clock, sleep=clock.sleep, max_wait=60)
    project = QUERY_API_QUOTA.of("project 1")
    for _ in range(60):
        limiter.reserve(project)
    for _ in range(2):  # refused twice: the refusal granted nothing
        with pytest.raises(WaitTooLong) as caught:
            limiter.reserve(project)
        assert caught.value.wait_seconds == 3600
    assert "60 requests in an hour and 5 at once per project" in str(caught.value)
    assert "project 1 has used them up" in str(caught.value)
    assert clock.waits == []
    assert limiter.reserve(QUERY_API_QUOTA.of("project 2")) == 0, "projects count apart"


async def test_at_most_five_mixpanel_queries_of_a_project_are_in_flight() -> None:
    clock = TimeMachine()
    limiter = RequestLimiter(clock=clock, sleep=clock.sleep)
    in_flight, most = 0, 0
    release = asyncio.Event()

    async def query(project: str) -> None:
        nonlocal in_flight, most
        async with limiter.slot(QUERY_API_QUOTA.of(project)):
            in_flight += 1
            most = max(most, in_flight)
            await release.wait()
            in_flight -= 1

    tasks = [asyncio.create_task(query("project 1")) for _ in range(8)]
    tasks.append(asyncio.create_task(query("project 2")))
    for _ in range(20):
        await asyncio.sleep(0)
    assert in_flight == 6  # five of project 1, one of project 2
    release.set()
    await asyncio.gather(*tasks)
    assert most == 6 and in_flight == 0


# -- through the HTTP layer, over real HTTP --------------------------------------------------------

SERVICE_ACCOUNT, SECRET = "limits.sa", "limits-mixpanel-secret-0123"
DAY = date(2026, 11, 19)


@pytest.fixture
def mixpanel() -> Iterator[tuple[MixpanelSimulator, str]]:
    sim = MixpanelSimulator(["77"], service_account=SERVICE_ACCOUNT, service_secret=SECRET)
    with serve_app(sim.app) as url:
        yield sim, f"{url}/api/query"


async def test_a_mixpanel_backfill_never_sends_the_61st_query_of_the_hour(
    mixpanel: tuple[MixpanelSimulator, str],
) -> None:
    """61 days of one project in one go: 60 reach Mixpanel, the 61st is refused unsent."""
    sim, url = mixpanel
    clock = TimeMachine()
    async with httpx.AsyncClient() as client:
        http = HttpContext(client=client, sleep=clock.sleep, now=clock)  # max_wait 60 s
        mp = MixpanelClient(http, base=url, service_account=SERVICE_ACCOUNT, secret=SECRET)
        for n in range(60):
            await mp.event_counts("77", ["signup"], DAY - timedelta(days=n))
        with pytest.raises(WaitTooLong, match="Mixpanel's Query API allows 60 requests") as caught:
            await mp.event_counts("77", ["signup"], DAY - timedelta(days=60))
    assert len(sim.records_for("77")) == 60
    assert caught.value.attempts == 0
    assert SECRET not in str(caught.value)


async def test_every_attempt_of_a_retry_counts_against_the_quota(
    mixpanel: tuple[MixpanelSimulator, str],
) -> None:
    sim, url = mixpanel
    sim.script("77", Fault.status(500))
    clock = TimeMachine()
    limiter = RequestLimiter(clock=clock, sleep=clock.sleep)
    async with httpx.AsyncClient() as client:
        http = HttpContext(
            client=client,
            policy=RetryPolicy(waits=(0.0, 0.0)),
            sleep=clock.sleep,
            now=clock,
            limiter=limiter,
        )
        mp = MixpanelClient(http, base=url, service_account=SERVICE_ACCOUNT, secret=SECRET)
        await mp.event_counts("77", ["signup"], DAY)
    assert len(sim.records_for("77")) == 2
    project = QUERY_API_QUOTA.of("project 77")
    assert [limiter.reserve(project) for _ in range(58)] == [0.0] * 58
    with pytest.raises(WaitTooLong):
        limiter.reserve(project)
