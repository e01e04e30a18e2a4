"""A proxy that ``--forwarded-allow-ips`` does not name (issue 20.7): every client has the
proxy's address, and five wrong secrets from anyone lock out everyone. Said once, at WARNING,
with the fix. In-process: the peer address is the transport's ``client``; the trusted case
goes through uvicorn's own ProxyHeadersMiddleware, as ``serve --forwarded-allow-ips`` does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from cronkeeper.api.app import create_app
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings

AUTH = {"Authorization": f"Bearer {SECRET}"}
PROXY = "10.0.0.5"


def app_for(tmp_path: Path, clock: FakeClock) -> FastAPI:
    service = Service.from_settings(make_settings(f"sqlite:///{tmp_path}/ck.db"), clock=clock)
    return create_app(service, own_service=False)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "X-Forwarded-For" in r.getMessage()]


async def test_forwarded_requests_from_an_untrusted_peer_warn_once_with_the_fix(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cronkeeper.auth")
    transport = httpx.ASGITransport(app=app_for(tmp_path, clock), client=(PROXY, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for n in range(3):
            headers = {**AUTH, "X-Forwarded-For": f"203.0.113.{n}"}
            assert (await client.get("/openapi.json", headers=headers)).status_code == 200
    [line] = warnings(caplog)
    assert PROXY in line
    assert "one address" in line
    assert f"--forwarded-allow-ips={PROXY}" in line


async def test_no_forwarded_header_no_warning(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cronkeeper.auth")
    transport = httpx.ASGITransport(app=app_for(tmp_path, clock), client=(PROXY, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/openapi.json", headers=AUTH)).status_code == 200
    assert warnings(caplog) == []


async def test_a_trusted_proxy_is_not_warned_about(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cronkeeper.auth")
    app = ProxyHeadersMiddleware(cast(Any, app_for(tmp_path, clock)), trusted_hosts=PROXY)
    transport = httpx.ASGITransport(app=cast(Any, app), client=(PROXY, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        headers = {**AUTH, "X-Forwarded-For": "203.0.113.9"}
        assert (await client.get("/openapi.json", headers=headers)).status_code == 200
    assert warnings(caplog) == []
