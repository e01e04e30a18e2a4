"""Mixpanel regions per project (issue 18.6), over real HTTP against the simulator.

Mixpanel serves each data residency from its own host: "Query API — Standard Server:
mixpanel.com/api, EU Residency Server: eu.mixpanel.com/api, India Residency Server:
in.mixpanel.com/api" (https://docs.mixpanel.com/reference/overview). A project asked on the
wrong cluster answers 400 "invalid project id for cluster". Main had one base URL for all
projects, so an EU or India project could not be reached.

The client's requests to the real hosts are carried to the simulator on loopback by a
transport that keeps the ``Host`` header, so the simulator sees which host was addressed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cronkeeper.config import Settings
from cronkeeper.http import HttpContext
from cronkeeper.sandbox import MixpanelProject, MixpanelSimulator
from cronkeeper.sources.mixpanel import QUERY_API_BASES, MixpanelClient
from tests.conftest import make_settings
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import MIXPANEL_ACCOUNT, MIXPANEL_SECRET, Harness

EVENTS = ("signup", "purchase")


class ToSimulator(httpx.AsyncBaseTransport):
    """Sends every request to ``target`` (the simulator), its ``Host`` header unchanged."""

    def __init__(self, target: str) -> None:
        self.target = httpx.URL(target)
        self.inner = httpx.AsyncHTTPTransport()
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(f"{request.url.scheme}://{request.url.host}")
        request.url = request.url.copy_with(
            scheme=self.target.scheme, host=self.target.host, port=self.target.port
        )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def routed(
    sandbox: Sandbox, harness: Harness
) -> AsyncIterator[tuple[MixpanelSimulator, ToSimulator]]:
    sim = MixpanelSimulator(
        [
            MixpanelProject("31"),
            MixpanelProject("77", region="eu"),
            MixpanelProject("88", region="in"),
        ],
        service_account=MIXPANEL_ACCOUNT,
        service_secret=MIXPANEL_SECRET,
    )
    base = httpx.URL(sandbox.mixpanel(sim))
    transport = ToSimulator(f"{base.scheme}://{base.host}:{base.port}")
    harness.client = httpx.AsyncClient(transport=transport)
    async with harness.client:
        yield sim, transport


def _settings(harness: Harness, **extra: object) -> Settings:
    return harness.settings(
        mixpanel_service_account=MIXPANEL_ACCOUNT,
        mixpanel_service_secret=MIXPANEL_SECRET,
        mixpanel_project_id=("31", "77", "88"),
        mixpanel_events=EVENTS,
        mixpanel_lookback_days=1,
        **extra,
    )


async def test_each_project_is_asked_on_its_regions_host(
    harness: Harness, routed: tuple[MixpanelSimulator, ToSimulator]
) -> None:
    sim, transport = routed
    settings = _settings(harness, mixpanel_project_regions="77=eu, 88=IN")
    outcome = await harness.run("collect-mixpanel", settings)

    assert outcome.status == "success", outcome.message
    assert outcome.summary.records_count == 6
    by_project = {r.key: r.headers["host"] for r in sim.log.records}
    assert by_project == {"31": "mixpanel.com", "77": "eu.mixpanel.com", "88": "in.mixpanel.com"}
    assert set(transport.hosts) == {
        "https://mixpanel.com",
        "https://eu.mixpanel.com",
        "https://in.mixpanel.com",
    }


async def test_without_regions_eu_and_india_projects_cannot_be_reached(
    harness: Harness, routed: tuple[MixpanelSimulator, ToSimulator]
) -> None:
    """What main did: one host for all, and Mixpanel refuses the projects of other clusters."""
    outcome = await harness.run("collect-mixpanel", _settings(harness))

    assert outcome.status == "partial"
    assert "invalid project id for cluster" in outcome.message
    assert "77" in outcome.message and "88" in outcome.message
    assert outcome.summary.records_count == 2


def test_mixpanel_api_base_overrides_every_region(database_url: str) -> None:
    settings = make_settings(
        database_url,
        mixpanel_service_account="sa",
        mixpanel_service_secret="secret-0123456789",
        mixpanel_project_regions="77=eu",
        mixpanel_api_base="https://proxy.example/api/query",
    )
    client = MixpanelClient.from_settings(HttpContext(httpx.AsyncClient()), settings)
    assert client.base_for("77") == client.base_for("31") == "https://proxy.example/api/query"

    regional = make_settings(
        database_url,
        mixpanel_service_account="sa",
        mixpanel_service_secret="secret-0123456789",
        mixpanel_project_regions="77=eu,88=in",
    )
    client = MixpanelClient.from_settings(HttpContext(httpx.AsyncClient()), regional)
    assert client.base_for("77") == QUERY_API_BASES["eu"] == "https://eu.mixpanel.com/api/query"
    assert client.base_for("88") == "https://in.mixpanel.com/api/query"
    assert client.base_for("31") == "https://mixpanel.com/api/query"


@pytest.mark.parametrize("bad", ["77", "77=de", "=eu", "77=eu,88"])
def test_a_malformed_regions_setting_is_refused_naming_it(database_url: str, bad: str) -> None:
    with pytest.raises(ValueError, match="MIXPANEL_PROJECT_REGIONS"):
        make_settings(database_url, mixpanel_project_regions=bad)
