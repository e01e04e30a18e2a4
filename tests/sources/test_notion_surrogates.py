"""A Notion page whose text is a lone surrogate (valid JSON, not storable) is skipped by name."""

from __future__ import annotations

import json

from cronkeeper.sources.notion import NotionProps, parse_query_page


def test_a_page_with_unstorable_text_is_skipped_not_stored() -> None:
    payload = json.loads(
        '{"object": "list", "has_more": false, "next_cursor": null, "results": ['
        '{"object": "page", "id": "p1", "properties": {'
        '"Name": {"type": "title", "title": [{"plain_text": "Acme"}]},'
        '"Meta Ad Account ID": {"type": "rich_text", "rich_text": [{"plain_text": "123"}]},'
        '"Industry": {"type": "select", "select": {"name": "Re\\ud800tail"}}}}]}'
    )
    accounts, skipped, cursor = parse_query_page(payload, NotionProps())
    assert accounts == []
    assert cursor is None
    assert [s.page_id for s in skipped] == ["p1"]
    assert "not valid Unicode text" in skipped[0].reason
    assert "Industry" in skipped[0].reason
