"""sync-notion against the Notion simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from cronkeeper.sandbox import Fault, NotionAccountPage, NotionSimulator
from cronkeeper.storage.schema import accounts
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import DATA_SOURCE, NOTION_TOKEN, Harness

INDUSTRIES = ("Retail", "SaaS", "Travel", None)


def page_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def page(n: int, ad: str | int | None = None, **kwargs: Any) -> NotionAccountPage:
    values: dict[str, Any] = {
        "name": f"Client {n}",
        "ad_account_id": ad if ad is not None else f"act_{5000 + n}",
        "industry": INDUSTRIES[n % 4],
        "page_id": page_id(n),
    }
    values.update(kwargs)
    return NotionAccountPage(**values)


def simulator(pages: list[NotionAccountPage], **kwargs: Any) -> NotionSimulator:
    return NotionSimulator(pages, data_source_id=DATA_SOURCE, token=NOTION_TOKEN, **kwargs)


def notion(sandbox: Sandbox, harness: Harness, sim: NotionSimulator) -> Any:
    return harness.settings(
        notion_token=NOTION_TOKEN,
        notion_data_source_id=DATA_SOURCE,
        notion_api_base=sandbox.notion(sim),
    )


async def by_id(harness: Harness) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in await harness.rows(accounts, "id")}


async def test_reads_every_page_of_a_large_registry_and_stores_each_account(
    sandbox: Sandbox, harness: Harness
) -> None:
    pages = [page(n, mixpanel_project_id=700 + n % 3 if n % 2 else None) for n in range(205)]
    sim = simulator(pages)
    outcome = await harness.run("sync-notion", notion(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count, outcome.message) == ("success", 205, "")
    assert [r.key for r in sim.log.records] == ["0", "100", "200"]
    assert sim.log.records[0].headers["notion-version"] == "2025-09-03"
    rows = await by_id(harness)
    assert len(rows) == 205
    assert rows[page_id(7)] == {
        "id": page_id(7),
        "name": "Client 7",
        "meta_ad_account_id": "5007",
        "mixpanel_project_id": "701",
        "industry": None,
        "active": True,
        "updated_at": harness.clock(),
    }
    assert rows[page_id(8)]["mixpanel_project_id"] is None
    assert rows[page_id(8)]["industry"] == "Retail"


async def test_a_number_ad_account_property_and_inactive_pages_are_stored(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(1, 5001), page(2, 5002, active=False)], ad_account_property="number")
    outcome = await harness.run("sync-notion", notion(sandbox, harness, sim))

    assert outcome.status == "success"
    rows = await by_id(harness)
    assert [(r["meta_ad_account_id"], r["active"]) for r in rows.values()] == [
        ("5001", True),
        ("5002", False),
    ]


async def test_a_page_without_a_usable_id_is_skipped_and_named(
    sandbox: Sandbox, harness: Harness
) -> None:
    pages = [page(1), page(2, "TBD", name="Juniper Labs"), page(3), page(4, "", name="Empty")]
    sim = simulator(pages)
    outcome = await harness.run("sync-notion", notion(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("partial", 2)
    assert outcome.message.splitlines()[0] == "skipped 2 of 4 pages:"
    assert f"- page {page_id(2)} (Juniper Labs): no usable Meta Ad Account ID ('TBD')" in (
        outcome.message
    )
    assert f"- page {page_id(4)} (Empty): no Meta Ad Account ID (empty)" in outcome.message
    assert sorted(await by_id(harness)) == [page_id(1), page_id(3)]


async def test_an_account_removed_from_notion_is_marked_inactive_not_deleted(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(1), page(2), page(3)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    first_sync = harness.clock()

    sim.set_pages([page(1), page(3)])
    later = harness.clock.advance(days=1)
    outcome = await harness.run("sync-notion", settings)

    assert (outcome.status, outcome.summary.records_count) == ("success", 2)
    rows = await by_id(harness)
    assert {k: (r["active"], r["updated_at"]) for k, r in rows.items()} == {
        page_id(1): (True, later),
        page_id(2): (False, later),
        page_id(3): (True, later),
    }

    harness.clock.advance(days=1)
    await harness.run("sync-notion", settings)  # stays inactive, untouched
    assert (await by_id(harness))[page_id(2)]["updated_at"] == later != first_sync


async def test_a_query_failing_midway_changes_nothing_and_is_an_error(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(n) for n in range(150)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    before = await by_id(harness)

    # The second page of the listing never comes: a sync from the first 100 pages alone
    # would deactivate the other 50 accounts.
    sim.always("100", Fault.status(502))
    harness.clock.advance(days=1)
    outcome = await harness.run("sync-notion", settings)

    assert (outcome.status, outcome.summary.records_count) == ("error", 0)
    assert "RetriesExhausted" in outcome.message
    assert NOTION_TOKEN not in outcome.message
    assert [r.key for r in sim.log.records[-3:]] == ["100", "100", "100"]
    assert await by_id(harness) == before


async def test_a_malformed_listing_changes_nothing(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator([page(1), page(2)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    before = await by_id(harness)

    sim.set_pages([page(1)])
    sim.script("0", Fault.malformed("shape"))
    outcome = await harness.run("sync-notion", settings)

    assert outcome.status == "error"
    assert "PayloadError" in outcome.message
    assert await by_id(harness) == before


async def test_an_empty_listing_is_refused_while_accounts_are_active(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(1), page(2)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    sim.set_pages([])
    outcome = await harness.run("sync-notion", settings)

    assert outcome.status == "error"
    assert "refusing to mark them all inactive" in outcome.message
    assert all(r["active"] for r in (await by_id(harness)).values())


async def test_two_pages_swapping_ad_accounts_are_both_updated(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(1, "111"), page(2, "222"), page(3, "333")])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    sim.set_pages([page(1, "222"), page(2, "333"), page(3, "111")])  # a rotation
    outcome = await harness.run("sync-notion", settings)

    assert (outcome.status, outcome.summary.records_count) == ("success", 3)
    rows = await by_id(harness)
    assert [rows[page_id(n)]["meta_ad_account_id"] for n in (1, 2, 3)] == ["222", "333", "111"]


async def test_a_recreated_page_takes_over_the_row_of_the_removed_one(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(1, "111"), page(2, "222")])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    sim.set_pages([page(9, "111", name="Client 1 (new page)"), page(2, "222")])
    outcome = await harness.run("sync-notion", settings)

    assert (outcome.status, outcome.summary.records_count) == ("success", 2)
    rows = await by_id(harness)
    assert sorted(rows) == [page_id(2), page_id(9)]
    assert (rows[page_id(9)]["meta_ad_account_id"], rows[page_id(9)]["active"]) == ("111", True)
    assert rows[page_id(9)]["name"] == "Client 1 (new page)"


async def test_an_id_held_by_an_unreadable_page_is_not_taken_and_the_holder_is_untouched(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(1, "111"), page(2, "222")])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    before = await by_id(harness)
    sim.set_pages([page(1, "n/a"), page(2, "111")])  # page 1's cell broken, page 2 claims 111
    outcome = await harness.run("sync-notion", settings)

    assert (outcome.status, outcome.summary.records_count) == ("error", 0)
    assert f"- page {page_id(1)} (Client 1): no usable Meta Ad Account ID ('n/a')" in (
        outcome.message
    )
    assert f"- page {page_id(2)} (Client 2): Meta ad account 111 is held by page {page_id(1)}" in (
        outcome.message
    )
    assert await by_id(harness) == before


async def test_a_duplicate_ad_account_in_notion_keeps_the_first_page(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(1, "111"), page(2, "act_111"), page(3, "333")])
    outcome = await harness.run("sync-notion", notion(sandbox, harness, sim))

    assert (outcome.status, outcome.summary.records_count) == ("partial", 2)
    assert f"- page {page_id(2)} (Client 2): duplicate Meta ad account id 111" in outcome.message
    assert (await by_id(harness))[page_id(1)]["meta_ad_account_id"] == "111"


async def test_resyncing_changes_no_row_count(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator([page(n) for n in range(30)] + [page(99, "TBD")])
    settings = notion(sandbox, harness, sim)
    first = await harness.run("sync-notion", settings)
    second = await harness.run("sync-notion", settings)

    assert (first.status, first.summary.records_count) == ("partial", 30)
    assert (second.status, second.summary.records_count) == ("partial", 30)
    assert await harness.count(accounts) == 30


async def test_missing_notion_configuration_is_an_error(sandbox: Sandbox, harness: Harness) -> None:
    outcome = await harness.run("sync-notion", harness.settings(notion_token=NOTION_TOKEN))

    assert outcome.status == "error"
    assert "NOTION_DATA_SOURCE_ID" in outcome.message


# -- the registry never empties by accident (issue 19) --------------------------------------


async def test_one_unusable_page_deactivates_nothing_and_says_how_many_pages_were_unread(
    sandbox: Sandbox, harness: Harness
) -> None:
    # Issue 19: a listing holding one unusable page and none of the 8 accounts got past the
    # empty-listing guard, and the run that ended ``error`` deactivated 8 of 8.
    sim = simulator([page(n) for n in range(8)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    before = await by_id(harness)

    sim.set_pages([page(99, "n/a")])
    harness.clock.advance(days=1)
    outcome = await harness.run("sync-notion", settings)

    assert outcome.status == "error"
    assert await by_id(harness) == before
    assert "could not read 1 page" in outcome.message
    assert "deactivated none of the 8 active accounts missing from the listing" in (outcome.message)


async def test_a_partial_listing_stores_what_it_read_but_deactivates_nothing(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(n) for n in range(10)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)

    sim.set_pages([page(n) for n in range(9)] + [page(50, "TBD")])  # page 9 gone, one unusable
    outcome = await harness.run("sync-notion", settings)

    assert (outcome.status, outcome.summary.records_count) == ("partial", 9)
    assert (await by_id(harness))[page_id(9)]["active"] is True
    assert "deactivated none of the 1 active account missing from the listing" in (outcome.message)


async def test_deactivating_more_than_the_limit_is_refused_unless_forced(
    sandbox: Sandbox, harness: Harness
) -> None:
    sim = simulator([page(n) for n in range(10)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    before = await by_id(harness)

    sim.set_pages([page(n) for n in range(7)])  # 3 of 10 gone: above 20 %
    refused = await harness.run("sync-notion", settings)

    assert refused.status == "error"
    assert "refusing to deactivate 3 of 10 active accounts" in refused.message
    assert "NOTION_MAX_DEACTIVATE" in refused.message and "--force" in refused.message
    assert await by_id(harness) == before

    # What `cronkeeper run sync-notion --force` does (tests/cli: the flag sets this).
    forced = await harness.run(
        "sync-notion", settings.model_copy(update={"notion_max_deactivate": 1.0})
    )
    assert forced.status == "success"
    assert [r["active"] for r in (await by_id(harness)).values()].count(False) == 3


async def test_the_deactivation_limit_is_configurable(sandbox: Sandbox, harness: Harness) -> None:
    sim = simulator([page(n) for n in range(10)])
    settings = notion(sandbox, harness, sim)
    await harness.run("sync-notion", settings)
    sim.set_pages([page(n) for n in range(7)])

    loose = settings.model_copy(update={"notion_max_deactivate": 0.3})
    outcome = await harness.run("sync-notion", loose)

    assert outcome.status == "success"
    assert [r["active"] for r in (await by_id(harness)).values()].count(False) == 3
