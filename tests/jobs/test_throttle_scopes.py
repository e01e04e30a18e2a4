"""Throttles as Meta documents them (issue 18.2), over real HTTP against the Meta simulator.

Meta's Marketing API rate-limiting page
(https://developers.facebook.com/docs/marketing-api/overview/rate-limiting) ties error 17
(subcode 2446079) and 613 (subcode 1487742) to the ad account's quota and error 4 (subcodes
1504022, 1504039; also the Ads Insights API error-code page) to the app; a throttled caller
"will be blocked for 300 seconds" (development tier). Main held the whole source on 17 and,
with no estimate from Meta, retried after 3 s then 6 s, spending its retries on refusals.

Time is fake and shared (see test_pacing_deferral.py): every recorded sleep moves the clock
that the pacer, the deferral and the request stamps read.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest

from cronkeeper.http import RetryPolicy
from cronkeeper.http.pacing import Pacer
from cronkeeper.sandbox import Fault, MetaSimulator
from cronkeeper.storage.schema import meta_daily_insights
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import Harness
from tests.jobs.test_pacing_deferral import ACCOUNTS, Stamps, settings

pytestmark = pytest.mark.pooler

BLOCK = 300.0
POLICY = RetryPolicy(
    max_retries=2, waits=(3.0, 6.0), timeout=10.0, max_wait=60.0, throttle_block=BLOCK
)


@pytest.fixture
def stamps(harness: Harness) -> Stamps:
    """Requests stamped with the fake clock; a sleep moves it. The first set-aside of the
    refused account first lets the other accounts go (until they are answered, or a few real
    seconds at most): what would happen during a real 300 s wait, so "was it held?" is
    decided by the pacer's holds and not by who the event loop happened to run first."""
    stamps = Stamps(harness.clock)
    others_done = asyncio.Event()

    async def on_response(response: object) -> None:
        await stamps.response(response)  # type: ignore[arg-type]
        answered = {acc for kind, acc, _, _ in stamps.events if kind == "answer"}
        if answered >= set(ACCOUNTS[1:]):
            others_done.set()

    first = True

    async def advance(seconds: float) -> None:
        nonlocal first
        if first:
            first = False
            with contextlib.suppress(TimeoutError):  # held accounts never get answered here
                await asyncio.wait_for(others_done.wait(), 5)
        harness.clock.advance(seconds=seconds)

    harness.sleep.hook = advance
    harness.client.event_hooks = {"request": [stamps.request], "response": [on_response]}
    return stamps


async def _run(sandbox: Sandbox, harness: Harness, fault: Fault) -> MetaSimulator:
    sim = MetaSimulator(ACCOUNTS, access_token="meta-token-0123456789abcdef")
    sim.faults.add_script("1001", [fault])
    outcome = await harness.run(
        "collect-daily",
        settings(sandbox, harness, sim),
        pacer=Pacer(clock=harness.clock),
        deadline=harness.clock() + timedelta(minutes=45),
        policy=POLICY,
    )
    assert outcome.status == "success", outcome.message
    assert await harness.count(meta_daily_insights) == len(ACCOUNTS)
    return sim


@pytest.mark.parametrize(
    ("code", "subcode"), [(17, 2446079), (613, 1487742)], ids=["17-2446079", "613-1487742"]
)
async def test_an_ad_account_throttle_holds_that_account_only(
    sandbox: Sandbox, harness: Harness, stamps: Stamps, code: int, subcode: int
) -> None:
    await _run(sandbox, harness, Fault.meta_error(code, subcode=subcode))

    refused, retried = stamps.sends("1001")
    assert retried - refused >= timedelta(seconds=BLOCK)  # Meta's blocking period, once
    for account in ACCOUNTS[1:]:
        (sent,) = stamps.sends(account)
        assert sent < refused + timedelta(seconds=BLOCK)  # not held by 1001's throttle


@pytest.mark.parametrize("subcode", [1504022, 1504039])
async def test_an_app_throttle_holds_every_account_of_the_source(
    sandbox: Sandbox, harness: Harness, stamps: Stamps, subcode: int
) -> None:
    await _run(sandbox, harness, Fault.meta_error(4, subcode=subcode))

    refused, _ = stamps.sends("1001")
    for account in ACCOUNTS[1:]:
        (sent,) = stamps.sends(account)
        assert sent >= refused + timedelta(seconds=BLOCK)


async def test_no_estimate_waits_the_blocking_period_instead_of_burning_retries(
    sandbox: Sandbox, harness: Harness, stamps: Stamps
) -> None:
    sim = await _run(sandbox, harness, Fault.meta_error(17, subcode=2446079))

    assert len(sim.log.records_for("1001")) == 2  # refused once, then served: no retry spent
    assert BLOCK in harness.sleep.waits  # set aside for the period, outside the call
    assert 3.0 not in harness.sleep.waits and 6.0 not in harness.sleep.waits


async def test_the_blocking_period_past_the_budget_skips_with_the_setting_named(
    sandbox: Sandbox, harness: Harness, stamps: Stamps
) -> None:
    sim = MetaSimulator(ACCOUNTS, access_token="meta-token-0123456789abcdef")
    sim.faults.add_script("1001", [Fault.meta_error(17, subcode=2446079)])
    outcome = await harness.run(
        "collect-daily",
        settings(sandbox, harness, sim),
        pacer=Pacer(clock=harness.clock),
        deadline=harness.clock() + timedelta(minutes=2),
        policy=POLICY,
    )
    assert outcome.status == "partial"
    assert "act_1001" in outcome.message
    assert "META_THROTTLE_BLOCK" in outcome.message
    assert "CRONKEEPER_RUN_BUDGET" in outcome.message
