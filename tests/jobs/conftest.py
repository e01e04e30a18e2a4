"""Fixtures for the job tests: real simulators over real HTTP, both database backends.

One uvicorn per API for the whole session (starting one costs ~0.2 s); each test installs its
own fresh simulator on it. Sleeps are recorded, never slept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from cronkeeper.sandbox import MetaSimulator, MixpanelSimulator, NotionSimulator, serve_apps
from tests.conftest import FakeClock
from tests.jobs.helpers import FakeSleep, Harness


class _SwitchApp:
    """Forwards to whichever simulator the current test installed."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:  # pragma: no cover - a test forgot to install its simulator
            raise RuntimeError("no simulator installed for this test")
        await self.app(scope, receive, send)


@dataclass
class Servers:
    meta: _SwitchApp = field(default_factory=_SwitchApp)
    mixpanel: _SwitchApp = field(default_factory=_SwitchApp)
    notion: _SwitchApp = field(default_factory=_SwitchApp)
    urls: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def _servers() -> Iterator[Servers]:
    servers = Servers()
    with serve_apps(servers.meta, servers.mixpanel, servers.notion) as urls:
        servers.urls = urls
        yield servers


@dataclass
class Sandbox:
    """Install simulators; their base URLs in the form the settings expect."""

    servers: Servers

    def meta(self, sim: MetaSimulator) -> str:
        self.servers.meta.app = sim.app
        return self.servers.urls[0]

    def mixpanel(self, sim: MixpanelSimulator) -> str:
        self.servers.mixpanel.app = sim.app
        return f"{self.servers.urls[1]}/api/query"

    def notion(self, sim: NotionSimulator) -> str:
        self.servers.notion.app = sim.app
        return self.servers.urls[2]


@pytest.fixture
def sandbox(_servers: Servers) -> Iterator[Sandbox]:
    yield Sandbox(_servers)
    _servers.meta.app = _servers.mixpanel.app = _servers.notion.app = None


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def harness(
    engine: AsyncEngine, database_url: str, fake_sleep: FakeSleep, clock: FakeClock
) -> AsyncIterator[Harness]:
    async with Harness.open(engine, database_url, fake_sleep, clock) as h:
        yield h
