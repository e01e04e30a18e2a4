"""1,000 health requests from 20 concurrent clients, half with a bad token, over real uvicorn.

Every bad credential gets 401 with ``WWW-Authenticate: Bearer``, every good one 200 with the
health JSON, nothing gets a 5xx, and no answer echoes the secret. Which request carries which
header is a function of its index, so a failure names the exact header that broke.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from cronkeeper.api.app import create_app
from cronkeeper.auth import FailureLimiter
from cronkeeper.ledger import Ledger
from cronkeeper.sandbox import serve_app
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine
from tests.conftest import SECRET, make_settings

REQUESTS = 1000
CLIENTS = 20
HANG_GUARD = 90.0

GOOD = [f"Bearer {SECRET}", f"bearer {SECRET}", f"BEARER {SECRET}"]
BAD: list[str | None] = [
    None,  # no Authorization header at all
    "Bearer wrong-token-0123456789",
    f"Basic {base64.b64encode(SECRET.encode()).decode()}",
    f"Basic {base64.b64encode(f'cron:{SECRET}'.encode()).decode()}",
    "Bearer",  # empty token ("Bearer " with its space is not a legal header value)
    "",
    f"Bearer {SECRET}x",
    f"Bearer {SECRET[:-1]}",
    f"Bearer x{SECRET}",
    f"Bearer {SECRET.upper()}",
    f"Bearer {SECRET} {SECRET}",
    f"Bearer{SECRET}",
    f"Token {SECRET}",
    SECRET,
    f"Bearer {SECRET}\u00e9",  # sent as latin-1: one byte more than the secret
    f"Bearer {'A' * 4000}",
]


def header_for(index: int) -> tuple[str | None, bool]:
    """The Authorization value of request ``index`` and whether it must be let in."""
    if index % 2 == 0:
        return GOOD[(index // 2) % len(GOOD)], True
    return BAD[(index // 2) % len(BAD)], False


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    """create_app over real uvicorn; NullPool, since the server's loop lives in its own thread."""
    settings = make_settings(database_url, monitored_jobs="collect-daily")
    engine = create_engine(database_url, poolclass=NullPool)
    service = Service.from_settings(settings, engine=engine)
    # A limiter that never blocks: this test is about each answer; the limiter has its own.
    never_blocks = FailureLimiter(service.clock, max_failures=REQUESTS)
    with serve_app(create_app(service, own_service=False, limiter=never_blocks)) as url:
        yield url


async def test_concurrent_good_and_bad_tokens_get_exactly_200_and_401(
    served: str, engine: AsyncEngine
) -> None:
    ledger = Ledger(engine)
    run_id = await ledger.start_cron_run("collect-daily")
    assert await ledger.complete_cron_run(run_id, "success", 3)

    results: dict[int, httpx.Response] = {}

    async def client(first: int) -> None:
        async with httpx.AsyncClient(base_url=served, timeout=10) as http:
            for index in range(first, REQUESTS, CLIENTS):
                value, _ = header_for(index)
                headers = {} if value is None else {b"Authorization": value.encode("latin-1")}
                results[index] = await http.get("/api/cron/health", headers=headers)

    async with asyncio.timeout(HANG_GUARD):  # fails a hung server, measures nothing
        await asyncio.gather(*(client(k) for k in range(CLIENTS)))

    assert len(results) == REQUESTS
    assert Counter(r.status_code for r in results.values()) == {200: 500, 401: 500}
    for index, response in sorted(results.items()):
        value, good = header_for(index)
        assert SECRET not in response.text
        if good:
            assert response.status_code == 200, (index, value, response.text)
            body = response.json()
            assert body["healthy"] is True
            assert body["checks"]["collect-daily"]["status"] == "success"
        else:
            assert response.status_code == 401, (index, value, response.text)
            assert response.headers["www-authenticate"] == "Bearer"

    async with httpx.AsyncClient(base_url=served) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
