"""Fixtures for the status page: a service on the test database, a client, a login."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cronkeeper.config import Settings
from cronkeeper.service import Service
from cronkeeper.web import install_status_page
from tests.conftest import SECRET, FakeClock, make_settings
from tests.web.ledger_data import NOW


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, timezone="Asia/Seoul")


@pytest.fixture
async def service(settings: Settings, clock: FakeClock) -> AsyncIterator[Service]:
    service = Service.from_settings(settings, clock=clock)
    yield service
    await service.aclose()


def status_app(service: Service) -> FastAPI:
    app = FastAPI()
    install_status_page(app, service)
    return app


def client_for(
    service: Service, *, base_url: str = "http://test", client: tuple[str, int] | None = None
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=status_app(service), client=client or ("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(service) as c:
        yield c


async def login(client: httpx.AsyncClient, secret: str = SECRET, **form: Any) -> httpx.Response:
    return await client.post("/status/login", data={"secret": secret, **form})


@pytest.fixture
async def signed_in(client: httpx.AsyncClient) -> httpx.AsyncClient:
    response = await login(client)
    assert response.status_code == 303
    return client
