"""collect-daily: Meta insights of each ad account's last days, one row per account and day
(unit: one ad account).

Accounts come from ``META_AD_ACCOUNT_IDS`` when it is set, else from the active rows of
``accounts`` (filled by sync-notion). Each account is one unit: its details, one request chain
and one transaction; at most ``CRONKEEPER_CONCURRENCY`` accounts have a request in flight, and
an account waiting out a 429 or a retry wait gives its slot to the next one.

Which days: Meta counts an account's day in the account's own ``timezone_name``, read from
``GET /act_{id}`` and kept in ``meta_account_details`` (read again at most once a day). A run
without a date collects up to each account's own yesterday; ``--date D`` means D in each
account's zone, but a day that has not ended there yet is left for a later run. Meta revises
a day's figures for 28 days, so every run re-reads the last ``META_LOOKBACK_DAYS`` days up to
that day in one request chain (``time_increment=1``) and overwrites them: stored conversions
are corrected by the following runs.

An account that still fails after its retries (HTTP, throttling, an expired token, a
malformed page, unreadable details) is skipped and named in the run's message; nothing of it
is written, and the other accounts carry on. A write that fails is a skipped account too. A
day Meta has no row for (no delivery) is simply absent. A row without spend, impressions or
clicks, or a day answered twice with different figures, fails the account (its stored rows
stay; :mod:`cronkeeper.sources.meta`), and the run's message says how many stored rows it
changed, since a wrong answer leaves the record count as it was (issue 19).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

from sqlalchemy import select

from cronkeeper.errors import WaitTooLong
from cronkeeper.jobs._changes import changed_rows, rewrote_note
from cronkeeper.jobs._common import (
    STOPS_SOURCE,
    Slots,
    configured_or_active,
    deferral,
    describe_failure,
    for_each,
    sleep_outside,
    storage_error,
)
from cronkeeper.jobs.base import JobContext, lookback, source_day
from cronkeeper.ledger import RunTracker
from cronkeeper.sources import AccountDetails, MetaClient, MetaInsight
from cronkeeper.storage.schema import accounts, meta_account_details, meta_daily_insights
from cronkeeper.storage.upsert import upsert

__all__ = ["DETAILS_MAX_AGE", "ad_accounts", "insight_row", "run", "stored_details"]

_FIGURES = {
    "key": ("ad_account_id", "date"),
    "figures": ("spend", "impressions", "clicks", "reach", "conversions", "leads", "currency"),
}
DETAILS_MAX_AGE = timedelta(days=1)
"""Account details younger than this are used as stored; older ones are read again."""


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


async def stored_details(
    ctx: JobContext, ids: list[str]
) -> dict[str, tuple[AccountDetails, datetime]]:
    """The stored details of ``ids`` with when they were read (one query)."""
    table = meta_account_details
    try:
        async with ctx.engine.connect() as conn:
            result = await conn.execute(select(table).where(table.c.ad_account_id.in_(ids)))
            return {
                r.ad_account_id: (
                    AccountDetails(r.ad_account_id, r.name, r.timezone_name, r.currency),
                    r.fetched_at,
                )
                for r in result
            }
    except Exception as exc:
        raise storage_error("could not read the ad accounts' details", exc) from exc


def details_row(details: AccountDetails, fetched_at: datetime) -> dict[str, object]:
    return {
        "ad_account_id": details.ad_account_id,
        "name": details.name,
        "timezone_name": details.timezone_name,
        "currency": details.currency,
        "fetched_at": fetched_at,
    }


def insight_row(
    insight: MetaInsight, collected_at: datetime, currency: str | None = None
) -> dict[str, object]:
    """The ``meta_daily_insights`` row of one account-day (money stays Decimal)."""
    return {
        "ad_account_id": insight.ad_account_id,
        "date": insight.date,
        "spend": insight.spend,
        "impressions": insight.impressions,
        "clicks": insight.clicks,
        "reach": insight.reach,
        "conversions": insight.conversions,
        "leads": insight.leads,
        "currency": insight.currency or currency,
        "collected_at": collected_at,
    }


async def run(ctx: JobContext, day: date, run: RunTracker) -> None:
    slots = Slots(ctx.settings.concurrency)
    # An account waiting out a retry gives its slot to the next account meanwhile.
    http = dataclasses.replace(ctx.http, sleep=sleep_outside(slots, ctx.http.sleep))
    client = MetaClient.from_settings(http, ctx.settings)
    ids = await ad_accounts(ctx)
    known = await stored_details(ctx, ids)
    now = ctx.clock()
    changed: dict[str, int] = {}

    async def collect(account: str) -> None:
        stored = known.get(account)
        fresh: AccountDetails | None = None
        if stored is not None and now - stored[1] < DETAILS_MAX_AGE:
            details = stored[0]
        else:
            try:
                details = fresh = await client.account_details(account)
            except (WaitTooLong, *STOPS_SOURCE):
                raise  # set aside until the API's wait is over, or stop: as for insights
            except Exception as exc:
                run.skip(
                    f"act_{account}",
                    "could not read its time zone and currency (GET act_"
                    f"{account}?fields=name,timezone_name,currency), so its days are unknown: "
                    f"{describe_failure(exc)}",
                )
                return
        end = source_day(now, details.zone, day, explicit=ctx.explicit_day)
        since, until = lookback(end, ctx.settings.meta_lookback_days)
        insights = await client.insights(account, since, until)
        collected_at = ctx.clock()
        rows = [insight_row(i, collected_at, details.currency) for i in insights]
        try:
            async with ctx.engine.begin() as conn:
                rewritten = await changed_rows(conn, meta_daily_insights, rows, **_FIGURES)
                written = await upsert(conn, meta_daily_insights, rows)
                if fresh is not None:
                    await upsert(conn, meta_account_details, [details_row(fresh, collected_at)])
        except Exception as exc:
            raise storage_error("fetched, but could not store the rows", exc) from exc
        changed[account] = rewritten
        run.stored(written)

    def failed(account: str, exc: Exception) -> None:
        run.skip(f"act_{account}", describe_failure(exc))

    await for_each(ids, collect, limit=slots, on_error=failed, defer=deferral(ctx))
    if any(changed.values()):
        run.note(rewrote_note(sum(changed.values()), "stored row", "Meta"))
