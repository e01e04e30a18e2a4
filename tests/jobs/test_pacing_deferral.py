"""Pacing, the app-wide pause and deferral, over real HTTP against the Meta simulator.

Time is fake and shared: the recorded sleep moves the clock the client, the pacer and the
deferral read, and an httpx event hook stamps every request with that clock, so "no request
went out earlier than allowed" is checked exactly, without waiting for real.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from cronkeeper.http import RetryPolicy
from cronkeeper.http.pacing import Pacer, PacingPolicy
from cronkeeper.sandbox import Fault, MetaAccount, MetaQuota, MetaSimulator, QuotaPolicy
from cronkeeper.storage.schema import meta_daily_insights
from tests.conftest import FakeClock
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import META_TOKEN, Harness, Outcome

ACCOUNTS = ("1001", "1002", "1003", "1004")


class Stamps:
    """When (fake time) each request went out and each answer came back, in order."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.events: list[tuple[str, str, datetime, int | None]] = []

    async def request(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/insights"):
            self.events.append(("send", _account(request.url), self.clock(), None))

    async def response(self, response: httpx.Response) -> None:
        url = response.request.url
        if url.path.endswith("/insights"):
            self.events.append(("answer", _account(url), self.clock(), response.status_code))

    def sends(self, account: str) -> list[datetime]:
        return [at for kind, acc, at, _ in self.events if kind == "send" and acc == account]


def _account(url: httpx.URL) -> str:
    part = next((p for p in url.path.split("/") if p.startswith("act_")), "")
    return part.removeprefix("act_")


@pytest.fixture
def stamps(harness: Harness) -> Stamps:
    """The harness's clock moves with every recorded sleep; requests are stamped."""

    async def advance(seconds: float) -> None:
        harness.clock.advance(seconds=seconds)

    harness.sleep.hook = advance
    stamps = Stamps(harness.clock)
    harness.client.event_hooks = {"request": [stamps.request], "response": [stamps.response]}
    return stamps


def settings(sandbox: Sandbox, harness: Harness, sim: MetaSimulator, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "meta_access_token": META_TOKEN,
        "meta_api_base": sandbox.meta(sim),
        "meta_ad_account_ids": ACCOUNTS,
        "meta_lookback_days": 1,  # one day, one request per account: counts stay exact
        "concurrency": 1,
    }
    values.update(overrides)
    return harness.settings(**values)


async def _app_throttle_run(
    sandbox: Sandbox, harness: Harness, pacer: Pacer | None
) -> tuple[MetaSimulator, float]:
    """collect-daily with one code-4 refusal of the first account, waits of 0.5 s slept for
    real (the request log's arrival times are real); returns the refusal's arrival time."""
    sim = MetaSimulator(ACCOUNTS, access_token=META_TOKEN)
    sim.faults.add_script("1001", [Fault.meta_throttle(4)])  # Application request limit reached

    async def real(seconds: float) -> None:
        await asyncio.sleep(seconds)

    harness.sleep.hook = real
    policy = RetryPolicy(max_retries=2, waits=(0.5, 1.0), timeout=10.0, max_wait=60.0)
    outcome = await harness.run(
        "collect-daily", settings(sandbox, harness, sim), pacer=pacer, policy=policy
    )
    assert outcome.status == "success"
    assert await harness.count(meta_daily_insights) == 4
    return sim, sim.log.records_for("1001")[0].at


@pytest.mark.slow
async def test_an_app_level_throttle_pauses_every_account_once(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim, refused_at = await _app_throttle_run(sandbox, harness, Pacer())
    # One refusal, one wait for everybody: no other account's request arrived before the
    # 0.5 s wait had passed, and only the refused account was asked twice.
    for account in ACCOUNTS[1:]:
        (record,) = sim.log.records_for(account)
        assert record.at >= refused_at + 0.5
    assert len(sim.log.records_for("1001")) == 2


@pytest.mark.slow
async def test_without_a_pacer_the_other_accounts_keep_calling(
    sandbox: Sandbox, harness: Harness
) -> None:
    """The comparison for the test above: the behaviour before pacing."""
    sim, refused_at = await _app_throttle_run(sandbox, harness, None)
    assert sim.log.records_for("1002")[0].at < refused_at + 0.5


async def _regain_run(sandbox: Sandbox, harness: Harness, regain_minutes: int) -> Outcome:
    """collect-daily with a 45-minute budget; Meta throttles account 1002 once, asking for
    ``regain_minutes`` in ``estimated_time_to_regain_access``."""
    sim = MetaSimulator(ACCOUNTS, access_token=META_TOKEN)
    sim.faults.add_script("1002", [Fault.meta_throttle(80000, regain_minutes=regain_minutes)])
    pacer = Pacer(clock=harness.clock)
    deadline = harness.clock() + timedelta(minutes=45)
    return await harness.run(
        "collect-daily", settings(sandbox, harness, sim), pacer=pacer, deadline=deadline
    )


async def test_a_long_wait_sets_the_account_aside_until_then(
    sandbox: Sandbox, harness: Harness, stamps: Stamps
) -> None:
    outcome = await _regain_run(sandbox, harness, 5)

    assert outcome.status == "success", outcome.message
    assert await harness.count(meta_daily_insights) == 4
    first, second = stamps.sends("1002")
    assert second - first >= timedelta(minutes=5)  # never earlier than asked
    assert 300.0 in harness.sleep.waits


async def test_a_wait_past_the_run_budget_skips_the_account_and_says_how_long(
    sandbox: Sandbox, harness: Harness, stamps: Stamps
) -> None:
    outcome = await _regain_run(sandbox, harness, 60)

    assert outcome.status == "partial"
    assert "act_1002" in outcome.message
    assert "3600 s" in outcome.message
    assert "CRONKEEPER_RUN_BUDGET" in outcome.message
    assert len(stamps.sends("1002")) == 1
    assert 3600.0 not in harness.sleep.waits


async def test_without_a_budget_a_long_wait_skips_at_once(
    sandbox: Sandbox, harness: Harness, stamps: Stamps
) -> None:
    sim = MetaSimulator(ACCOUNTS, access_token=META_TOKEN)
    sim.faults.add_script("1002", [Fault.meta_throttle(80000, regain_minutes=5)])
    outcome = await harness.run("collect-daily", settings(sandbox, harness, sim))
    assert outcome.status == "partial"
    assert "asked to wait 300 s" in outcome.message


async def test_a_unit_set_aside_too_often_is_skipped(clock: FakeClock) -> None:
    """An API that keeps asking for more time cannot hold a run in a loop."""
    from cronkeeper.errors import WaitTooLong
    from cronkeeper.jobs._common import Deferral, for_each

    tries: list[int] = []
    failures: list[Exception] = []
    slept: list[float] = []

    async def work(item: int) -> None:
        tries.append(item)
        raise WaitTooLong("asked to wait 120 s", wait_seconds=120)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    defer = Deferral(clock() + timedelta(hours=1), clock, sleep, max_times=3)
    await for_each([1], work, limit=1, on_error=lambda _, exc: failures.append(exc), defer=defer)
    assert len(tries) == 4
    assert slept == [120, 120, 120]
    assert len(failures) == 1


async def _quota_run(
    sandbox: Sandbox, harness: Harness, stamps: Stamps, pacer: Pacer | None
) -> MetaQuota:
    """Two accounts of six pages each against a quota of four calls a minute per account."""
    quota = MetaQuota(
        QuotaPolicy(account_calls=4, app_calls=1000, window=60),
        clock=lambda: harness.clock().timestamp(),
    )
    sim = MetaSimulator(
        [MetaAccount("1001", pages=6), MetaAccount("1002", pages=6)],
        access_token=META_TOKEN,
        quota=quota,
    )
    outcome = await harness.run(
        "collect-daily",
        settings(sandbox, harness, sim, meta_ad_account_ids=("1001", "1002")),
        pacer=pacer,
    )
    assert outcome.status == "success", outcome.message
    return quota


async def test_usage_headers_slow_an_account_before_meta_refuses(
    sandbox: Sandbox, harness: Harness, stamps: Stamps
) -> None:
    quota = await _quota_run(
        sandbox, harness, stamps, Pacer(PacingPolicy(high_water=50, pause=60), harness.clock)
    )
    assert quota.refusals == []
    sends = stamps.sends("1001")
    assert len(sends) == 6
    # Never more than four calls of one account inside any minute.
    pairs = zip(sends, sends[4:], strict=False)
    assert all(later - earlier >= timedelta(seconds=60) for earlier, later in pairs)


async def test_without_pacing_the_quota_is_hit(
    sandbox: Sandbox, harness: Harness, stamps: Stamps
) -> None:
    """The comparison: reacting only to refusals."""
    quota = await _quota_run(sandbox, harness, stamps, None)
    assert quota.refusals
