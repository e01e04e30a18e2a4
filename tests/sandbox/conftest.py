"""One real uvicorn for the whole sandbox suite, pointed at each test's fresh simulator.

Starting and stopping uvicorn costs ~0.2 s, so the tests share one server whose ASGI app is
switched per test; ``test_sandbox_server.py`` covers ``serve_app``'s own life cycle.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from cronkeeper.sandbox import Simulator, serve_app
from tests.sandbox.helpers import Serve


class _SwitchApp:
    """An ASGI app that forwards to whichever app the current test installed."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no simulator installed for this test"
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def _shared_server() -> Iterator[tuple[_SwitchApp, str]]:
    switch = _SwitchApp()
    with serve_app(switch) as url:
        yield switch, url


@pytest.fixture
def serve(_shared_server: tuple[_SwitchApp, str]) -> Iterator[Serve]:
    """``serve(sim)`` makes ``sim`` answer on the shared server and returns its base URL."""
    switch, url = _shared_server

    def _serve(sim: Simulator) -> str:
        switch.app = sim.app
        return url

    yield _serve
    switch.app = None
