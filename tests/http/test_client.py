"""The one client factory: the per-attempt timeout really is CRONKEEPER_HTTP_TIMEOUT.

httpx gives a client built without ``timeout`` its own 5 s default ("the default behavior is
to raise a TimeoutException after 5 seconds of network inactivity",
https://www.python-httpx.org/advanced/timeouts/). The runner used to build such a client, so
a 6 s Meta answer failed every attempt whatever the configured timeout (issue 11, item 1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import make_settings
from tests.faults.helpers import DAY, META_TOKEN

from cronkeeper import __version__
from cronkeeper.http import build_client, client_from_settings
from cronkeeper.redact import Redactor
from cronkeeper.runner import run_job
from cronkeeper.sandbox import Fault, MetaSimulator, serve_app
from cronkeeper.service import Service

ACCOUNT = "3001"
SLOW = 5.6
"""Above httpx's 5 s default, well below the configured timeout."""


def test_the_factory_gives_httpx_the_configured_timeout_and_our_defaults(tmp_path: object) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/x.db", http_timeout=12.5)
    client = client_from_settings(settings)
    assert client.timeout == httpx.Timeout(12.5)  # connect, read, write and pool each
    assert client.headers["User-Agent"] == f"cronkeeper/{__version__}"
    assert client.follow_redirects is False
    assert httpx.AsyncClient().timeout == httpx.Timeout(5.0), "httpx's default, for contrast"


async def test_a_redirect_is_not_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://elsewhere.test/"})

    async with build_client(timeout=1, transport=httpx.MockTransport(handler)) as client:
        response = await client.get("https://api.test/x?access_token=tok-0123456789")
    assert response.status_code == 302
    assert response.next_request is not None  # httpx would have followed it if told to


async def test_any_request_of_a_factory_client_keeps_its_token_out_of_httpx_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not only fetch_with_retry's calls: the request hook teaches the log filter first."""
    token, bearer = "qs-token-never-logged-0123", "bearer-never-logged-4567"
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with caplog.at_level(logging.DEBUG, logger="httpx"):
        async with build_client(timeout=1, transport=transport, redactor=Redactor()) as client:
            await client.get(f"https://api.test/x?access_token={token}")
            await client.get(f"https://api.test/y/{bearer}", headers={"Authorization": bearer})
    assert any(r.name == "httpx" for r in caplog.records), "httpx logged its request lines"
    assert token not in caplog.text
    assert bearer not in caplog.text


@pytest.fixture
def slow_meta() -> Iterator[tuple[MetaSimulator, str]]:
    sim = MetaSimulator([ACCOUNT], access_token=META_TOKEN)
    sim.script(ACCOUNT, Fault.hang(SLOW))  # the first insights call answers after 5.6 s
    with serve_app(sim.app) as url:
        yield sim, url


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_answer_slower_than_5_s_but_within_the_timeout_succeeds_first_time(
    database_url: str, slow_meta: tuple[MetaSimulator, str]
) -> None:
    """Real runner, real client, real Meta simulator: one attempt, one wait of ~5.6 s.

    Before the factory gave httpx the timeout, the first attempt died at 5 s (ReadTimeout),
    the retry (its wait recorded, not slept) got the fast answer: two requests, not one.
    """
    sim, url = slow_meta
    settings = make_settings(
        database_url,
        http_timeout=15,
        meta_api_base=url,
        meta_api_version="v27.0",
        meta_access_token=META_TOKEN,
        meta_ad_account_ids=ACCOUNT,
        meta_lookback_days=1,  # one day, one page: one insights request when nothing fails
    )
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)

    service = Service.from_settings(settings, sleep=recorded)
    try:
        async with asyncio.timeout(30):  # a hang guard
            result = await run_job(service, "collect-daily", DAY)
    finally:
        await service.aclose()
    insights = [r for r in sim.records_for(ACCOUNT) if "/insights" in r.path]
    assert len(insights) == 1, [r.fault for r in insights]
    # The one request is the one the simulator answered only after 5.6 s: the client waited.
    assert (insights[0].fault, insights[0].status) == (f"hang:{SLOW:g}", 200)
    assert waits == []
    assert result.status == "success", result.error_message
    assert result.records_count == 1
