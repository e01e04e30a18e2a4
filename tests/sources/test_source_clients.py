"""The three clients at the protocol edge: what they send, how they page, what they never leak.

``httpx.MockTransport`` answers in-process; the real-server round trip is in
``test_against_sandbox.py``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cronkeeper.errors import FetchError, PayloadError
from cronkeeper.http import HttpContext
from cronkeeper.sources import (
    MetaClient,
    MixpanelClient,
    MixpanelCount,
    NotionClient,
    NotionProps,
)
from cronkeeper.sources import meta as meta_module
from cronkeeper.sources import notion as notion_module

DAY = date(2025, 1, 14)
D = DAY.isoformat()
META_TOKEN = "EAAGm0PX4ZCpsBAKZCsecretTOKEN123"
MIXPANEL_SECRET = "mp-secret-0f9e8d7c6b5a"
NOTION_TOKEN = "ntn_51234567890abcdefSECRET"

Handler = Callable[[httpx.Request], httpx.Response]


async def _no_sleep(_: float) -> None:
    return None


class Recorder:
    """A MockTransport handler that keeps every request it answered."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def context(recorder: Recorder) -> HttpContext:
    return HttpContext(
        client=httpx.AsyncClient(transport=httpx.MockTransport(recorder)), sleep=_no_sleep
    )


# --- Meta ----------------------------------------------------------------------------------


def meta_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "spend": "10.50",
        "impressions": "1000",
        "clicks": "20",
        "reach": "900",
        "actions": [{"action_type": "purchase", "value": "2"}],
        "account_currency": "USD",
        "date_start": D,
        "date_stop": D,
    }
    row.update(overrides)
    return row


def meta_client(recorder: Recorder) -> MetaClient:
    return MetaClient(
        context(recorder),
        base="https://graph.test/",
        version="v27.0",
        access_token=META_TOKEN,
        conversion_action_types=("purchase", "lead"),
    )


def next_url(n: int) -> str:
    return f"https://graph.test/v27.0/act_42/insights?access_token={META_TOKEN}&after=c{n}"


def paged_meta(pages: list[list[dict[str, Any]]]) -> Handler:
    """Page i links to page i+1 by an absolute ``paging.next`` URL carrying the token."""

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        index = int(after[1:]) if after else 0
        body: dict[str, Any] = {"data": pages[index], "paging": {"cursors": {"after": "x"}}}
        if index + 1 < len(pages):
            body["paging"]["next"] = next_url(index + 1)
        return httpx.Response(200, json=body)

    return handler


async def test_meta_sends_the_documented_first_request() -> None:
    recorder = Recorder(paged_meta([[meta_row()]]))
    await meta_client(recorder).daily_insights("act_42", DAY)

    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == "/v27.0/act_42/insights"
    query = parse_qs(urlsplit(str(request.url)).query)
    assert query == {
        "level": ["account"],
        "time_range": [f'{{"since":"{D}","until":"{D}"}}'],
        "time_increment": ["1"],
        "fields": ["spend,impressions,clicks,reach,actions,account_currency,date_start,date_stop"],
        "use_unified_attribution_setting": ["true"],
        "access_token": [META_TOKEN],
    }


async def test_meta_follows_every_next_url_as_is_and_keeps_a_repeated_day_once() -> None:
    pages = [[meta_row()], [meta_row(account_currency=None)], [], [meta_row()]]
    recorder = Recorder(paged_meta(pages))

    insight = await meta_client(recorder).daily_insights("42", DAY)

    assert [str(r.url) for r in recorder.requests[1:]] == [next_url(1), next_url(2), next_url(3)]
    assert insight is not None
    assert insight.ad_account_id == "42"
    alone = await meta_client(Recorder(paged_meta([[meta_row()]]))).daily_insights("42", DAY)
    assert insight == alone
    assert insight.currency == "USD"


async def test_meta_refuses_a_day_sent_twice_with_different_figures() -> None:
    # Issue 19: the two rows used to be added, doubling the stored figures.
    pages = [[meta_row()], [meta_row(spend="1.25", impressions="10", clicks="1")]]
    with pytest.raises(PayloadError, match="two different rows for") as info:
        await meta_client(Recorder(paged_meta(pages))).daily_insights("42", DAY)
    assert META_TOKEN not in str(info.value)


async def test_meta_returns_none_when_the_account_had_no_activity() -> None:
    recorder = Recorder(lambda _: httpx.Response(200, json={"data": [], "paging": {}}))
    assert await meta_client(recorder).daily_insights("42", DAY) is None


async def test_meta_rejects_a_row_of_another_day() -> None:
    recorder = Recorder(paged_meta([[meta_row(date_start="2025-01-13")]]))
    with pytest.raises(PayloadError, match=r"Meta ad account 42: page 1: .*2025-01-13"):
        await meta_client(recorder).daily_insights("42", DAY)


async def test_meta_stops_a_paging_loop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [meta_row()], "paging": {"next": next_url(1)}})

    recorder = Recorder(handler)
    with pytest.raises(PayloadError, match="paging loop") as info:
        await meta_client(recorder).daily_insights("42", DAY)
    assert len(recorder.requests) == 2  # the repeat is caught before it is requested again
    assert META_TOKEN not in str(info.value)


async def test_meta_stops_an_endless_chain_of_new_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meta_module, "MAX_PAGES", 5)

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(recorder.requests)
        return httpx.Response(200, json={"data": [], "paging": {"next": next_url(n)}})

    recorder = Recorder(handler)
    with pytest.raises(PayloadError, match="more than 5 pages"):
        await meta_client(recorder).daily_insights("42", DAY)
    assert len(recorder.requests) == 5


async def test_meta_payload_errors_never_carry_the_token() -> None:
    # A hostile body that echoes the token where a number should be.
    recorder = Recorder(lambda _: httpx.Response(200, json={"data": [meta_row(spend=META_TOKEN)]}))
    with pytest.raises(PayloadError, match="field 'spend'") as info:
        await meta_client(recorder).daily_insights("42", DAY)
    assert META_TOKEN[:20] not in str(info.value)


async def test_meta_non_json_body_names_the_account_not_the_body() -> None:
    html = f"<html>proxy error for access_token={META_TOKEN}</html>"
    recorder = Recorder(
        lambda _: httpx.Response(200, text=html, headers={"content-type": "text/html"})
    )
    with pytest.raises(PayloadError, match="Meta ad account 42: the answer is not JSON") as info:
        await meta_client(recorder).daily_insights("42", DAY)
    assert META_TOKEN not in str(info.value)
    assert "text/html" in str(info.value)


async def test_meta_expired_token_is_a_fetch_error_without_the_token() -> None:
    body = {"error": {"message": "Session has expired", "type": "OAuthException", "code": 190}}
    recorder = Recorder(lambda _: httpx.Response(400, json=body))
    with pytest.raises(FetchError) as info:
        await meta_client(recorder).daily_insights("42", DAY)
    assert len(recorder.requests) == 1
    assert META_TOKEN not in str(info.value)


async def test_meta_refuses_an_ad_account_id_that_is_not_digits() -> None:
    recorder = Recorder(paged_meta([[]]))
    with pytest.raises(ValueError, match="digits"):
        await meta_client(recorder).daily_insights("act_12x", DAY)
    assert recorder.requests == []


# --- Mixpanel --------------------------------------------------------------------------------


def mixpanel_client(recorder: Recorder) -> MixpanelClient:
    return MixpanelClient(
        context(recorder),
        base="https://mixpanel.test/api/query/",
        service_account="cron.1a2b3c.mp-service-account",
        secret=MIXPANEL_SECRET,
    )


async def test_mixpanel_sends_basic_auth_and_the_documented_params() -> None:
    body = {"data": {"series": [D], "values": {"Sign Up": {D: 12}}}, "legend_size": 1}
    recorder = Recorder(lambda _: httpx.Response(200, json=body))

    counts = await mixpanel_client(recorder).event_counts("3141592", ["Sign Up", "구매"], DAY)

    (request,) = recorder.requests
    assert (request.method, request.url.host, request.url.path) == (
        "GET",
        "mixpanel.test",
        "/api/query/events",
    )
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"cron.1a2b3c.mp-service-account:{MIXPANEL_SECRET}"
    assert dict(request.url.params) == {
        "project_id": "3141592",
        "event": '["Sign Up","구매"]',
        "type": "general",
        "unit": "day",
        "from_date": D,
        "to_date": D,
    }
    # 구매 is absent from the answer: no record (collect-mixpanel decides what it means).
    assert counts == [MixpanelCount("3141592", "Sign Up", DAY, 12)]


async def test_mixpanel_without_events_sends_nothing() -> None:
    recorder = Recorder(lambda _: httpx.Response(500))
    assert await mixpanel_client(recorder).event_counts("1", [], DAY) == []
    assert recorder.requests == []


async def test_mixpanel_non_json_body_names_the_project() -> None:
    recorder = Recorder(lambda _: httpx.Response(200, text="Internal error"))
    with pytest.raises(PayloadError, match="Mixpanel project 77: the answer is not JSON"):
        await mixpanel_client(recorder).event_counts("77", ["a"], DAY)


async def test_mixpanel_payload_errors_never_carry_the_secret() -> None:
    body = {"data": {"values": {"a": {D: MIXPANEL_SECRET}}}}
    recorder = Recorder(lambda _: httpx.Response(200, json=body))
    with pytest.raises(PayloadError, match="Mixpanel project 77: event 'a'") as info:
        await mixpanel_client(recorder).event_counts("77", ["a"], DAY)
    assert MIXPANEL_SECRET not in str(info.value)


# --- Notion --------------------------------------------------------------------------------


def notion_page(page_id: str, account: str | int, name: str = "Acme") -> dict[str, Any]:
    id_prop: dict[str, Any] = (
        {"type": "number", "number": account}
        if isinstance(account, int)
        else {"type": "rich_text", "rich_text": [{"type": "text", "plain_text": account}]}
    )
    return {
        "object": "page",
        "id": page_id,
        "in_trash": False,
        "properties": {
            "Name": {"type": "title", "title": [{"type": "text", "plain_text": name}]},
            "Meta Ad Account ID": id_prop,
            "Industry": {"type": "select", "select": {"name": "Retail"}},
            "Active": {"type": "checkbox", "checkbox": True},
        },
    }


def notion_client(recorder: Recorder, props: NotionProps | None = None) -> NotionClient:
    return NotionClient(
        context(recorder),
        base="https://notion.test/",
        token=NOTION_TOKEN,
        data_source_id="248104cd-477e-80af-bc30-000bd28de8f9",
        props=props or NotionProps(),
    )


def paged_notion(pages: list[list[dict[str, Any]]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        index = int(body.get("start_cursor", "cur-0").removeprefix("cur-"))
        more = index + 1 < len(pages)
        return httpx.Response(
            200,
            json={
                "object": "list",
                "results": pages[index],
                "has_more": more,
                "next_cursor": f"cur-{index + 1}" if more else None,
            },
        )

    return handler


async def test_notion_sends_the_headers_and_reads_every_page_by_cursor() -> None:
    pages = [
        [notion_page("p1", "act_1"), notion_page("p2", 2)],
        [notion_page("p3", "3")],
        [notion_page("p4", "act_4")],
    ]
    recorder = Recorder(paged_notion(pages))

    listing = await notion_client(recorder).query_all()

    assert [a.page_id for a in listing.accounts] == ["p1", "p2", "p3", "p4"]
    assert [a.meta_ad_account_id for a in listing.accounts] == ["1", "2", "3", "4"]
    assert listing.skipped == ()
    assert [json.loads(r.content) for r in recorder.requests] == [
        {"page_size": 100},
        {"page_size": 100, "start_cursor": "cur-1"},
        {"page_size": 100, "start_cursor": "cur-2"},
    ]
    for request in recorder.requests:
        assert request.method == "POST"
        assert str(request.url) == (
            "https://notion.test/v1/data_sources/248104cd-477e-80af-bc30-000bd28de8f9/query"
        )
        assert request.headers["authorization"] == f"Bearer {NOTION_TOKEN}"
        assert request.headers["notion-version"] == "2025-09-03"
        assert request.headers["content-type"] == "application/json"


async def test_notion_stops_when_has_more_is_false_even_with_a_cursor() -> None:
    body = {"results": [notion_page("p1", "1")], "has_more": False, "next_cursor": "stale"}
    recorder = Recorder(lambda _: httpx.Response(200, json=body))
    listing = await notion_client(recorder).query_all()
    assert len(recorder.requests) == 1
    assert len(listing.accounts) == 1


async def test_notion_keeps_the_first_page_of_a_duplicate_ad_account() -> None:
    pages = [
        [notion_page("p1", "act_1", "First"), notion_page("p2", "2")],
        [notion_page("p3", 1, "Second"), notion_page("p4", "oops")],
    ]
    listing = await notion_client(Recorder(paged_notion(pages))).query_all()

    assert [a.page_id for a in listing.accounts] == ["p1", "p2"]
    assert [(s.page_id, s.name) for s in listing.skipped] == [("p3", "Second"), ("p4", "Acme")]
    assert "duplicate Meta ad account id 1, already used by page 'First' (p1)" in (
        listing.skipped[0].reason
    )
    assert "no usable Meta Ad Account ID ('oops')" in listing.skipped[1].reason


async def test_notion_stops_a_cursor_loop() -> None:
    body = {"results": [notion_page("p1", "1")], "has_more": True, "next_cursor": "same"}
    recorder = Recorder(lambda _: httpx.Response(200, json=body))
    with pytest.raises(PayloadError, match="cursor loop"):
        await notion_client(recorder).query_all()
    assert len(recorder.requests) == 2  # the repeat is caught before it is requested again


async def test_notion_stops_an_endless_chain_of_cursors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notion_module, "MAX_PAGES", 4)

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(recorder.requests)
        return httpx.Response(200, json={"results": [], "has_more": True, "next_cursor": f"c{n}"})

    recorder = Recorder(handler)
    with pytest.raises(PayloadError, match="more than 4 pages"):
        await notion_client(recorder).query_all()


async def test_notion_non_json_body_names_the_page_of_the_listing() -> None:
    calls = iter([httpx.Response(200, json={"results": [], "has_more": True, "next_cursor": "c"})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(calls, httpx.Response(200, text="<html>Bad gateway</html>"))

    with pytest.raises(PayloadError, match="Notion data source query, page 2: the answer is not"):
        await notion_client(Recorder(handler)).query_all()


async def test_notion_payload_errors_never_carry_the_token() -> None:
    body = {"results": [], "has_more": NOTION_TOKEN}
    with pytest.raises(PayloadError, match="has_more") as info:
        await notion_client(Recorder(lambda _: httpx.Response(200, json=body))).query_all()
    assert NOTION_TOKEN[:20] not in str(info.value)
