"""Where an expiring API version shows (issue 18.1): the start-up log, the health JSON's
``warnings``, the status page and the ``cronkeeper_api_version_expiry_timestamp_seconds`` gauge.

Dates from Meta's Marketing API version table: v25.0 expires on February 23, 2027
(https://developers.facebook.com/documentation/ads-commerce/marketing-api/marketing-api-changelog/versions),
so from November 25, 2026 (90 days before) it is warned about.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronkeeper.api.app import create_app
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings

AUTH = {"Authorization": f"Bearer {SECRET}"}
DECEMBER = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
EXPECTED = (
    "Meta Marketing API version v25.0 expires on 2027-02-23 (in 81 days):"
    " upgrade META_API_VERSION (latest: v27.0)"
)


async def _get(database_url: str, version: str, path: str, **kw: str) -> httpx.Response:
    settings = make_settings(database_url, meta_api_version=version)
    service = Service.from_settings(settings, clock=FakeClock(DECEMBER))
    await service.prepare()
    app = create_app(service)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        if path == "/status":
            await client.post("/status/login", data={"secret": SECRET})
        response = await client.get(path, headers=AUTH)
    await service.aclose()
    return response


async def test_health_carries_a_warnings_list_and_healthy_is_unchanged(database_url: str) -> None:
    quiet = (await _get(database_url, "v27.0", "/api/cron/health")).json()
    warned = (await _get(database_url, "v25.0", "/api/cron/health")).json()

    assert quiet["warnings"] == []
    assert warned["warnings"] == [EXPECTED]
    assert warned["healthy"] == quiet["healthy"]
    assert warned["checks"] == quiet["checks"]


async def test_the_status_page_shows_the_warning(database_url: str) -> None:
    page = await _get(database_url, "v25.0", "/status")
    assert page.status_code == 200
    assert "v25.0 expires on 2027-02-23" in page.text
    assert 'data-warning="api-version"' not in (await _get(database_url, "v27.0", "/status")).text


async def test_the_gauge_gives_the_expiry_of_a_dated_version(database_url: str) -> None:
    scrape = (await _get(database_url, "v25.0", "/metrics")).text
    samples = [
        s
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
        if s.name == "cronkeeper_api_version_expiry_timestamp_seconds"
    ]
    assert [(s.labels, s.value) for s in samples] == [
        ({"source": "meta", "version": "v25.0"}, datetime(2027, 2, 23, tzinfo=UTC).timestamp())
    ]


async def test_the_warning_is_logged_at_start(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, meta_api_version="v25.0")
    service = Service.from_settings(settings, clock=FakeClock(DECEMBER))
    with caplog.at_level(logging.WARNING, logger="cronkeeper.service"):
        await service.prepare()
    await service.aclose()
    assert EXPECTED in caplog.messages


async def test_a_stored_token_finding_shows_in_health_and_on_the_status_page(
    database_url: str,
) -> None:
    """The watchdog's daily token check (cronkeeper.doctor) stores its findings on the
    service; health's ``warnings`` and the status page banner show them after the versions'."""
    settings = make_settings(database_url, meta_api_version="v27.0")
    service = Service.from_settings(settings, clock=FakeClock(DECEMBER))
    await service.prepare()
    line = "Meta access token: token expiry: expires on 2026-12-10 12:00 UTC (in 6 days)"
    service.source_warnings = [line]
    app = create_app(service)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        health = (await client.get("/api/cron/health", headers=AUTH)).json()
        await client.post("/status/login", data={"secret": SECRET})
        page = await client.get("/status", headers=AUTH)
    await service.aclose()
    assert health["warnings"] == [line]
    assert "in 6 days" in page.text


async def test_a_token_finding_stored_after_a_health_answer_is_not_hidden_by_its_cache(
    database_url: str,
) -> None:
    """The health body is encoded once and shared until something it shows can change; a
    finding the watchdog stores later is such a change (merge of the fast health answer with
    the doctor's stored warnings)."""
    service = Service.from_settings(
        make_settings(database_url, meta_api_version="v27.0"), clock=FakeClock(DECEMBER)
    )
    await service.prepare()
    app = create_app(service)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            before = (await client.get("/api/cron/health", headers=AUTH)).json()
            service.source_warnings = ["Meta access token: expires in 6 days"]
            after = (await client.get("/api/cron/health", headers=AUTH)).json()
            service.source_warnings = []
            cleared = (await client.get("/api/cron/health", headers=AUTH)).json()
    finally:
        await service.aclose()
    assert before["warnings"] == []
    assert after["warnings"] == ["Meta access token: expires in 6 days"]
    assert cleared["warnings"] == []
