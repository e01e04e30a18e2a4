"""Whatever JSON an API sends, a parser answers with records or a PayloadError, nothing else.

A ``KeyError`` or ``TypeError`` escaping a parser would crash the unit with a message nobody
can act on; these properties prove the parsers check every shape they rely on.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cronkeeper.errors import PayloadError
from cronkeeper.sources import (
    NotionAccount,
    NotionProps,
    SkippedPage,
    parse_event_counts,
    parse_insights_page,
    parse_query_page,
)

DAY = date(2025, 1, 14)
KEYS = st.sampled_from(
    [
        # Meta
        "data", "paging", "next", "spend", "impressions", "clicks", "reach", "actions",
        "action_type", "value", "account_currency", "date_start", "purchase",
        # Mixpanel
        "series", "values", "a", "b", DAY.isoformat(),
        # Notion
        "results", "has_more", "next_cursor", "id", "object", "properties", "type", "title",
        "rich_text", "plain_text", "number", "checkbox", "select", "name", "formula", "string",
        "Name", "Meta Ad Account ID", "Industry", "Active", "Mixpanel Project ID", "page",
        "request_status", "in_trash",
    ]
) | st.text(max_size=8)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", "12.34", "1000", "-1", "NaN", "act_123", "2025-01-14", "page", "x"])
    | st.text(max_size=12)
)
JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)


def _meta_shaped() -> st.SearchStrategy[Any]:
    row = st.fixed_dictionaries(
        {"date_start": st.sampled_from([DAY.isoformat(), "2025-13-01"]) | JSON},
        optional={
            "spend": JSON,
            "impressions": JSON,
            "actions": st.lists(
                st.fixed_dictionaries(
                    {"action_type": st.just("purchase") | JSON}, optional={"value": JSON}
                )
                | JSON,
                max_size=3,
            ),
            "account_currency": JSON,
        },
    )
    return st.fixed_dictionaries(
        {"data": st.lists(row | JSON, max_size=3)},
        optional={"paging": st.fixed_dictionaries({}, optional={"next": JSON}) | JSON},
    )


@settings(max_examples=300, deadline=None)
@given(JSON | _meta_shaped())
def test_meta_parser_raises_only_payload_error(payload: Any) -> None:
    try:
        rows, nxt = parse_insights_page(
            payload, ad_account_id="1", conversion_action_types=["purchase"]
        )
    except PayloadError:
        return
    assert all(r.spend >= 0 and r.impressions >= 0 for r in rows)
    assert nxt is None or nxt.startswith("http")


@settings(max_examples=300, deadline=None)
@given(
    JSON
    | st.fixed_dictionaries(
        {"data": st.fixed_dictionaries({"values": st.dictionaries(KEYS, JSON, max_size=3)})}
    )
)
def test_mixpanel_parser_raises_only_payload_error(payload: Any) -> None:
    try:
        counts = parse_event_counts(payload, project_id="7", events=["a", "b"], day=DAY)
    except PayloadError:
        return
    # One record per requested event present in the answer (absent ones: the job decides).
    values = payload["data"]["values"]
    assert [c.event for c in counts] == [e for e in ("a", "b") if values.get(e) is not None]
    assert all(isinstance(c.count, int) and c.count >= 0 for c in counts)


def _notion_shaped() -> st.SearchStrategy[Any]:
    prop = st.fixed_dictionaries(
        {"type": st.sampled_from(["title", "rich_text", "number", "select", "checkbox",
                                  "formula", "people"])},
        optional={k: JSON for k in ("title", "rich_text", "number", "select", "checkbox",
                                    "formula")},
    )  # fmt: skip
    page = st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=5)},
        optional={
            "object": st.just("page") | JSON,
            "properties": st.dictionaries(
                st.sampled_from(["Name", "Meta Ad Account ID", "Industry", "Active",
                                 "Mixpanel Project ID"]),
                prop | JSON,
            ) | JSON,
        },
    )  # fmt: skip
    return st.fixed_dictionaries(
        {"results": st.lists(page | JSON, max_size=3), "has_more": st.booleans() | JSON},
        optional={"next_cursor": JSON},
    )


@settings(max_examples=400, deadline=None)
@given(JSON | _notion_shaped())
def test_notion_parser_raises_only_payload_error(payload: Any) -> None:
    try:
        accounts, skipped, cursor = parse_query_page(payload, NotionProps())
    except PayloadError:
        return
    assert all(isinstance(a, NotionAccount) and a.meta_ad_account_id.isdigit() for a in accounts)
    assert all(isinstance(s, SkippedPage) and s.reason for s in skipped)
    assert cursor is None or (isinstance(cursor, str) and cursor)
