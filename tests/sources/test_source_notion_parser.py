"""parse_query_page: one Notion data-source query response in, accounts and skipped pages out."""

from __future__ import annotations

from typing import Any

import pytest

from cronkeeper.config import Settings
from cronkeeper.errors import PayloadError
from cronkeeper.sources import NotionAccount, NotionProps, SkippedPage, parse_query_page

PROPS = NotionProps()


def rich(text: str, kind: str = "rich_text") -> dict[str, Any]:
    return {
        "id": "abcd",
        "type": kind,
        kind: [
            {
                "type": "text",
                "text": {"content": text, "link": None},
                "annotations": {"bold": False, "color": "default"},
                "plain_text": text,
                "href": None,
            }
        ]
        if text
        else [],
    }


def number(value: Any) -> dict[str, Any]:
    return {"id": "n%3D", "type": "number", "number": value}


def select(name: str | None) -> dict[str, Any]:
    option = None if name is None else {"id": "x1", "name": name, "color": "blue"}
    return {"id": "s%3A", "type": "select", "select": option}


def checkbox(value: bool) -> dict[str, Any]:
    return {"id": "c%3B", "type": "checkbox", "checkbox": value}


def notion_page(
    page_id: str = "59833787-2cf9-4fdf-8782-e53db20768a5", **props: Any
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "Name": rich("Acme Shoes", "title"),
        "Meta Ad Account ID": rich("act_1234567890"),
        "Industry": select("Retail"),
        "Active": checkbox(True),
        "Mixpanel Project ID": number(3141592),
    }
    for key, value in props.items():
        name = key.replace("_", " ")
        if value is None:
            properties.pop(name, None)
        else:
            properties[name] = value
    return {
        "object": "page",
        "id": page_id,
        "created_time": "2025-01-02T03:04:00.000Z",
        "last_edited_time": "2025-01-10T09:00:00.000Z",
        "in_trash": False,
        "archived": False,
        "parent": {"type": "data_source_id", "data_source_id": "ds-1", "database_id": "db-1"},
        "properties": properties,
        "url": "https://www.notion.so/Acme-Shoes-598337872cf94fdf8782e53db20768a5",
    }


def response(*pages: Any, has_more: bool = False, cursor: str | None = None) -> dict[str, Any]:
    return {
        "object": "list",
        "results": list(pages),
        "next_cursor": cursor,
        "has_more": has_more,
        "type": "page_or_data_source",
        "page_or_data_source": {},
    }


def one(page: dict[str, Any], props: NotionProps = PROPS) -> NotionAccount | SkippedPage:
    accounts, skipped, _ = parse_query_page(response(page), props)
    assert len(accounts) + len(skipped) == 1
    return accounts[0] if accounts else skipped[0]


def test_a_complete_page_becomes_an_account() -> None:
    accounts, skipped, cursor = parse_query_page(response(notion_page()), PROPS)
    assert (skipped, cursor) == ([], None)
    assert accounts == [
        NotionAccount(
            page_id="59833787-2cf9-4fdf-8782-e53db20768a5",
            name="Acme Shoes",
            meta_ad_account_id="1234567890",
            mixpanel_project_id="3141592",
            industry="Retail",
            active=True,
        )
    ]


def test_the_next_cursor_is_returned_while_has_more_is_true() -> None:
    payload = response(notion_page(), has_more=True, cursor="c2f1b0a4-0b1e-4b53-a3c3-1f0e3c1d9a7b")
    assert parse_query_page(payload, PROPS)[2] == "c2f1b0a4-0b1e-4b53-a3c3-1f0e3c1d9a7b"


def test_a_stale_cursor_is_ignored_when_has_more_is_false() -> None:
    assert parse_query_page(response(has_more=False, cursor="zzz"), PROPS)[2] is None


@pytest.mark.parametrize(
    ("prop", "digits"),
    [
        (rich("1234567890"), "1234567890"),
        (rich(" act_ 1234 5678 "), "12345678"),
        (rich("ACT_42"), "42"),
        (rich("act_77", "title"), "77"),
        (number(1234567890123456), "1234567890123456"),
        (number(42.0), "42"),
        (select("act_555"), "555"),
        ({"id": "f", "type": "formula", "formula": {"type": "string", "string": "act_9"}}, "9"),
        ({"id": "f", "type": "formula", "formula": {"type": "number", "number": 8}}, "8"),
    ],
)
def test_ad_account_ids_are_read_from_every_plain_property_type(prop: Any, digits: str) -> None:
    account = one(notion_page(Meta_Ad_Account_ID=prop))
    assert isinstance(account, NotionAccount)
    assert account.meta_ad_account_id == digits


@pytest.mark.parametrize(
    ("prop", "reason"),
    [
        (rich("abc"), "no usable Meta Ad Account ID ('abc')"),
        (rich("act_12-34"), "no usable Meta Ad Account ID ('act_12-34')"),
        (rich(""), "no Meta Ad Account ID (empty)"),
        (number(None), "no Meta Ad Account ID (empty)"),
        (number(12.5), "expected a whole number, got 12.5"),
        (number(-5), "no usable Meta Ad Account ID (-5)"),
        (None, "no 'Meta Ad Account ID' property"),
        ({"id": "p", "type": "people", "people": []}, "unsupported property type 'people'"),
        ({"id": "p", "type": "rich_text"}, "no 'type' with a matching value"),
        ("act_1", "expected a property object"),
    ],
)
def test_a_page_without_a_usable_ad_account_id_is_skipped_with_a_reason(
    prop: Any, reason: str
) -> None:
    skipped = one(notion_page(Meta_Ad_Account_ID=prop))
    assert isinstance(skipped, SkippedPage)
    assert skipped.page_id == "59833787-2cf9-4fdf-8782-e53db20768a5"
    assert skipped.name == "Acme Shoes"
    assert reason in skipped.reason
    assert "Acme Shoes" in str(skipped)


def test_a_skipped_page_does_not_hide_the_others() -> None:
    good = notion_page("p-good")
    bad = notion_page("p-bad", Meta_Ad_Account_ID=rich("n/a"))
    accounts, skipped, _ = parse_query_page(response(bad, good), PROPS)
    assert [a.page_id for a in accounts] == ["p-good"]
    assert [s.page_id for s in skipped] == ["p-bad"]


def test_missing_active_property_means_active() -> None:
    account = one(notion_page(Active=None))
    assert isinstance(account, NotionAccount)
    assert account.active is True


def test_an_unticked_active_checkbox_means_inactive() -> None:
    account = one(notion_page(Active=checkbox(False)))
    assert isinstance(account, NotionAccount)
    assert account.active is False


def test_an_active_property_that_is_not_a_checkbox_skips_the_page() -> None:
    skipped = one(notion_page(Active=rich("yes")))
    assert isinstance(skipped, SkippedPage)
    assert "'Active': expected a checkbox" in skipped.reason


@pytest.mark.parametrize("industry", [None, select(None), rich("   ")])
def test_missing_or_empty_industry_is_none(industry: Any) -> None:
    page = notion_page()
    if industry is None:
        del page["properties"]["Industry"]
    else:
        page["properties"]["Industry"] = industry
    account = one(page)
    assert isinstance(account, NotionAccount)
    assert account.industry is None


@pytest.mark.parametrize(
    ("prop", "expected"),
    [(None, None), (number(None), None), (number(987.0), "987"), (rich("  55 "), "55")],
)
def test_mixpanel_project_id_is_optional_and_made_a_string(prop: Any, expected: Any) -> None:
    account = one(notion_page(Mixpanel_Project_ID=prop))
    assert isinstance(account, NotionAccount)
    assert account.mixpanel_project_id == expected


def test_an_unusable_mixpanel_project_id_skips_the_page() -> None:
    skipped = one(notion_page(Mixpanel_Project_ID=rich("my-project")))
    assert isinstance(skipped, SkippedPage)
    assert "no usable Mixpanel Project ID ('my-project')" in skipped.reason


def test_an_untitled_page_is_an_account_with_an_empty_name() -> None:
    account = one(notion_page(Name=rich("", "title")))
    assert isinstance(account, NotionAccount)
    assert account.name == ""


def test_a_page_without_properties_is_skipped_without_a_name() -> None:
    page = notion_page()
    del page["properties"]
    skipped = one(page)
    assert isinstance(skipped, SkippedPage)
    assert skipped.name is None
    assert "field 'properties'" in skipped.reason


def test_property_names_come_from_the_configuration() -> None:
    props = NotionProps.from_settings(
        Settings(NOTION_PROP_NAME="Client", NOTION_PROP_AD_ACCOUNT="광고 계정", _env_file=None)
    )
    page = notion_page()
    page["properties"]["Client"] = page["properties"].pop("Name")
    page["properties"]["광고 계정"] = page["properties"].pop("Meta Ad Account ID")
    account = one(page, props)
    assert isinstance(account, NotionAccount)
    assert (account.name, account.meta_ad_account_id) == ("Acme Shoes", "1234567890")


def test_trashed_pages_and_non_page_results_are_not_registry_rows() -> None:
    trashed = notion_page("p-trash")
    trashed["in_trash"] = True
    source = {"object": "data_source", "id": "ds-2"}
    assert parse_query_page(response(trashed, source), PROPS) == ([], [], None)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], "expected a JSON object"),
        ({"has_more": False}, "field 'results': expected a list, got null"),
        ({"results": {}, "has_more": False}, "field 'results'"),
        ({"results": []}, "field 'has_more': expected true or false, got null"),
        ({"results": [], "has_more": "no"}, "field 'has_more'"),
        ({"results": [], "has_more": True}, "has_more is true but the cursor is null"),
        ({"results": [], "has_more": True, "next_cursor": ""}, "has_more is true"),
        ({"results": ["page"], "has_more": False}, "results[0]: expected a page object"),
        ({"results": [{"object": "page"}], "has_more": False}, "with an 'id'"),
        (
            {
                "results": [],
                "has_more": False,
                "request_status": {
                    "type": "incomplete",
                    "incomplete_reason": "query_result_limit_reached",
                },
            },
            "cut the listing short ('query_result_limit_reached')",
        ),
    ],
)
def test_a_malformed_response_is_rejected_as_a_whole(payload: object, expected: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_query_page(payload, PROPS)
    assert str(info.value).startswith("Notion data source query: ")
    assert expected in str(info.value)
