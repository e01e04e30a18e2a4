"""Raw answer bytes through the decoder and the parsers: a PayloadError or records, nothing else.

``tests/sources`` fuzzes the parsers with already-decoded JSON values; this adds the step in
front, the one every client runs: ``decode_json`` on whatever bytes arrived (truncated JSON,
binary noise, JSON nested deeper than Python's recursion limit).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cronkeeper.errors import PayloadError
from cronkeeper.sources import (
    NotionProps,
    parse_event_counts,
    parse_insights_page,
    parse_query_page,
)
from cronkeeper.sources._payload import decode_json
from tests.sources.test_source_parsers_fuzz import JSON

DAY = date(2025, 1, 14)


def encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


BODIES = (
    JSON.map(encoded)
    | st.tuples(JSON.map(encoded), st.integers(min_value=0)).map(lambda t: t[0][: t[1]])
    | st.binary(max_size=200)
)


def failures(body: bytes) -> list[str]:
    """Decode ``body`` and run the three parsers on it, as the clients do; their PayloadErrors.

    Any other exception escapes and fails the test.
    """
    try:
        payload = decode_json(httpx.Response(200, content=body), "unit")
    except PayloadError as exc:
        return [str(exc)]
    messages: list[str] = []
    for parse in (
        lambda: parse_insights_page(payload, ad_account_id="1", conversion_action_types=["lead"]),
        lambda: parse_event_counts(payload, project_id="7", events=["a"], day=DAY),
        lambda: parse_query_page(payload, NotionProps()),
    ):
        try:
            parse()
        except PayloadError as exc:
            messages.append(str(exc))
    return messages


@settings(max_examples=300, deadline=None, derandomize=True)
@given(BODIES)
@example(b"")
@example(b"\xff\xfe\x00")
@example(b'{"data": [{"date_start": "2025-01-14", "spend": "1' + b"9" * 5000 + b'"}]}')
@example(b"1" * 5000)  # an integer past Python's digit limit
def test_any_body_is_records_or_a_payload_error(body: bytes) -> None:
    assert all(message.strip() for message in failures(body))


@pytest.mark.parametrize("opening", [b"[", b'{"data":'], ids=["array", "object"])
def test_json_nested_past_the_recursion_limit_is_a_payload_error(opening: bytes) -> None:
    with pytest.raises(PayloadError, match=r"^unit: .*nested too deeply"):
        decode_json(httpx.Response(200, content=opening * 100_000), "unit")


def test_a_string_that_is_not_unicode_text_is_a_payload_error() -> None:
    """A lone surrogate is valid JSON but no UTF-8: rejected by the parser, not the database."""
    page = json.loads('{"data": [{"date_start": "2025-01-14", "account_currency": "\\ud800"}]}')
    with pytest.raises(PayloadError, match="account_currency"):
        parse_insights_page(page, ad_account_id="1", conversion_action_types=["lead"])
