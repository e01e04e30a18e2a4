"""Paging stays home (issue 18.4): ``paging.next`` is followed only to ``META_API_BASE``'s
scheme, host and port, since it carries the access token. Meta documents ``next`` as "the
Graph API endpoint that will return the next page of data"
(https://developers.facebook.com/docs/graph-api/results); main followed it anywhere, plain
http included.

The simulator is told to point ``paging.next`` elsewhere; a second loopback server records
whether anything reached it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from cronkeeper.sandbox import MetaAccount, MetaSimulator, serve_app
from tests.jobs.conftest import Sandbox
from tests.jobs.helpers import META_TOKEN, Harness, Outcome

pytestmark = pytest.mark.pooler


class Recorder:
    """An ASGI app that answers 200 {} and remembers every request's path and query."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls.append(f"{scope['path']}?{scope['query_string'].decode()}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()
    with serve_app(recorder) as url:
        yield recorder, url


async def _run(sandbox: Sandbox, harness: Harness, next_base: str) -> tuple[MetaSimulator, Outcome]:
    sim = MetaSimulator(
        [MetaAccount("1001", pages=3), MetaAccount("1002")],
        access_token=META_TOKEN,
        next_base=next_base,
    )
    settings = harness.settings(
        meta_access_token=META_TOKEN,
        meta_api_base=sandbox.meta(sim),
        meta_ad_account_ids=("1001", "1002"),
        meta_lookback_days=1,
    )
    return sim, await harness.run("collect-daily", settings)


async def test_paging_next_to_another_port_is_not_followed_and_the_token_stays(
    sandbox: Sandbox, harness: Harness, elsewhere: tuple[Recorder, str]
) -> None:
    recorder, url = elsewhere
    recorder.calls.clear()
    sim, outcome = await _run(sandbox, harness, url)

    assert outcome.status == "partial"
    message = outcome.message
    assert "act_1001" in message and "paging.next leaves" in message
    assert META_TOKEN not in message and url not in message
    assert recorder.calls == []  # nothing, the token least of all, left for the other host
    assert len(sim.log.records_for("1001")) == 1  # the first page only
    assert outcome.summary.records_count == 1  # 1002's day


async def test_paging_next_over_another_scheme_is_not_followed(
    sandbox: Sandbox, harness: Harness
) -> None:
    home = httpx.URL(sandbox.servers.urls[0])
    sim, outcome = await _run(sandbox, harness, f"https://{home.host}:{home.port}")

    assert outcome.status == "partial"
    assert "paging.next leaves" in outcome.message
    assert len(sim.log.records_for("1001")) == 1


async def test_paging_next_at_home_is_followed(sandbox: Sandbox, harness: Harness) -> None:
    sim, outcome = await _run(sandbox, harness, sandbox.servers.urls[0])
    assert outcome.status == "success", outcome.message
    assert len(sim.log.records_for("1001")) == 3
