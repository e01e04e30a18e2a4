"""The HTTP API: bearer auth on every cron endpoint, health answers, and database outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from cronkeeper.api.app import create_app
from cronkeeper.config import Settings
from cronkeeper.service import Service
from tests.conftest import SECRET, FakeClock, make_settings

AUTH = {"Authorization": f"Bearer {SECRET}"}


async def client_for(settings: Settings, clock: FakeClock) -> tuple[httpx.AsyncClient, Service]:
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    app = create_app(service)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test"), service


@pytest.fixture
async def api(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Service]]:
    client, service = await client_for(settings, clock)
    async with client:
        yield client, service
    await service.aclose()


async def test_healthz_needs_no_auth_and_no_database(clock: FakeClock) -> None:
    settings = make_settings("postgresql://u:p@127.0.0.1:1/none")
    service = Service.from_settings(settings, clock=clock)
    app = create_app(service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/healthz")
    await service.aclose()
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": f"Token {SECRET}"},
        {"Authorization": "Bearer wrong-secret-0123456789"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"Authorization": f"Bearer {SECRET[:-1]}"},
    ],
    ids=["none", "basic", "token", "wrong", "empty", "bare", "longer", "shorter"],
)
async def test_bad_or_missing_credentials_get_401_with_www_authenticate(
    api: tuple[httpx.AsyncClient, Service], headers: dict[str, str]
) -> None:
    client, _ = api
    for path in ("/api/cron/health", "/api/cron/runs"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert SECRET not in response.text


async def test_nothing_is_authorised_when_cron_secret_is_unset(
    database_url: str, clock: FakeClock
) -> None:
    settings = make_settings(database_url, cron_secret=None)
    client, service = await client_for(settings, clock)
    async with client:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            assert (await client.get("/api/cron/health", headers=headers)).status_code == 401
    await service.aclose()


async def test_health_with_no_runs_reports_every_monitored_job_missing(
    api: tuple[httpx.AsyncClient, Service],
) -> None:
    client, _ = api
    response = await client.get("/api/cron/health", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is False
    assert body["missing"] == ["collect-daily", "collect-mixpanel", "collect-benchmarks"]
    assert set(body["checks"]) == {"collect-daily", "collect-mixpanel", "collect-benchmarks"}


@pytest.mark.sql  # also PostgreSQL and PgBouncer
async def test_health_after_runs_is_healthy_and_strict_mode_uses_the_status_code(
    api: tuple[httpx.AsyncClient, Service], clock: FakeClock
) -> None:
    client, service = api
    assert (await client.get("/api/cron/health?strict=1", headers=AUTH)).status_code == 503
    for name in ("collect-daily", "collect-mixpanel", "collect-benchmarks"):
        run_id = await service.ledger.start_cron_run(name)
        clock.advance(seconds=5)
        await service.ledger.complete_cron_run(run_id, "success", 3)
    response = await client.get("/api/cron/health", headers=AUTH)
    body = response.json()
    assert response.status_code == 200
    assert body["healthy"] is True and body["missing"] == []
    check = body["checks"]["collect-daily"]
    assert check["status"] == "success" and check["ok"] is True
    assert check["lastRun"].endswith("+00:00")
    assert (await client.get("/api/cron/health?strict=1", headers=AUTH)).status_code == 200


async def test_runs_lists_recent_runs_with_filters_and_validates_input(
    api: tuple[httpx.AsyncClient, Service],
) -> None:
    client, service = api
    a = await service.ledger.start_cron_run("collect-daily")
    await service.ledger.complete_cron_run(a, "error", 0, "boom")
    await service.ledger.start_cron_run("sync-notion")
    body = (await client.get("/api/cron/runs?job=collect-daily", headers=AUTH)).json()
    assert [r["id"] for r in body["runs"]] == [a]
    assert body["runs"][0]["errorMessage"] == "boom"
    weird = await client.get("/api/cron/runs?status=weird", headers=AUTH)
    assert weird.status_code == 400
    assert weird.json() == {
        "error": "unknown status 'weird'; statuses are running, success, error, partial"
    }
    typo = await client.get("/api/cron/runs?job=collect-daly", headers=AUTH)
    assert typo.status_code == 400
    assert typo.json()["error"].startswith("unknown job 'collect-daly'; jobs are ")
    assert (await client.get("/api/cron/runs?limit=0", headers=AUTH)).status_code == 422
    assert len((await client.get("/api/cron/runs?limit=1", headers=AUTH)).json()["runs"]) == 1


async def test_health_answers_500_without_driver_text_when_the_database_is_unreachable(
    clock: FakeClock,
) -> None:
    settings = make_settings("postgresql://u:pw@127.0.0.1:1/none", ledger_timeout=1.0)
    service = Service.from_settings(settings, clock=clock)
    app = create_app(service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/api/cron/health", headers=AUTH)
    await service.aclose()
    assert response.status_code == 500
    assert response.json() == {"healthy": False, "error": "database unavailable"}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_health_is_500_while_postgres_is_down_and_200_once_it_is_back(
    api: tuple[httpx.AsyncClient, Service], request: pytest.FixtureRequest
) -> None:
    client, _ = api
    cluster = request.getfixturevalue("pg_cluster")
    assert (await client.get("/api/cron/health", headers=AUTH)).status_code == 200
    cluster.stop()
    try:
        response = await client.get("/api/cron/health", headers=AUTH)
        assert response.status_code == 500
        assert response.json() == {"healthy": False, "error": "database unavailable"}
    finally:
        cluster.start()
    assert (await client.get("/api/cron/health", headers=AUTH)).status_code == 200


async def test_concurrent_health_checks_share_one_query(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    real = service.ledger.health_read  # the one statement of a health read (issue 16)
    calls = 0

    async def counted(names: list[str]) -> object:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # a query in flight while the others arrive
        return await real(names)

    monkeypatch.setattr(service.ledger, "health_read", counted)
    reports = await asyncio.gather(*(service.health() for _ in range(20)))
    assert calls == 1
    assert all(r.missing == reports[0].missing for r in reports)
    await service.health()  # the next burst queries again: nothing is cached
    assert calls == 2
    await service.aclose()


async def test_concurrent_callers_share_one_evaluation_and_one_encoded_body(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the callers of one read share its evaluation and its JSON body (encoded
    once), instead of evaluating and encoding it once each."""
    import cronkeeper.service as service_module

    service = Service.from_settings(settings, clock=clock)
    await service.prepare()
    real_read, real_evaluate = service.ledger.health_read, service_module.evaluate_health
    evaluations = 0

    async def slow(names: list[str]) -> object:
        await asyncio.sleep(0.05)  # a query in flight while the others arrive
        return await real_read(names)

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal evaluations
        evaluations += 1
        return real_evaluate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service.ledger, "health_read", slow)
    monkeypatch.setattr(service_module, "evaluate_health", counted)
    answers = await asyncio.gather(*(service.health_answer() for _ in range(20)))
    assert evaluations == 1
    assert len({id(a.body) for a in answers}) == 1
    await service.health_answer()  # a new read: evaluated again
    assert evaluations == 2
    await service.aclose()


@pytest.mark.parametrize("query", ["", "?strict=1", "?strict=true", "?strict=0"])
async def test_the_fast_path_answers_exactly_what_the_route_does(
    api: tuple[httpx.AsyncClient, Service], clock: FakeClock, query: str
) -> None:
    """The fast path answers the common queries; ``?strict=yes`` (a spelling it leaves to
    FastAPI's validation) goes through the route: the two must agree byte for byte."""
    client, service = api
    run_id = await service.ledger.start_cron_run("collect-daily")
    await service.ledger.complete_cron_run(run_id, "success", 3)
    routed = {"": "?strict=no", "?strict=1": "?strict=yes", "?strict=true": "?strict=on"}
    fast = await client.get("/api/cron/health" + query, headers=AUTH)
    slow = await client.get("/api/cron/health" + routed.get(query, "?strict=off"), headers=AUTH)
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.headers["content-length"] == str(len(fast.content))
    assert (await client.get("/api/cron/health?strict=maybe", headers=AUTH)).status_code == 422
