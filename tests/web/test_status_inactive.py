"""The status page says how many accounts the latest run found inactive (issue 17.2)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger.models import Skipped, summarize
from tests.web.ledger_data import NOW, Row, insert_rows
from tests.web.test_status_page import articles


async def test_the_job_card_shows_the_inactive_accounts_of_the_latest_run(
    engine: AsyncEngine, signed_in: httpx.AsyncClient
) -> None:
    summary = summarize(
        records_count=56,
        units_stored=2,
        skipped=[Skipped(f"act_{i}", "closed", inactive=True) for i in range(3)],
        unit_label="ad accounts",
    )
    start = NOW - timedelta(hours=2)
    await insert_rows(
        engine,
        [
            Row(
                "collect-daily",
                start,
                start + timedelta(seconds=40),
                summary.status,
                56,
                summary.error_message,
            ),
        ],
    )
    html = (await signed_in.get("/status")).text
    card = articles(html)["collect-daily"]
    assert '<span class="inactive">3 inactive</span>' in card
    assert "inactive" not in articles(html)["collect-mixpanel"]
