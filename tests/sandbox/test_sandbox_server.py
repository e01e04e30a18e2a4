"""serve_app's life cycle, and the faults that are about connections and time."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import httpx
import pytest

from cronkeeper.sandbox import (
    Fault,
    FaultMix,
    MetaAccount,
    MetaSimulator,
    MixpanelSimulator,
    serve_app,
    serve_apps,
)
from cronkeeper.sandbox._asgi import ConnectionDropped
from tests.sandbox.helpers import Serve, meta_params
from tests.support.waiting import eventually

TOKEN = "meta-token"


def _sim(**kwargs: Any) -> MetaSimulator:
    return MetaSimulator(
        [MetaAccount("111"), MetaAccount("222"), MetaAccount("333")],
        access_token=TOKEN,
        **kwargs,
    )


def _url(base: str, account: str) -> str:
    return f"{base}/v27.0/act_{account}/insights"


def test_serve_app_serves_on_loopback_and_stops() -> None:
    sim = _sim()
    with serve_app(sim.app) as base:
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(_url(base, "111"), params=meta_params()).status_code == 200

    with pytest.raises(httpx.ConnectError):
        httpx.get(_url(base, "111"), params=meta_params(), timeout=1)


def test_serve_apps_gives_each_app_its_own_port() -> None:
    meta, mixpanel = _sim(), MixpanelSimulator(["1"])
    with serve_apps(meta.app, mixpanel.app) as (meta_url, mixpanel_url):
        assert meta_url != mixpanel_url
        assert httpx.get(_url(meta_url, "111"), params=meta_params()).status_code == 200
        assert httpx.get(f"{mixpanel_url}/api/query/events").status_code == 401
    assert len(mixpanel.log) == 1
    assert len(meta.log) == 1


async def test_hang_exceeds_a_client_timeout_while_others_are_answered(serve: Serve) -> None:
    sim = _sim(scripts={"111": [Fault.hang(5)]})
    base = serve(sim)

    async with httpx.AsyncClient(timeout=1.0) as impatient, httpx.AsyncClient() as client:

        async def prompt() -> int:
            # Sent while the hung request is held: a server that served one request at a
            # time would leave this one waiting behind it.
            await eventually(lambda: sim.log.in_flight == 1, what="the hung request held")
            response = await client.get(_url(base, "222"), params=meta_params())
            return response.status_code

        hung = impatient.get(_url(base, "111"), params=meta_params())
        results = await asyncio.gather(hung, prompt(), return_exceptions=True)

    assert isinstance(results[0], httpx.ReadTimeout)
    assert results[1] == 200
    assert sim.log.max_in_flight == 2  # answered while the other was held
    assert sim.records_for("111")[0].fault == "hang:5"


async def test_hang_answers_normally_after_the_delay(serve: Serve) -> None:
    sim = _sim(scripts={"111": [Fault.hang(0.1)]})
    base = serve(sim)
    async with httpx.AsyncClient(timeout=2) as client:
        response = await client.get(_url(base, "111"), params=meta_params())

    assert response.status_code == 200
    assert [(r.fault, r.status) for r in sim.records_for("111")] == [("hang:0.1", 200)]


@pytest.mark.parametrize("after_headers", [False, True])
def test_drop_is_a_transport_error_and_the_server_keeps_going(
    serve: Serve, after_headers: bool
) -> None:
    sim = _sim(scripts={"111": [Fault.drop(after_headers=after_headers)]})
    base = serve(sim)

    with httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(_url(base, "111"), params=meta_params())
        assert client.get(_url(base, "111"), params=meta_params()).status_code == 200

    assert [r.status for r in sim.records_for("111")] == [0, 200]


def test_drop_before_headers_sends_not_a_single_byte(serve: Serve) -> None:
    sim = _sim(scripts={"111": [Fault.drop()]})
    url = httpx.URL(serve(sim))
    target = httpx.Request("GET", _url(str(url), "111"), params=meta_params()).url.raw_path
    assert url.host and url.port

    with socket.create_connection((url.host, url.port), timeout=5) as conn:
        conn.sendall(
            b"GET " + target + f" HTTP/1.1\r\nHost: {url.netloc.decode()}\r\n\r\n".encode()
        )
        assert conn.recv(65536) == b""  # end of stream: no status line, nothing

    assert [r.status for r in sim.records_for("111")] == [0]


def test_drops_leave_no_error_in_the_server_log(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    sim = _sim(scripts={"111": [Fault.drop(), Fault.drop(after_headers=True)]})
    base = serve(sim)

    with caplog.at_level(logging.INFO, logger="uvicorn"), httpx.Client() as client:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(_url(base, "111"), params=meta_params())
        assert client.get(_url(base, "111"), params=meta_params()).status_code == 200

    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == []


async def test_drop_under_a_server_that_cannot_close_still_breaks_the_exchange() -> None:
    sim = _sim(scripts={"111": [Fault.drop()]})
    transport = httpx.ASGITransport(app=sim.app)  # offers no way to close the connection

    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        with pytest.raises(ConnectionDropped):
            await client.get("/v27.0/act_111/insights", params=meta_params())

    assert [r.status for r in sim.records_for("111")] == [0]


def test_latency_delays_every_answer(serve: Serve) -> None:
    sim = _sim(latency=5.0)  # far beyond the client's patience: no answer can arrive in time
    base = serve(sim)

    with httpx.Client(timeout=0.1) as client:
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                client.get(_url(base, "111"), params=meta_params())

    # Each would have been a normal answer, only late.
    assert [(r.fault, r.status) for r in sim.records_for("111")] == [(None, 200)] * 3


async def test_max_in_flight_sees_every_concurrent_request(serve: Serve) -> None:
    sim = _sim(latency=0.1)
    base = serve(sim)

    async with httpx.AsyncClient() as client:
        await asyncio.gather(
            *(client.get(_url(base, "111"), params=meta_params()) for _ in range(6))
        )

    assert sim.log.max_in_flight == 6
    assert sim.log.in_flight == 0


async def test_max_in_flight_shows_a_client_side_bound(serve: Serve) -> None:
    sim = _sim(latency=0.05)
    base = serve(sim)
    bound = asyncio.Semaphore(2)

    async with httpx.AsyncClient() as client:

        async def one(account: str) -> int:
            async with bound:
                response = await client.get(_url(base, account), params=meta_params())
                return response.status_code

        statuses = await asyncio.gather(*(one(a) for a in ["111", "222", "333"] * 2))

    assert statuses == [200] * 6
    assert sim.log.max_in_flight == 2
    assert len(sim.log) == 6


def test_arrival_times_are_ordered_and_their_gaps_are_their_differences(serve: Serve) -> None:
    sim = _sim()
    base = serve(sim)
    with httpx.Client() as client:
        for account in ("111", "222", "111"):
            client.get(_url(base, account), params=meta_params())

    records = sim.log.records
    assert [r.key for r in records] == ["111", "222", "111"]
    assert records[0].at <= records[1].at <= records[2].at
    assert sim.log.keys() == ["111", "222"]
    assert sim.attempt_gaps("act_111") == [records[2].at - records[0].at]


def test_seeded_mix_gives_the_same_status_sequence_on_two_servers(serve: Serve) -> None:
    def statuses() -> list[int]:
        sim = _sim(mix=FaultMix(p429=0.3, p5xx=0.2, seed=7))
        base = serve(sim)
        with httpx.Client() as client:
            for account in ["111", "222"] * 10:
                client.get(_url(base, account), params=meta_params())
        return [r.status for r in sim.log.records]

    first, second = statuses(), statuses()

    assert first == second
    assert {429, 200} <= set(first)
    assert any(s >= 500 for s in first)


def test_clearing_the_log_resets_the_peak(serve: Serve) -> None:
    sim = _sim()
    base = serve(sim)
    httpx.get(_url(base, "111"), params=meta_params())
    sim.log.clear()

    assert len(sim.log) == 0
    assert sim.log.max_in_flight == 0
