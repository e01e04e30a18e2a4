"""sync-notion: the Notion account registry into ``accounts`` (unit: one Notion page).

The whole listing is read first and written in one transaction: it is one unit of
consistency, since an account is marked inactive because it is *absent* from the listing,
which only a complete listing can say. A query that fails (after its retries) or a malformed
response changes nothing and ends the run ``error``.

Decisions, for the operator:

- A page without a usable ad account id (or with a duplicate one) is skipped and named; the
  run is ``partial``. Its existing row, if any, is left exactly as it was: neither updated nor
  deactivated, because a typo in Notion must not stop the collection of a live account.
- A row whose page is no longer in the listing is marked ``active = false``, never deleted.
- An ad account id can move between pages. If another *listed* page held it, that page is
  moving to another id in the same sync and both rows are updated (swaps included). If the
  holder is a page that is gone from Notion (the page was re-created), the new page takes the
  row over: the row's id becomes the new page id, so the ad account keeps being collected.
  When the holder cannot give the id up (its page was skipped, or the new page already has a
  row of its own), the new page is skipped with a reason that says which page holds the id.
- An empty listing while the table has active accounts is refused (``error``) instead of
  deactivating every account: a registry does not empty itself overnight. Untick ``Active``
  to retire accounts.
- Accounts are deactivated only from a complete listing of a run that ends ``success``: when
  any page could not be read or stored, nothing is deactivated (an unreadable page may be the
  only sign that the listing is not the registry), and the message says how many pages were
  unread and how many absent accounts were kept active.
- Deactivating more than ``NOTION_MAX_DEACTIVATE`` (default 20 %, at least one account) of
  the active accounts at once is refused: the whole sync ends ``error`` and writes nothing,
  until someone looks and runs ``cronkeeper run sync-notion --force``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cronkeeper.errors import CronkeeperError, PayloadError
from cronkeeper.jobs._common import storage_error
from cronkeeper.jobs.base import JobContext
from cronkeeper.ledger import RunTracker
from cronkeeper.sources import NotionAccount, NotionClient, NotionListing
from cronkeeper.storage.schema import accounts
from cronkeeper.storage.upsert import upsert

__all__ = [
    "MOVING_PREFIX",
    "AccountRow",
    "DeactivationRefused",
    "SyncPlan",
    "deactivation_limit",
    "page_label",
    "plan_sync",
    "run",
]

MOVING_PREFIX = "moving:"
"""Marks an ad account id in the middle of a move, inside the transaction only (never digits,
so it cannot collide with a real id)."""


class DeactivationRefused(CronkeeperError):
    """A sync would deactivate more accounts at once than ``NOTION_MAX_DEACTIVATE`` allows."""


def deactivation_limit(active: int, share: float) -> int:
    """How many of ``active`` accounts one sync may deactivate: ``share`` of them, rounded
    down, but at least one (retiring a single client is never an accident) unless ``share``
    is 0."""
    if share <= 0:
        return 0
    return max(1, math.floor(active * share + 1e-9))


@dataclass(frozen=True)
class AccountRow:
    """The part of an ``accounts`` row a sync decides on."""

    id: str
    meta_ad_account_id: str
    active: bool


@dataclass
class SyncPlan:
    """What one sync does to the table, decided before any write."""

    store: list[NotionAccount] = field(default_factory=list)
    skipped: list[tuple[NotionAccount, str]] = field(default_factory=list)
    moving: list[str] = field(default_factory=list)
    """Listed page ids whose row changes ad account id (freed first, so swaps work)."""
    takeovers: dict[str, str] = field(default_factory=dict)
    """Old page id → new page id: rows of removed pages whose ad account moved to a new page."""
    deactivate: list[str] = field(default_factory=list)
    kept_active: list[str] = field(default_factory=list)
    """Active rows absent from the listing that this sync may not deactivate: it is not
    complete (a page could not be read or stored)."""


def page_label(page_id: str, name: str | None) -> str:
    return f"page {page_id} ({name})" if name else f"page {page_id}"


def plan_sync(listing: NotionListing, existing: list[AccountRow]) -> SyncPlan:
    """Decide every write of a sync from the listing and the table's current rows (pure)."""
    rows = {r.id: r for r in existing}
    holder = {r.meta_ad_account_id: r.id for r in existing}
    listed = {a.page_id: a for a in listing.accounts}
    unreadable = {s.page_id for s in listing.skipped}
    plan = SyncPlan()
    blocked: dict[str, str] = {}  # page id → why it cannot be stored

    # A page may depend on another listed page giving its id up, which may itself be blocked:
    # repeat until nothing changes (each round blocks at least one page, or ends).
    changed = True
    while changed:
        changed = False
        for account in listing.accounts:
            if account.page_id in blocked:
                continue
            reason = _blocker(account, holder, rows, listed, unreadable, blocked)
            if reason is not None:
                blocked[account.page_id] = reason
                changed = True

    for account in listing.accounts:
        if account.page_id in blocked:
            plan.skipped.append((account, blocked[account.page_id]))
            continue
        plan.store.append(account)
        owner = holder.get(account.meta_ad_account_id)
        if owner is not None and owner != account.page_id and owner not in listed:
            plan.takeovers[owner] = account.page_id
        current = rows.get(account.page_id)
        if current is not None and current.meta_ad_account_id != account.meta_ad_account_id:
            plan.moving.append(account.page_id)
    seen = set(listed) | unreadable
    absent = sorted(
        r.id for r in existing if r.active and r.id not in seen and r.id not in plan.takeovers
    )
    if unreadable or plan.skipped:
        plan.kept_active = absent  # only a run that ends ``success`` may deactivate
    else:
        plan.deactivate = absent
    return plan


def _blocker(
    account: NotionAccount,
    holder: dict[str, str],
    rows: dict[str, AccountRow],
    listed: dict[str, NotionAccount],
    unreadable: set[str],
    blocked: dict[str, str],
) -> str | None:
    ad = account.meta_ad_account_id
    owner = holder.get(ad)
    if owner is None or owner == account.page_id:
        return None
    if owner in listed:
        if owner in blocked:
            return (
                f"Meta ad account {ad} is still held by {page_label(owner, listed[owner].name)},"
                " which was skipped in this sync and keeps it; fix that page first"
            )
        return None  # the holder moves to another id in this same sync
    if owner in unreadable:
        return (
            f"Meta ad account {ad} is held by page {owner}, which this sync could not read;"
            " fix that page (or remove the id from it) first"
        )
    if account.page_id in rows:
        return (
            f"Meta ad account {ad} is still held by page {owner}, which is no longer in Notion,"
            " and this page already has a row of its own: delete the row of page"
            f" {owner} from accounts to let this page take the id over"
        )
    return None  # a removed page's row: taken over


async def _existing(conn: AsyncConnection) -> list[AccountRow]:
    result = await conn.execute(
        select(accounts.c.id, accounts.c.meta_ad_account_id, accounts.c.active)
    )
    return [AccountRow(r.id, r.meta_ad_account_id, bool(r.active)) for r in result]


async def _apply(
    conn: AsyncConnection, listing: NotionListing, now: datetime, max_share: float
) -> SyncPlan:
    existing = await _existing(conn)
    active = sum(1 for r in existing if r.active)
    if not listing.accounts and not listing.skipped and active:
        raise PayloadError(
            f"the Notion data source returned no pages while {active} accounts are active;"
            " refusing to mark them all inactive. Check NOTION_DATA_SOURCE_ID and that the"
            " pages are shared with the integration; to retire accounts, untick Active"
        )
    plan = plan_sync(listing, existing)
    if len(plan.deactivate) > deactivation_limit(active, max_share):
        raise DeactivationRefused(
            f"refusing to deactivate {len(plan.deactivate)} of {active} active accounts at once"
            f" (NOTION_MAX_DEACTIVATE allows {max_share:.0%}); nothing was written. Check that"
            " the pages are still shared with the integration, then run"
            " `cronkeeper run sync-notion --force` if they were really removed"
        )
    if plan.moving:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id.in_(plan.moving))
            .values(meta_ad_account_id=literal(MOVING_PREFIX) + accounts.c.id)
        )
    for old, new in plan.takeovers.items():
        await conn.execute(update(accounts).where(accounts.c.id == old).values(id=new))
    await upsert(
        conn,
        accounts,
        [
            {
                "id": a.page_id,
                "name": a.name,
                "meta_ad_account_id": a.meta_ad_account_id,
                "mixpanel_project_id": a.mixpanel_project_id,
                "industry": a.industry,
                "active": a.active,
                "updated_at": now,
            }
            for a in plan.store
        ],
    )
    if plan.deactivate:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id.in_(plan.deactivate))
            .values(active=False, updated_at=now)
        )
    return plan


async def run(ctx: JobContext, day: date, run: RunTracker) -> None:
    """Read every page of the registry, then write it in one transaction.

    ``day`` is not used: the registry has no date, but every job takes one.
    """
    listing = await NotionClient.from_settings(ctx.http, ctx.settings).query_all()
    try:
        async with ctx.writing() as conn:
            plan = await _apply(conn, listing, ctx.clock(), ctx.settings.notion_max_deactivate)
    except CronkeeperError:
        raise
    except Exception as exc:
        raise storage_error("could not write the account registry", exc) from exc
    for _ in plan.store:
        run.stored(1)
    for page in listing.skipped:
        run.skip(page_label(page.page_id, page.name), page.reason)
    for account, reason in plan.skipped:
        run.skip(page_label(account.page_id, account.name or None), reason)
    if plan.kept_active:
        run.note(_kept_active_note(len(listing.skipped), len(plan.skipped), len(plan.kept_active)))


def _kept_active_note(unread: int, unstored: int, kept: int) -> str:
    pages = [
        f"could not read {unread} page{'s' if unread != 1 else ''}" if unread else "",
        f"could not store {unstored} page{'s' if unstored != 1 else ''}" if unstored else "",
    ]
    accounts_ = f"{kept} active account{'s' if kept != 1 else ''}"
    return (
        f"{' and '.join(p for p in pages if p)}, so the listing is not complete: deactivated"
        f" none of the {accounts_} missing from the listing (they stay active until a sync"
        " reads every page)"
    )
