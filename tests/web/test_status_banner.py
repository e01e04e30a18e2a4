"""One page, one truth (issue 22 point 4): a healthy banner still says which sources have
missing days; it once read "All 3 monitored jobs are healthy" above an ad account with 28 of 28
days missing."""

from __future__ import annotations

import httpx
import pytest

from cronkeeper.config import Settings
from cronkeeper.service import Service
from tests.conftest import make_settings
from tests.web.conftest import login


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        timezone="Asia/Seoul",
        meta_ad_account_ids="120000000000001",
        monitored_jobs="sync-notion",
    )


async def test_a_healthy_banner_names_the_sources_with_missing_days(
    service: Service, client: httpx.AsyncClient
) -> None:
    await service.prepare()
    run = await service.ledger.start_cron_run("sync-notion")
    await service.ledger.complete_cron_run(run, "success", 3, None)
    assert (await login(client)).status_code == 303
    page = (await client.get("/status")).text
    summary = page.split('id="summary"', 1)[1].split("</section>", 1)[0]
    assert 'class="summary warn"' in page
    assert "All 1 monitored jobs are healthy — but 1 source has missing days." in summary
    assert "act_120000000000001</a> missing 28 of 28 days" in summary


async def test_without_gaps_the_banner_is_plainly_healthy(
    database_url: str, service: Service, client: httpx.AsyncClient
) -> None:
    # No source configured: nothing can be missing.
    service.settings = make_settings(
        database_url, timezone="Asia/Seoul", monitored_jobs="sync-notion"
    )
    await service.prepare()
    run = await service.ledger.start_cron_run("sync-notion")
    await service.ledger.complete_cron_run(run, "success", 3, None)
    assert (await login(client)).status_code == 303
    page = (await client.get("/status")).text
    assert 'class="summary good"' in page
    assert "All 1 monitored jobs are healthy.</strong>" in page
    assert 'id="coverage-gaps"' not in page
