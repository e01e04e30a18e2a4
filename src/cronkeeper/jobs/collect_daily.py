"""collect-daily: Meta insights of each ad account's last days, one row per account and day
(unit: one ad account).

Accounts come from ``META_AD_ACCOUNT_IDS`` when it is set, else from the active rows of
``accounts`` (filled by sync-notion). Each account is one unit: its details, one request chain
and one transaction; at most ``CRONKEEPER_CONCURRENCY`` accounts have a request in flight, and
an account waiting out a 429 or a retry wait gives its slot to the next one.

Which days: Meta counts an account's day in the account's own ``timezone_name``, read from
``GET /act_{id}`` and kept in ``meta_account_details`` (read again once per calendar day of the
account's zone: the first run after its midnight refreshes them, whatever the start times). A run
without a date collects up to each account's own yesterday; ``--date D`` means D in each
account's zone, but a day that has not ended there yet is left for a later run. Meta revises
a day's figures for 28 days, so every run re-reads the last ``META_LOOKBACK_DAYS`` days up to
that day in one request chain (``time_increment=1``) and overwrites them: stored conversions
are corrected by the following runs.

The details call is an API call like any other (issue 17): paced on the account's quota,
retried, and set aside when Meta asks for a long wait. When it still fails, the stored details
are used if there are any (the run's message says so); only an account never read is skipped.

An account that still fails after its retries (HTTP, throttling, an expired token, a
malformed page, unreadable details) is skipped and named in the run's message; nothing of it
is written, and the other accounts carry on. A write that fails is a skipped account too. A
day Meta has no row for (no delivery) is recorded as such in ``meta_no_delivery_days``
(coverage: ``no delivery``, not ``missing``), and a stored row of such a day, which Meta
dropped inside the restatement window, is removed; the run's message says how many. A row
without spend, impressions or clicks, or a day answered twice with different figures, fails
the account (its stored rows stay; :mod:`cronkeeper.sources.meta`), and the run's message
says how many stored rows it changed, since a wrong answer leaves the record count as it was
(issue 19).

Inactive accounts (``account_status`` disabled, closed, …; see
:data:`~cronkeeper.sources.meta.INACTIVE_ACCOUNT_STATUSES`) are still read while Meta answers,
so their history stays; when they fail, they are reported as inactive, which does not make the
run ``partial``.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cronkeeper.errors import LeaseLost, WaitTooLong
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
from cronkeeper.reportday import local_day
from cronkeeper.sources import AccountDetails, MetaClient, MetaInsight
from cronkeeper.sources.meta import DETAIL_FIELDS
from cronkeeper.storage.schema import (
    accounts,
    meta_account_details,
    meta_daily_insights,
    meta_no_delivery_days,
)
from cronkeeper.storage.upsert import upsert

__all__ = [
    "ad_accounts",
    "details_due",
    "dropped_note",
    "insight_row",
    "no_delivery_days",
    "record_no_delivery",
    "run",
    "stored_details",
]

_FIGURES = {
    "key": ("ad_account_id", "date"),
    "figures": ("spend", "impressions", "clicks", "reach", "conversions", "leads", "currency"),
}


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
                    AccountDetails(
                        r.ad_account_id, r.name, r.timezone_name, r.currency, r.account_status
                    ),
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
        "account_status": details.account_status,
    }


def details_due(details: AccountDetails, fetched_at: datetime, now: datetime) -> bool:
    """Whether stored details must be read again: once per calendar day of the account's zone.

    Not "older than 24 h": with start times drifting by minutes, a 24-hour age is crossed on
    about every other run. Details stored without a status (before it was read) are due too.
    """
    zone = details.zone
    return details.account_status is None or local_day(fetched_at, zone) != local_day(now, zone)


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


def no_delivery_days(since: date, until: date, answered: set[date]) -> list[date]:
    """The days of ``since`` … ``until`` Meta answered without a row: no delivery.

    At ``level=account`` with ``time_increment=1`` Meta sends one row per day with delivery
    and none for a day without (the Ads Insights API guide: a row carries the metrics of
    what was delivered; airbyte source-facebook-marketing reads the same daily rows and
    stores nothing for the absent days), so a day the answer lacks was asked and is empty.
    """
    return [
        d
        for d in (since + timedelta(days=i) for i in range((until - since).days + 1))
        if d not in answered
    ]


async def record_no_delivery(
    conn: AsyncConnection,
    account: str,
    empty: list[date],
    delivered: list[date],
    collected_at: datetime,
) -> int:
    """Record ``empty`` as collected with no delivery; returns how many stored insight rows
    of those days were removed (Meta dropped them inside the restatement window: the stored
    figures would otherwise stand for ever). Days with a row leave the no-delivery table."""
    table = meta_no_delivery_days
    removed = 0
    if empty:
        result = await conn.execute(
            delete(meta_daily_insights).where(
                meta_daily_insights.c.ad_account_id == account,
                meta_daily_insights.c.date.in_(empty),
            )
        )
        removed = max(result.rowcount or 0, 0)
        await upsert(
            conn,
            table,
            [{"ad_account_id": account, "date": d, "collected_at": collected_at} for d in empty],
        )
    if delivered:
        await conn.execute(
            delete(table).where(table.c.ad_account_id == account, table.c.date.in_(delivered))
        )
    return removed


def dropped_note(removed: int) -> str:
    """The run's line about stored rows Meta no longer answers."""
    plural = "s" if removed != 1 else ""
    return (
        f"removed {removed} stored row{plural} of days Meta now answers without a row"
        " (no delivery, inside the restatement window)"
    )


async def run(ctx: JobContext, day: date, run: RunTracker) -> None:
    slots = Slots(ctx.settings.concurrency)
    # An account waiting out a retry gives its slot to the next account meanwhile.
    http = dataclasses.replace(ctx.http, sleep=sleep_outside(slots, ctx.http.sleep))
    client = MetaClient.from_settings(http, ctx.settings)
    ids = await ad_accounts(ctx)
    known = await stored_details(ctx, ids)
    now = ctx.clock()
    changed: dict[str, int] = {}
    dropped: dict[str, int] = {}
    """Stored rows of days Meta now answers without a row (removed, per account)."""
    inactive: set[str] = set()
    """Accounts whose latest known status is inactive: their failures are not the run's."""
    fell_back: set[str] = set()
    """Accounts whose details could not be read this run: the stored ones are used."""
    read_now: dict[str, AccountDetails] = {}
    """Details read in this run (kept when the account is set aside and started again)."""

    async def details_of(account: str) -> tuple[AccountDetails, bool] | None:
        """The account's details and whether they were read now; ``None``: skipped."""
        if account in read_now:
            return read_now[account], True
        stored = known.get(account)
        if stored is not None and (
            account in fell_back or not details_due(stored[0], stored[1], ctx.clock())
        ):
            return stored[0], False
        try:
            read_now[account] = await client.account_details(account)
            return read_now[account], True
        except STOPS_SOURCE:
            raise  # the API refuses the pinned version: every account would fail the same
        except Exception as exc:
            if stored is None:
                if isinstance(exc, WaitTooLong):
                    raise  # set aside (or skipped past the budget) like an insights call
                run.skip(
                    f"act_{account}",
                    "could not read its time zone and currency (GET act_"
                    f"{account}?fields={DETAIL_FIELDS}), so its days are unknown: "
                    f"{describe_failure(exc)}",
                )
                return None
            reason = describe_failure(exc)
        fell_back.add(account)
        read = local_day(stored[1], stored[0].zone).isoformat()
        run.note_unit(
            f"act_{account}", f"details not read again, the stored ones of {read} used: {reason}"
        )
        return stored[0], False

    async def collect(account: str) -> None:
        found = await details_of(account)
        if found is None:
            return
        details, is_fresh = found
        fresh = details if is_fresh else None
        if details.inactive:
            inactive.add(account)
        else:
            inactive.discard(account)
        end = source_day(now, details.zone, day, explicit=ctx.explicit_day)
        since, until = lookback(end, ctx.settings.meta_lookback_days)
        try:
            insights = await client.insights(account, since, until)
        except (WaitTooLong, *STOPS_SOURCE):
            raise  # set aside (the details read are kept for its next start), or stop
        except Exception:
            if fresh is not None:  # keep what Meta said (status, zone) of an account failing
                await keep_details(fresh)
            raise
        collected_at = ctx.clock()
        rows = [insight_row(i, collected_at, details.currency) for i in insights]
        empty = no_delivery_days(since, until, {i.date for i in insights})
        try:
            async with ctx.writing() as conn:
                rewritten = await changed_rows(conn, meta_daily_insights, rows, **_FIGURES)
                written = await upsert(conn, meta_daily_insights, rows)
                dropped[account] = await record_no_delivery(
                    conn, account, empty, [i.date for i in insights], collected_at
                )
                if fresh is not None:
                    await upsert(conn, meta_account_details, [details_row(fresh, collected_at)])
        except LeaseLost:
            raise  # another run holds the job now: this run stops (for_each's STOPS_SOURCE)
        except Exception as exc:
            raise storage_error("fetched, but could not store the rows", exc) from exc
        changed[account] = rewritten
        run.stored(written)

    async def keep_details(details: AccountDetails) -> None:
        """Store fresh details of an account whose insights failed (best effort: the insights
        failure is what the run reports), so that its status is known and not re-read."""
        try:
            async with ctx.writing() as conn:
                await upsert(conn, meta_account_details, [details_row(details, ctx.clock())])
        except Exception:  # noqa: S110 - the account is skipped for its own failure anyway
            pass

    def failed(account: str, exc: Exception) -> None:
        run.skip(f"act_{account}", describe_failure(exc), inactive=account in inactive)

    await for_each(ids, collect, limit=slots, on_error=failed, defer=deferral(ctx))
    if any(changed.values()):
        run.note(rewrote_note(sum(changed.values()), "stored row", "Meta"))
    if any(dropped.values()):
        run.note(dropped_note(sum(dropped.values())))
