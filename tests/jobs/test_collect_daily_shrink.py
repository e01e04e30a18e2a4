"""Shrink on "too much data" (issue 18.3), against the Meta simulator over real HTTP.

The Ads Insights API error-code page
(https://developers.facebook.com/documentation/ads-commerce/marketing-api/insights/error-codes)
lists 100/1504018 and 2/1504038, "Request Timed Out: Your request timed out. Try a smaller
date range". Main retried code 2 over the same 28 days and failed 100 with "check the ad
account id and the fields"; now the range is split in halves, down to one day.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from cronkeeper.sandbox import MetaAccount, MetaSimulator
from cronkeeper.storage.schema import meta_daily_insights
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import DAY, META_TOKEN, Harness

pytestmark = pytest.mark.pooler


def _settings(sandbox: Sandbox, harness: Harness, sim: MetaSimulator) -> object:
    return harness.settings(
        meta_access_token=META_TOKEN,
        meta_api_base=sandbox.meta(sim),
        meta_ad_account_ids=("1001", "1002"),
        meta_lookback_days=28,
    )


def _ranges(sim: MetaSimulator, account: str) -> list[int]:
    """The length in days of each insights request of ``account``, in order."""
    out = []
    for record in sim.log.records_for(account):
        span = json.loads(record.query["time_range"])
        since, until = date.fromisoformat(span["since"]), date.fromisoformat(span["until"])
        out.append((until - since).days + 1)
    return out


@pytest.mark.parametrize("code", [100, 2], ids=["100-1504018", "2-1504038"])
async def test_a_timed_out_range_is_split_in_halves_until_meta_answers(
    sandbox: Sandbox, harness: Harness, code: int
) -> None:
    sim = MetaSimulator(
        [MetaAccount("1001", max_range_days=7, timeout_code=code), MetaAccount("1002")],
        access_token=META_TOKEN,
    )
    outcome = await harness.run("collect-daily", _settings(sandbox, harness, sim))  # type: ignore[arg-type]

    assert outcome.status == "success", outcome.message
    assert _ranges(sim, "1001") == [28, 14, 7, 7, 14, 7, 7]  # never the same range twice
    assert _ranges(sim, "1002") == [28, 28]  # one chain of two pages (25 rows a page)
    rows = [
        r for r in await harness.rows(meta_daily_insights, "date") if r["ad_account_id"] == "1001"
    ]
    first = DAY - timedelta(days=27)
    assert [r["date"] for r in rows] == [first + timedelta(days=i) for i in range(28)]
    assert [r["spend"] for r in rows] == [sim.expected("1001", r["date"]).spend for r in rows]


async def test_a_single_day_that_still_times_out_fails_the_unit_with_the_code(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = MetaSimulator(
        [MetaAccount("1001", max_range_days=0), MetaAccount("1002")], access_token=META_TOKEN
    )
    outcome = await harness.run("collect-daily", _settings(sandbox, harness, sim))  # type: ignore[arg-type]

    assert outcome.status == "partial"
    assert "act_1001" in outcome.message
    assert "100/1504018" in outcome.message
    assert "single day" in outcome.message
    assert _ranges(sim, "1001")[-1] == 1
    assert len(_ranges(sim, "1001")) == 6  # 28, 14, 7, 4, 2, 1: then it stops
    assert outcome.summary.records_count == 28  # 1002's days are stored

    assert outcome.error is None  # a skipped unit, not a failed run
    assert "timed out even for the single day" in outcome.message
