"""The pure decisions of sync-notion: which rows move, are taken over, skipped, deactivated."""

from __future__ import annotations

import pytest

from cronkeeper.jobs.sync_notion import AccountRow, deactivation_limit, plan_sync
from cronkeeper.sources import NotionAccount, NotionListing, SkippedPage


def account(page: str, ad: str, *, active: bool = True) -> NotionAccount:
    return NotionAccount(page, f"Name {page}", ad, None, None, active)


def row(page: str, ad: str, *, active: bool = True) -> AccountRow:
    return AccountRow(page, ad, active)


def test_new_pages_are_stored_and_absent_rows_deactivated() -> None:
    listing = NotionListing((account("a", "1"), account("b", "2")))
    plan = plan_sync(listing, [row("a", "1"), row("gone", "9"), row("old", "8", active=False)])

    assert [a.page_id for a in plan.store] == ["a", "b"]
    assert (plan.moving, plan.takeovers, plan.skipped) == ([], {}, [])
    assert plan.deactivate == ["gone"]  # "old" is inactive already: left alone


def test_a_rotation_of_ids_moves_every_row_first() -> None:
    listing = NotionListing((account("a", "2"), account("b", "3"), account("c", "1")))
    plan = plan_sync(listing, [row("a", "1"), row("b", "2"), row("c", "3")])

    assert sorted(plan.moving) == ["a", "b", "c"]
    assert len(plan.store) == 3
    assert plan.skipped == []


def test_a_removed_pages_id_is_taken_over_by_a_page_without_a_row() -> None:
    listing = NotionListing((account("new", "1"),))
    plan = plan_sync(listing, [row("old", "1")])

    assert plan.takeovers == {"old": "new"}
    assert plan.deactivate == []
    assert [a.page_id for a in plan.store] == ["new"]


def test_a_page_with_its_own_row_cannot_take_a_removed_pages_id() -> None:
    listing = NotionListing((account("b", "1"),))
    plan = plan_sync(listing, [row("old", "1"), row("b", "2")])

    assert plan.store == []
    ((skipped, reason),) = plan.skipped
    assert skipped.page_id == "b"
    assert "held by page old, which is no longer in Notion" in reason
    assert "delete the row of page old" in reason
    # A sync that could not store a page ends partial: it deactivates nothing (issue 19).
    assert (plan.deactivate, plan.kept_active) == ([], ["old"])


def test_a_blocked_page_blocks_the_page_waiting_for_its_id() -> None:
    """b cannot take 3 (held by unreadable c), so b keeps 2, so a cannot take 2."""
    listing = NotionListing(
        (account("a", "2"), account("b", "3")),
        (SkippedPage("c", "C", "no usable Meta Ad Account ID ('x')"),),
    )
    plan = plan_sync(listing, [row("a", "1"), row("b", "2"), row("c", "3")])

    assert plan.store == []
    reasons = {a.page_id: reason for a, reason in plan.skipped}
    assert "held by page c, which this sync could not read" in reasons["b"]
    assert "still held by page b (Name b), which was skipped in this sync" in reasons["a"]
    assert plan.moving == []
    assert plan.deactivate == []  # c is in the listing: unreadable, not gone


def test_an_unreadable_page_keeps_every_absent_account_active() -> None:
    listing = NotionListing((), (SkippedPage("x", None, "no usable id"),))
    plan = plan_sync(listing, [row(str(n), str(n)) for n in range(8)])

    assert plan.deactivate == []
    assert plan.kept_active == [str(n) for n in range(8)]


@pytest.mark.parametrize(
    ("active", "share", "limit"),
    [(10, 0.2, 2), (3, 0.2, 1), (1, 0.2, 1), (100, 0.2, 20), (10, 0.0, 0), (10, 1.0, 10)],
)
def test_the_deactivation_limit_is_a_share_of_active_accounts_but_at_least_one(
    active: int, share: float, limit: int
) -> None:
    assert deactivation_limit(active, share) == limit
