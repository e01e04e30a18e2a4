"""fetch_with_retry against the Meta simulator over real HTTP: the waits the SPEC demands.

The simulator's request log holds each attempt's arrival time, so "never earlier than the
server asked" is checked on the server side, not on what the client believes it slept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from tests.support.timers import loop_timers

from cronkeeper.errors import PermanentFetchError, RetriesExhausted, WaitTooLong
from cronkeeper.http import RetryPolicy, fetch_with_retry
from cronkeeper.redact import Redactor
from cronkeeper.sandbox import Fault, MetaSimulator, serve_app

TOKEN = "EAAB-sandbox-token-0123456789"
ACCOUNT = "120210000000042"
DAY = '{"since":"2026-11-19","until":"2026-11-19"}'


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sim() -> MetaSimulator:
    return MetaSimulator([ACCOUNT], access_token=TOKEN)


@pytest.fixture
def base_url(sim: MetaSimulator) -> Iterator[str]:
    with serve_app(sim.app) as url:
        yield url


async def call(
    base_url: str,
    sleep: RecordingSleep | None = None,
    policy: RetryPolicy | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        kwargs = {"sleep": sleep} if sleep is not None else {}
        return await fetch_with_retry(
            client,
            "GET",
            f"{base_url}/v27.0/act_{ACCOUNT}/insights",
            params={"level": "account", "time_range": DAY, "access_token": TOKEN},
            policy=policy or RetryPolicy(),
            redactor=Redactor((TOKEN,)),
            **kwargs,  # type: ignore[arg-type]
        )


async def test_default_waits_are_3_then_6_seconds(sim: MetaSimulator, base_url: str) -> None:
    sim.script(ACCOUNT, Fault.status(500), Fault.status(503))
    sleep = RecordingSleep()
    response = await call(base_url, sleep)
    assert response.status_code == 200
    assert sleep.waits == [3.0, 6.0]
    assert len(sim.records_for(ACCOUNT)) == 3


async def test_still_failing_after_two_retries_raises_retries_exhausted(
    sim: MetaSimulator, base_url: str
) -> None:
    sim.always(ACCOUNT, Fault.status(500))
    with pytest.raises(RetriesExhausted, match="after 3 attempts"):
        await call(base_url, RecordingSleep())
    assert len(sim.records_for(ACCOUNT)) == 3


@pytest.mark.realtime
async def test_a_429_retry_after_2_is_retried_only_after_a_2_second_timer_fired(
    sim: MetaSimulator, base_url: str
) -> None:
    """The default (real) sleep: the wait is not only asked for, it happens. A 2 s timer is
    armed on the event loop (scaled down here so that the suite does not wait it out) and
    the simulator's request log holds one attempt when it fires, the retry only after."""
    sim.script(ACCOUNT, Fault.status(429, retry_after="2"))
    with loop_timers(scale=0.05, watch=lambda: len(sim.records_for(ACCOUNT))) as timers:
        response = await call(base_url)  # the real asyncio.sleep
    assert response.status_code == 200
    assert ("armed", 2.0) in timers.events
    assert ("fired", (2.0, 1)) in timers.events
    assert len(sim.records_for(ACCOUNT)) == 2


async def test_an_http_date_retry_after_is_honoured(sim: MetaSimulator, base_url: str) -> None:
    sim.script(ACCOUNT, Fault.retry_after_date(3))
    sleep = RecordingSleep()
    before = datetime.now(UTC)
    await call(base_url, sleep)
    (wait,) = sleep.waits
    # The date is rounded up to the whole second; measured from the client's clock.
    assert 2.0 <= wait <= 4.5, (wait, before)


async def test_a_meta_code_17_throttle_is_retried(sim: MetaSimulator, base_url: str) -> None:
    sim.script(ACCOUNT, Fault.meta_throttle(17))
    sleep = RecordingSleep()
    assert (await call(base_url, sleep)).status_code == 200
    assert sleep.waits == [3.0]


async def test_meta_usage_header_sets_the_wait(sim: MetaSimulator, base_url: str) -> None:
    sim.script(ACCOUNT, Fault.meta_throttle(80000, regain_minutes=1))
    sleep = RecordingSleep()
    await call(base_url, sleep)
    assert sleep.waits == [60.0]


async def test_an_expired_token_190_is_tried_exactly_once(
    sim: MetaSimulator, base_url: str
) -> None:
    sim.always(ACCOUNT, Fault.expired_token())
    sleep = RecordingSleep()
    with pytest.raises(PermanentFetchError, match="190"):
        await call(base_url, sleep)
    assert len(sim.records_for(ACCOUNT)) == 1
    assert sleep.waits == []


async def test_a_wait_above_max_wait_is_not_slept(sim: MetaSimulator, base_url: str) -> None:
    sim.script(ACCOUNT, Fault.status(429, retry_after="3600"))
    sleep = RecordingSleep()
    with pytest.raises(WaitTooLong, match="3600"):
        await call(base_url, sleep, RetryPolicy(max_wait=60))
    assert sleep.waits == []
    assert len(sim.records_for(ACCOUNT)) == 1


async def test_the_token_is_absent_from_every_error_and_log_line(
    sim: MetaSimulator, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.always(ACCOUNT, Fault.status(500))
    with pytest.raises(RetriesExhausted) as caught:
        await call(base_url, RecordingSleep())
    assert sim.records_for(ACCOUNT)[0].query.get("access_token") == TOKEN  # it was sent
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert caplog.records, "retries are logged"
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
