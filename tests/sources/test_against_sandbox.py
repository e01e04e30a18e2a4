"""Each client against its real simulator over loopback HTTP (uvicorn), paging included.

The simulators compute their data with :mod:`cronkeeper.sandbox.data`, so the expected
numbers come from the same functions; what is proved here is the wire: URLs, parameters,
auth, paging and the decoding of real bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import httpx
import pytest

from cronkeeper.config import Settings
from cronkeeper.errors import PayloadError, PermanentFetchError
from cronkeeper.http import HttpContext
from cronkeeper.sandbox import (
    DEFAULT_CONVERSION_ACTIONS,
    DEFAULT_LEAD_ACTIONS,
    Fault,
    MetaAccount,
    MetaSimulator,
    MixpanelProject,
    MixpanelSimulator,
    NotionAccountPage,
    NotionSimulator,
    serve_app,
)
from cronkeeper.sources import (
    MetaClient,
    MetaInsight,
    MixpanelClient,
    MixpanelCount,
    NotionClient,
    NotionProps,
)

DAY = date(2025, 3, 14)
META_TOKEN = "sandbox-meta-token-0123456789"
MP_ACCOUNT = "cron.sandbox.mp-service-account"
MP_SECRET = "sandbox-mixpanel-secret-abcdef"
NOTION_TOKEN = "ntn_sandbox_token_0123456789"


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def http() -> AsyncIterator[HttpContext]:
    async with httpx.AsyncClient() as client:
        yield HttpContext(client=client, sleep=_no_sleep)


def _meta(http: HttpContext, base: str, token: str = META_TOKEN) -> MetaClient:
    return MetaClient(
        http,
        base=base,
        version="v27.0",
        access_token=token,
        conversion_action_types=DEFAULT_CONVERSION_ACTIONS,
        lead_action_types=DEFAULT_LEAD_ACTIONS,
    )


# --- Meta ----------------------------------------------------------------------------------


async def test_meta_reads_a_day_split_over_pages_and_sums_it(http: HttpContext) -> None:
    sim = MetaSimulator([MetaAccount("1234567", pages=4, currency="KRW")], access_token=META_TOKEN)
    expected = sim.expected("1234567", DAY)

    with serve_app(sim.app) as base:
        insight = await _meta(http, base).daily_insights("act_1234567", DAY)

    assert insight == MetaInsight(
        ad_account_id="1234567",
        date=DAY,
        spend=expected.spend,
        impressions=expected.impressions,
        clicks=expected.clicks,
        reach=expected.reach,
        conversions=Decimal(expected.conversions(DEFAULT_CONVERSION_ACTIONS)),
        currency="KRW",
        leads=Decimal(expected.leads(DEFAULT_LEAD_ACTIONS)),
    )
    records = sim.records_for("1234567")
    assert [r.status for r in records] == [200, 200, 200, 200]
    assert all(r.query["access_token"] == META_TOKEN for r in records)
    assert [r.query.get("after") is None for r in records] == [True, False, False, False]


async def test_meta_account_without_delivery_is_none(http: HttpContext) -> None:
    sim = MetaSimulator([MetaAccount("42", no_delivery=True)], access_token=META_TOKEN)
    with serve_app(sim.app) as base:
        assert await _meta(http, base).daily_insights("42", DAY) is None


async def test_meta_retries_a_throttled_page_then_reads_on(http: HttpContext) -> None:
    sim = MetaSimulator([MetaAccount("42", pages=2)], access_token=META_TOKEN)
    sim.script("42", None, Fault.status(429, retry_after="1"), Fault.meta_throttle(17))
    with serve_app(sim.app) as base:
        insight = await _meta(http, base).daily_insights("42", DAY)

    assert insight is not None
    assert insight.impressions == sim.expected("42", DAY).impressions
    assert [r.status for r in sim.records_for("42")] == [200, 429, 400, 200]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("shape", "field 'data': expected a list of rows"),
        ("json", "the answer is not JSON"),
        ("html", "the answer is not JSON (HTTP 200, text/html"),
        ("empty", "the answer is not JSON"),
    ],
)
async def test_meta_malformed_bodies_are_payload_errors_naming_the_account(
    http: HttpContext, mode: str, expected: str
) -> None:
    sim = MetaSimulator(["42"], access_token=META_TOKEN)
    sim.always("42", Fault.malformed(mode))  # type: ignore[arg-type]
    with serve_app(sim.app) as base, pytest.raises(PayloadError) as info:
        await _meta(http, base).daily_insights("42", DAY)
    assert str(info.value).startswith("Meta ad account 42: ")
    assert expected in str(info.value)
    assert META_TOKEN not in str(info.value)


async def test_meta_wrong_token_fails_at_once_without_the_token(http: HttpContext) -> None:
    sim = MetaSimulator(["42"], access_token=META_TOKEN)
    wrong = "EAAwrong-token-9876543210"
    with serve_app(sim.app) as base, pytest.raises(PermanentFetchError) as info:
        await _meta(http, base, token=wrong).daily_insights("42", DAY)
    assert len(sim.records_for("42")) == 1
    assert wrong not in str(info.value)


# --- Mixpanel --------------------------------------------------------------------------------


async def test_mixpanel_counts_every_event_present_in_the_answer(http: HttpContext) -> None:
    sim = MixpanelSimulator(
        [MixpanelProject("3141592", absent_events=frozenset({"Refund"}))],
        service_account=MP_ACCOUNT,
        service_secret=MP_SECRET,
    )
    events = ["Sign Up", "Purchase", "Refund"]
    with serve_app(sim.app) as base:
        settings = Settings(
            MIXPANEL_API_BASE=f"{base}/api/query",
            MIXPANEL_SERVICE_ACCOUNT=MP_ACCOUNT,
            MIXPANEL_SERVICE_SECRET=MP_SECRET,
            _env_file=None,
        )
        counts = await MixpanelClient.from_settings(http, settings).event_counts(
            "3141592", events, DAY
        )

    # Refund is absent from the answer: no record (collect-mixpanel decides what it means).
    assert counts == [
        MixpanelCount("3141592", e, DAY, sim.expected_count("3141592", e, DAY)) for e in events[:2]
    ]
    (record,) = sim.records_for("3141592")
    assert record.query["event"] == '["Sign Up","Purchase","Refund"]'


async def test_mixpanel_wrong_secret_fails_without_the_secret(http: HttpContext) -> None:
    sim = MixpanelSimulator(["7"], service_account=MP_ACCOUNT, service_secret=MP_SECRET)
    wrong = "not-the-secret-123456"
    with serve_app(sim.app) as base, pytest.raises(PermanentFetchError) as info:
        client = MixpanelClient(
            http, base=f"{base}/api/query", service_account=MP_ACCOUNT, secret=wrong
        )
        await client.event_counts("7", ["a"], DAY)
    assert wrong not in str(info.value)


# --- Notion --------------------------------------------------------------------------------


def _registry() -> list[NotionAccountPage]:
    pages = [
        NotionAccountPage(
            name=f"Client {i:03d}",
            ad_account_id=f"act_{1000 + i}" if i % 2 else str(1000 + i),
            industry=("Retail", "Travel", None)[i % 3],
            active=i % 5 != 0,
            mixpanel_project_id=(500 + i) if i % 4 == 0 else None,
        )
        for i in range(230)
    ]
    pages[57] = NotionAccountPage(name="No id yet", ad_account_id="n/a")
    pages[150] = NotionAccountPage(name="Empty id", ad_account_id=None)
    pages[201] = NotionAccountPage(name="Copy of Client 003", ad_account_id="act_1003")
    return pages


async def test_notion_reads_every_page_of_a_multi_page_registry(http: HttpContext) -> None:
    sim = NotionSimulator(_registry(), token=NOTION_TOKEN)
    with serve_app(sim.app) as base:
        client = NotionClient(
            http,
            base=base,
            token=NOTION_TOKEN,
            data_source_id=sim.data_source_id,
            props=NotionProps(),
        )
        listing = await client.query_all()

    assert [r.key for r in sim.log.records] == ["0", "100", "200"]
    assert len(listing.accounts) == 227
    by_id = {a.meta_ad_account_id: a for a in listing.accounts}
    assert by_id["1003"].name == "Client 003"
    assert by_id["1004"].mixpanel_project_id == "504"
    assert by_id["1005"].active is False
    assert by_id["1002"].industry is None
    assert by_id["1001"].industry == "Travel"
    reasons = {s.name: s.reason for s in listing.skipped}
    assert reasons.keys() == {"No id yet", "Empty id", "Copy of Client 003"}
    assert "no usable Meta Ad Account ID ('n/a')" in reasons["No id yet"]
    assert "duplicate Meta ad account id 1003" in reasons["Copy of Client 003"]


async def test_notion_reads_number_ids_and_custom_property_names(http: HttpContext) -> None:
    names = NotionProps(name="고객사", ad_account="광고 계정 ID")
    pages = [NotionAccountPage(name=f"C{i}", ad_account_id=900 + i) for i in range(3)]
    sim = NotionSimulator(
        pages, token=NOTION_TOKEN, ad_account_property="number", property_names=names
    )
    with serve_app(sim.app) as base:
        settings = Settings(
            NOTION_API_BASE=base,
            NOTION_TOKEN=NOTION_TOKEN,
            NOTION_DATA_SOURCE_ID=sim.data_source_id,
            NOTION_PROP_NAME="고객사",
            NOTION_PROP_AD_ACCOUNT="광고 계정 ID",
            _env_file=None,
        )
        listing = await NotionClient.from_settings(http, settings).query_all()

    assert [(a.name, a.meta_ad_account_id) for a in listing.accounts] == [
        ("C0", "900"),
        ("C1", "901"),
        ("C2", "902"),
    ]


async def test_notion_malformed_second_page_fails_the_listing(http: HttpContext) -> None:
    sim = NotionSimulator(_registry(), token=NOTION_TOKEN)
    sim.always("100", Fault.malformed("html"))
    with serve_app(sim.app) as base, pytest.raises(PayloadError) as info:
        await NotionClient(
            http, base=base, token=NOTION_TOKEN, data_source_id=sim.data_source_id
        ).query_all()
    assert "Notion data source query, page 2: the answer is not JSON" in str(info.value)
    assert NOTION_TOKEN not in str(info.value)
