"""The Notion data-source query simulator over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cronkeeper.notion_props import NotionProps
from cronkeeper.sandbox import (
    NOTION_VERSION,
    Fault,
    NotionAccountPage,
    NotionSimulator,
)
from tests.sandbox.helpers import Serve

TOKEN = "ntn_test_token"
SOURCE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PAGES = [
    NotionAccountPage("Acme", "act_1001", "Retail", True, 4242),
    NotionAccountPage("Bolt", "1002", "SaaS", True, None),
    NotionAccountPage("Crane", None, None, True, None),
    NotionAccountPage("Delta", "n/a", "Retail", False, None),
    NotionAccountPage("Echo", "1005", "Travel", True, 4242),
]


def _sim(**kwargs: Any) -> NotionSimulator:
    return NotionSimulator(PAGES, data_source_id=SOURCE, token=TOKEN, **kwargs)


def _query(
    base: str,
    body: dict[str, object] | None = None,
    *,
    token: str = TOKEN,
    version: str | None = NOTION_VERSION,
    source: str = SOURCE,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if version is not None:
        headers["Notion-Version"] = version
    return httpx.post(
        f"{base}/v1/data_sources/{source}/query",
        json=body if body is not None else {"page_size": 100},
        headers=headers,
    )


def test_list_and_page_shapes(serve: Serve) -> None:
    body = _query(serve(_sim())).json()

    assert body["object"] == "list"
    assert body["type"] == "page_or_data_source"
    assert (body["has_more"], body["next_cursor"]) == (False, None)
    assert len(body["results"]) == 5
    acme = body["results"][0]
    assert acme["object"] == "page"
    assert acme["parent"]["data_source_id"] == SOURCE
    props = acme["properties"]
    assert props["Name"]["type"] == "title"
    assert props["Name"]["id"] == "title"
    assert props["Name"]["title"][0]["plain_text"] == "Acme"
    assert props["Name"]["title"][0]["text"]["content"] == "Acme"
    assert props["Meta Ad Account ID"]["type"] == "rich_text"
    assert props["Meta Ad Account ID"]["rich_text"][0]["plain_text"] == "act_1001"
    assert props["Industry"]["select"]["name"] == "Retail"
    assert props["Active"] == {"id": props["Active"]["id"], "type": "checkbox", "checkbox": True}
    assert props["Mixpanel Project ID"]["number"] == 4242


def test_pages_without_usable_ids_and_industry(serve: Serve) -> None:
    results = _query(serve(_sim())).json()["results"]
    crane, delta = results[2]["properties"], results[3]["properties"]

    assert crane["Meta Ad Account ID"]["rich_text"] == []
    assert crane["Industry"]["select"] is None
    assert crane["Mixpanel Project ID"]["number"] is None
    assert delta["Meta Ad Account ID"]["rich_text"][0]["plain_text"] == "n/a"
    assert delta["Active"]["checkbox"] is False


def test_number_typed_ad_account_column(serve: Serve) -> None:
    results = _query(serve(_sim(ad_account_property="number"))).json()["results"]
    values = [r["properties"]["Meta Ad Account ID"] for r in results]

    assert {v["type"] for v in values} == {"number"}
    assert [v["number"] for v in values] == [1001, 1002, None, None, 1005]


def test_property_names_can_be_renamed(serve: Serve) -> None:
    names = NotionProps(name="Client", ad_account="FB Account")
    props = _query(serve(_sim(property_names=names))).json()["results"][0]["properties"]

    assert {"Client", "FB Account", "Industry", "Active"} <= set(props)


def test_bad_token_is_401(serve: Serve) -> None:
    response = _query(serve(_sim()), token="nope")

    assert response.status_code == 401
    assert response.json() == {
        "object": "error",
        "status": 401,
        "code": "unauthorized",
        "message": "API token is invalid.",
        "request_id": response.json()["request_id"],
    }


def test_missing_notion_version_is_400(serve: Serve) -> None:
    response = _query(serve(_sim()), version=None)

    assert response.status_code == 400
    assert response.json()["code"] == "missing_version"


def test_old_notion_version_is_refused_for_data_sources(serve: Serve) -> None:
    assert _query(serve(_sim()), version="2022-06-28").status_code == 400


def test_unknown_data_source_is_404(serve: Serve) -> None:
    response = _query(serve(_sim()), source="ffffffff-0000-4000-8000-000000000000")

    assert response.status_code == 404
    assert response.json()["code"] == "object_not_found"


@pytest.mark.parametrize("page_size", [0, 101, "ten"])
def test_page_size_is_validated(serve: Serve, page_size: object) -> None:
    response = _query(serve(_sim()), {"page_size": page_size})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def _all_pages(base: str, page_size: int) -> tuple[list[str], int]:
    ids: list[str] = []
    body: dict[str, object] = {"page_size": page_size}
    requests = 0
    while True:
        response = _query(base, body)
        requests += 1
        assert response.status_code == 200
        page = response.json()
        ids.extend(r["id"] for r in page["results"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return ids, requests
        body = {"page_size": page_size, "start_cursor": page["next_cursor"]}


def test_cursors_give_every_page_exactly_once(serve: Serve) -> None:
    sim = _sim()
    ids, requests = _all_pages(serve(sim), page_size=2)

    assert ids == sim.page_ids
    assert len(set(ids)) == 5
    assert requests == 3
    assert [r.key for r in sim.log.records] == ["0", "2", "4"]


def test_a_failed_page_is_served_on_retry_of_the_same_cursor(serve: Serve) -> None:
    sim = _sim(scripts={"2": [Fault.status(503), Fault.status(429, "1")]})
    base = serve(sim)

    first = _query(base, {"page_size": 2}).json()
    retry_body = {"page_size": 2, "start_cursor": first["next_cursor"]}
    responses = [_query(base, retry_body) for _ in range(3)]

    assert [r.status_code for r in responses] == [503, 429, 200]
    assert [p["id"] for p in responses[-1].json()["results"]] == sim.page_ids[2:4]
    assert [r.key for r in sim.log.records] == ["0", "2", "2", "2"]


def test_notion_error_body_for_a_rate_limit(serve: Serve) -> None:
    response = _query(serve(_sim(scripts={"0": [Fault.status(429, "2")]})))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["code"] == "rate_limited"


def test_invalid_cursor_is_400(serve: Serve) -> None:
    response = _query(serve(_sim()), {"start_cursor": "not-a-page"})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_removing_a_page_between_syncs(serve: Serve) -> None:
    sim = _sim()
    base = serve(sim)
    before, _ = _all_pages(base, 100)
    sim.set_pages(PAGES[:-1])
    after, _ = _all_pages(base, 100)

    assert after == before[:-1]
