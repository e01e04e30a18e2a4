"""collect-daily: yesterday's Meta insights, one row per ad account (unit: one ad account).

Accounts come from ``META_AD_ACCOUNT_IDS`` when it is set, else from the active rows of
``accounts`` (filled by sync-notion). Each account is one call chain (its pages and its
retries) and one transaction; at most ``CRONKEEPER_CONCURRENCY`` accounts have a request in
flight, and an account waiting out a 429 or a retry wait gives its slot to the next one.

An account that still fails after its retries (HTTP, throttling, an expired token, a
malformed page) is skipped and named in the run's message; nothing of it is written, and the
other accounts carry on. A write that fails is a skipped account too. An account for which
Meta has no row (no delivery that day) is stored with 0 records: there is nothing to write.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime

from cronkeeper.jobs._common import (
    Slots,
    configured_or_active,
    deferral,
    describe_failure,
    for_each,
    sleep_outside,
    storage_error,
)
from cronkeeper.jobs.base import JobContext
from cronkeeper.ledger import RunTracker
from cronkeeper.sources import MetaClient, MetaInsight
from cronkeeper.storage.schema import accounts, meta_daily_insights
from cronkeeper.storage.upsert import upsert

__all__ = ["ad_accounts", "insight_row", "run"]


async def ad_accounts(ctx: JobContext) -> list[str]:
    """The ad account ids (digits) to collect, sorted; ``ConfigError`` when there are none."""
    return await configured_or_active(
        ctx,
        ctx.settings.meta_ad_account_ids,
        accounts.c.meta_ad_account_id,
        what="the active accounts",
        none_message=(
            "no Meta ad account to collect: the accounts table has no active account and"
            " META_AD_ACCOUNT_IDS is not set; run sync-notion first or set META_AD_ACCOUNT_IDS"
        ),
    )


def insight_row(insight: MetaInsight, collected_at: datetime) -> dict[str, object]:
    """The ``meta_daily_insights`` row of one account-day (money stays Decimal)."""
    return {
        "ad_account_id": insight.ad_account_id,
        "date": insight.date,
        "spend": insight.spend,
        "impressions": insight.impressions,
        "clicks": insight.clicks,
        "reach": insight.reach,
        "conversions": insight.conversions,
        "currency": insight.currency,
        "collected_at": collected_at,
    }


async def run(ctx: JobContext, day: date, run: RunTracker) -> None:
    slots = Slots(ctx.settings.concurrency)
    # An account waiting out a retry gives its slot to the next account meanwhile.
    http = dataclasses.replace(ctx.http, sleep=sleep_outside(slots, ctx.http.sleep))
    client = MetaClient.from_settings(http, ctx.settings)
    ids = await ad_accounts(ctx)

    async def collect(account: str) -> None:
        insight = await client.daily_insights(account, day)
        if insight is None:
            run.stored(0)
            return
        try:
            async with ctx.engine.begin() as conn:
                written = await upsert(
                    conn, meta_daily_insights, [insight_row(insight, ctx.clock())]
                )
        except Exception as exc:
            raise storage_error("fetched, but could not store the row", exc) from exc
        run.stored(written)

    def failed(account: str, exc: Exception) -> None:
        run.skip(f"act_{account}", describe_failure(exc))

    await for_each(ids, collect, limit=slots, on_error=failed, defer=deferral(ctx))
