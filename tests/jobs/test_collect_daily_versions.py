"""collect-daily and Meta's version lifecycle (issue 18.1), against the simulator over HTTP.

Meta's Marketing API version table gives v24.0 an expiration date of November 10, 2026
(https://developers.facebook.com/documentation/ads-commerce/marketing-api/marketing-api-changelog/versions);
after it, every call answers #2635 "You are calling a deprecated version of the Ads API".
"""

from __future__ import annotations

from datetime import date

import pytest

from cronkeeper.errors import ApiVersionRefused, ConfigError
from cronkeeper.sandbox import MetaSimulator
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import META_TOKEN, Harness

pytestmark = pytest.mark.pooler

ACCOUNTS = tuple(str(1000 + i) for i in range(8))


def _settings(sandbox: Sandbox, harness: Harness, sim: MetaSimulator, version: str) -> object:
    return harness.settings(
        meta_access_token=META_TOKEN,
        meta_api_base=sandbox.meta(sim),
        meta_api_version=version,
        meta_ad_account_ids=ACCOUNTS,
        meta_lookback_days=1,
        concurrency=1,
    )


async def test_an_expired_version_fails_the_run_before_any_call(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = MetaSimulator(ACCOUNTS, access_token=META_TOKEN)
    outcome = await harness.run("collect-daily", _settings(sandbox, harness, sim, "v24.0"))  # type: ignore[arg-type]

    assert outcome.status == "error"
    assert isinstance(outcome.error, ConfigError)
    assert "v24.0 expired on 2026-11-10: upgrade META_API_VERSION" in outcome.message
    assert len(sim.log) == 0


async def test_2635_stops_the_whole_source_with_one_message(
    sandbox: Sandbox, harness: Harness
) -> None:
    # Meta retired v27.0 before our table knew (the simulator's table says so).
    sim = MetaSimulator(ACCOUNTS, access_token=META_TOKEN, versions={"v27.0": date(2026, 11, 1)})
    outcome = await harness.run("collect-daily", _settings(sandbox, harness, sim, "v27.0"))  # type: ignore[arg-type]

    assert outcome.status == "error"
    assert isinstance(outcome.error, ApiVersionRefused)
    assert "Meta error 2635" in outcome.message
    assert "upgrade META_API_VERSION" in outcome.message
    assert "act_1001" not in outcome.message  # not one line per account
    assert len(sim.log) == 1  # one refusal, not one per account, and never retried
    assert outcome.summary.records_count == 0
