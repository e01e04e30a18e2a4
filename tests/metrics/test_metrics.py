"""``GET /metrics``: valid Prometheus text, ledger figures per job, counters, process metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.api.app import create_app
from cronkeeper.config import Settings
from cronkeeper.http import RetryEvent
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.reads import last_success_statement
from cronkeeper.metrics import MetricsObserver, install_metrics
from cronkeeper.runner import run_job
from cronkeeper.sandbox import Fault, MetaSimulator
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import RunObserver, Service
from tests.conftest import SECRET, FakeClock, make_settings
from tests.support.plans import fill_history, query_plan

AUTH = {"Authorization": f"Bearer {SECRET}"}
JOBS = ("sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks")
Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Scrape:
    status_code: int
    content_type: str
    families: set[str]
    samples: dict[Key, float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


@dataclass
class Metrics:
    client: httpx.AsyncClient
    service: Service
    observer: MetricsObserver

    async def scrape(self) -> Scrape:
        response = await self.client.get("/metrics", headers=AUTH)
        assert response.status_code == 200, response.text
        families = list(text_string_to_metric_families(response.text))  # raises if invalid
        samples: dict[Key, float] = {}
        for family in families:
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in samples, f"duplicate series {key}"
                samples[key] = sample.value
        return Scrape(
            response.status_code,
            response.headers["content-type"],
            {f.name for f in families},
            samples,
        )


async def metrics_for(settings: Settings, clock: FakeClock) -> tuple[Metrics, FastAPI]:
    service = Service.from_settings(settings, clock=clock)
    app = FastAPI()
    observer = install_metrics(app, service)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return Metrics(client, service, observer), app


@pytest.fixture
async def metrics(settings: Settings, clock: FakeClock) -> AsyncIterator[Metrics]:
    m, _ = await metrics_for(settings, clock)
    async with m.client:
        yield m
    await m.service.aclose()


async def record_run(
    service: Service,
    clock: FakeClock,
    name: str,
    status: str | None,
    *,
    records: int = 0,
    seconds: float = 1.0,
    message: str | None = None,
) -> str:
    run_id = await service.ledger.start_cron_run(name)
    assert run_id is not None
    if status is not None:
        clock.advance(seconds=seconds)
        assert await service.ledger.complete_cron_run(run_id, status, records, message)
    return run_id


# -- authentication and format -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret-0123456789"}, {"Authorization": f"Basic {SECRET}"}],
    ids=["none", "wrong", "basic"],
)
async def test_metrics_need_the_bearer_token(metrics: Metrics, headers: dict[str, str]) -> None:
    response = await metrics.client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "cronkeeper_" not in response.text


async def test_metrics_are_prometheus_text_format_0_0_4(metrics: Metrics) -> None:
    scrape = await metrics.scrape()
    assert scrape.content_type.startswith("text/plain; version=0.0.4")
    assert scrape.value("cronkeeper_up") == 1
    assert scrape.value("cronkeeper_database_up") == 1


# -- figures from the ledger ---------------------------------------------------------------


async def test_last_run_figures_come_from_the_ledger_for_every_job(
    metrics: Metrics, clock: FakeClock
) -> None:
    service = metrics.service
    # collect-daily: a success, then a partial run (the latest).
    await record_run(service, clock, "collect-daily", "success", records=10, seconds=5)
    success_finished = clock.now
    clock.advance(minutes=10)
    partial_started = clock.now
    await record_run(
        service,
        clock,
        "collect-daily",
        "partial",
        records=7,
        seconds=3.25,
        message="skipped 1 of 2 accounts:\n- 42: HTTP 500",
    )
    # collect-mixpanel: only an error. sync-notion: still running. benchmarks: never ran.
    await record_run(service, clock, "collect-mixpanel", "error", seconds=2, message="boom")
    clock.advance(seconds=1)
    notion_started = clock.now
    await record_run(service, clock, "sync-notion", None)
    clock.advance(seconds=30)

    scrape = await metrics.scrape()

    start = "cronkeeper_last_run_start_timestamp_seconds"
    assert scrape.value(start, cron="collect-daily") == pytest.approx(partial_started.timestamp())
    assert scrape.value(start, cron="sync-notion") == pytest.approx(notion_started.timestamp())
    assert not scrape.has(start, cron="collect-benchmarks")

    duration = "cronkeeper_last_run_duration_seconds"
    assert scrape.value(duration, cron="collect-daily") == pytest.approx(3.25)
    assert scrape.value(duration, cron="collect-mixpanel") == pytest.approx(2.0)
    assert not scrape.has(duration, cron="sync-notion"), "a running run has no duration yet"

    records = "cronkeeper_last_run_records"
    assert scrape.value(records, cron="collect-daily") == 7
    assert scrape.value(records, cron="collect-mixpanel") == 0

    def statuses(job: str) -> dict[str, float]:
        return {
            s: scrape.value("cronkeeper_last_run_status", cron=job, status=s)
            for s in ("running", "success", "error", "partial")
        }

    assert statuses("collect-daily") == {"running": 0, "success": 0, "error": 0, "partial": 1}
    assert statuses("collect-mixpanel") == {"running": 0, "success": 0, "error": 1, "partial": 0}
    assert statuses("sync-notion") == {"running": 1, "success": 0, "error": 0, "partial": 0}
    assert statuses("collect-benchmarks") == {"running": 0, "success": 0, "error": 0, "partial": 0}

    success = "cronkeeper_last_success_timestamp_seconds"
    assert scrape.value(success, cron="collect-daily") == pytest.approx(
        success_finished.timestamp()
    )
    for job in ("collect-mixpanel", "sync-notion", "collect-benchmarks"):
        assert scrape.value(success, cron=job) == 0, "never succeeded: present, and 0"

    healthy = "cronkeeper_job_healthy"
    assert scrape.value(healthy, cron="collect-daily") == 1  # partial inside its window is ok
    assert scrape.value(healthy, cron="collect-mixpanel") == 0
    assert scrape.value(healthy, cron="collect-benchmarks") == 0
    assert not scrape.has(healthy, cron="sync-notion"), "sync-notion is not monitored by default"


async def test_ledger_figures_follow_new_runs_and_other_processes(
    settings: Settings, clock: FakeClock
) -> None:
    """A replica that ran nothing still reports the runs another process recorded."""
    writer = Service.from_settings(settings, clock=clock)
    reader, _ = await metrics_for(settings, clock)
    async with reader.client:
        before = await reader.scrape()
        assert not before.has("cronkeeper_last_run_start_timestamp_seconds", cron="collect-daily")
        await record_run(writer, clock, "collect-daily", "error", seconds=4)
        await record_run(writer, clock, "collect-daily", "success", records=12, seconds=6)
        after = await reader.scrape()
    await reader.service.aclose()
    await writer.aclose()
    assert after.value("cronkeeper_last_run_records", cron="collect-daily") == 12
    assert after.value("cronkeeper_last_run_duration_seconds", cron="collect-daily") == 6
    assert after.value("cronkeeper_last_success_timestamp_seconds", cron="collect-daily") == (
        pytest.approx(clock.now.timestamp())
    )
    # Nothing ran in the reader: its counters stay at 0.
    assert after.value("cronkeeper_runs_total", cron="collect-daily", status="success") == 0


async def test_job_health_turns_0_once_the_last_success_leaves_its_window(
    metrics: Metrics, clock: FakeClock
) -> None:
    await record_run(metrics.service, clock, "collect-daily", "success", records=1)
    assert (await metrics.scrape()).value("cronkeeper_job_healthy", cron="collect-daily") == 1
    clock.advance(hours=25)
    assert (await metrics.scrape()).value("cronkeeper_job_healthy", cron="collect-daily") == 0


@pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer
async def test_last_success_query_rides_the_partial_success_index(engine: AsyncEngine) -> None:
    """Not idx_cron_runs_name_started: there a job that is always ``partial`` is a walk over
    its whole history on every scrape (bench/metrics_scrape.py)."""
    await fill_history(engine)
    plan = await query_plan(engine, last_success_statement(list(JOBS)))
    assert "idx_cron_runs_success" in plan
    assert "idx_cron_runs_name_started" not in plan
    if engine.dialect.name == "postgresql":
        assert "Seq Scan" not in plan
        assert "Sort" not in plan
    else:
        assert "TEMP B-TREE" not in plan


# -- figures from this process's events ---------------------------------------------------


def _row(name: str, status: str, started: datetime) -> RunRow:
    return RunRow(
        id="00000000-0000-4000-8000-000000000001",
        cron_name=name,
        started_at=started,
        finished_at=started + timedelta(seconds=1),
        status=status,
        records_count=0,
        error_message=None,
    )


def finished(row: RunRow) -> Callable[[RunObserver], Awaitable[None]]:
    return lambda observer: observer.run_finished(row, None)


async def test_counters_count_runs_retries_and_abandoned_runs(
    metrics: Metrics, clock: FakeClock
) -> None:
    service = metrics.service
    assert metrics.observer in service.observers
    before = await metrics.scrape()
    for job in JOBS:
        for status in ("success", "error", "partial"):
            assert before.value("cronkeeper_runs_total", cron=job, status=status) == 0
        assert before.value("cronkeeper_retries_total", cron=job, reason="status_429") == 0
        assert before.value("cronkeeper_abandoned_runs_total", cron=job) == 0

    for status in ("success", "success", "partial", "error"):
        await service.notify(finished(_row("collect-daily", status, clock.now)))
    await service.notify(lambda o: o.run_abandoned("collect-mixpanel", ["a", "b"]))
    for reason in ("status_429", "status_429", "timeout", "meta_throttle"):
        event = RetryEvent(attempt=1, reason=reason, wait=3.0, url="https://x.test/")
        for observer in service.observers:  # as the runner's on_retry does
            observer.retry("collect-daily", event)

    after = await metrics.scrape()
    runs = "cronkeeper_runs_total"
    assert after.value(runs, cron="collect-daily", status="success") == 2
    assert after.value(runs, cron="collect-daily", status="partial") == 1
    assert after.value(runs, cron="collect-daily", status="error") == 1
    assert after.value(runs, cron="collect-mixpanel", status="success") == 0
    retries = "cronkeeper_retries_total"
    assert after.value(retries, cron="collect-daily", reason="status_429") == 2
    assert after.value(retries, cron="collect-daily", reason="timeout") == 1
    assert after.value(retries, cron="collect-daily", reason="meta_throttle") == 1
    assert after.value(retries, cron="collect-daily", reason="status_5xx") == 0
    assert after.value("cronkeeper_abandoned_runs_total", cron="collect-mixpanel") == 2
    assert {"cronkeeper_runs", "cronkeeper_retries", "cronkeeper_abandoned_runs"} <= (
        after.families
    )


async def test_process_metrics_are_exposed(metrics: Metrics) -> None:
    scrape = await metrics.scrape()
    names = scrape.names()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
    ):
        assert name in names, name
    assert any(n.startswith("python_gc_") for n in names)
    assert scrape.value("process_resident_memory_bytes") > 0


async def test_each_app_has_its_own_registry(settings: Settings, clock: FakeClock) -> None:
    first, _ = await metrics_for(settings, clock)
    second, _ = await metrics_for(settings, clock)  # no "Duplicated timeseries" error
    row = _row("collect-daily", "success", clock.now)
    await first.observer.run_finished(row, None)
    async with first.client, second.client:
        a, b = await first.scrape(), await second.scrape()
    await first.service.aclose()
    await second.service.aclose()
    assert a.value("cronkeeper_runs_total", cron="collect-daily", status="success") == 1
    assert b.value("cronkeeper_runs_total", cron="collect-daily", status="success") == 0


# -- database outages ---------------------------------------------------------------------


async def test_database_down_still_answers_200_with_database_up_0(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings("postgresql://u:pw-s3cret@127.0.0.1:1/none", ledger_timeout=1.0)
    m, _ = await metrics_for(settings, clock)
    async with m.client:
        await m.observer.run_finished(_row("collect-daily", "error", clock.now), None)
        scrape = await m.scrape()
    await m.service.aclose()
    assert scrape.value("cronkeeper_up") == 1
    assert scrape.value("cronkeeper_database_up") == 0
    assert not any(n.startswith("cronkeeper_last_") for n in scrape.names())
    assert "cronkeeper_job_healthy" not in scrape.names()
    # What this process knows is still there.
    assert scrape.value("cronkeeper_runs_total", cron="collect-daily", status="error") == 1
    assert "process_cpu_seconds_total" in scrape.names()
    assert "pw-s3cret" not in caplog.text
    assert any("ledger could not be read" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_database_up_follows_a_postgres_restart(
    metrics: Metrics, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    await record_run(metrics.service, clock, "collect-daily", "success", records=3)
    cluster = request.getfixturevalue("pg_cluster")
    assert (await metrics.scrape()).value("cronkeeper_database_up") == 1
    cluster.stop()
    try:
        down = await metrics.scrape()
        assert down.value("cronkeeper_database_up") == 0
        assert not down.has("cronkeeper_last_run_records", cron="collect-daily")
    finally:
        cluster.start()
    back = await metrics.scrape()
    assert back.value("cronkeeper_database_up") == 1
    assert back.value("cronkeeper_last_run_records", cron="collect-daily") == 3


# -- end to end: a real run through the runner ------------------------------------------------


async def test_a_real_run_shows_in_the_ledger_figures_and_the_counters(
    database_url: str, clock: FakeClock
) -> None:
    """collect-daily over the Meta simulator, through create_app's own app and the runner."""
    token = "meta-token-0123456789abcdef"
    sim = MetaSimulator(["1001", "1002"], access_token=token)
    sim.script("1001", Fault.status(429, retry_after="4"))
    sim.script("1002", Fault.status(503), Fault.status(502))

    async def no_sleep(seconds: float) -> None:
        return None

    with serve_app(sim.app) as meta_base:
        settings = make_settings(
            database_url,
            meta_access_token=token,
            meta_api_base=meta_base,
            meta_api_version="v27.0",
            meta_ad_account_ids=("1001", "1002"),
            meta_lookback_days=1,
        )
        service = Service.from_settings(settings, clock=clock, sleep=no_sleep)
        app = create_app(service)
        observer = install_metrics(app, service)
        m = Metrics(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test"),
            service,
            observer,
        )
        async with m.client:
            try:
                yesterday = clock.now.date() - timedelta(days=1)  # a day that is over
                result = await run_job(service, "collect-daily", yesterday)
                scrape = await m.scrape()
            finally:
                await service.aclose()
    assert result.status == "success"
    assert scrape.value("cronkeeper_runs_total", cron="collect-daily", status="success") == 1
    retries = "cronkeeper_retries_total"
    assert scrape.value(retries, cron="collect-daily", reason="status_429") == 1
    assert scrape.value(retries, cron="collect-daily", reason="status_5xx") == 2
    assert scrape.value("cronkeeper_last_run_records", cron="collect-daily") == 2
    assert scrape.value("cronkeeper_last_run_status", cron="collect-daily", status="success") == 1
    assert scrape.value("cronkeeper_last_success_timestamp_seconds", cron="collect-daily") == (
        pytest.approx(clock.now.timestamp())
    )


def test_the_last_ok_run_counts_a_tolerated_partial_and_not_one_beyond_it() -> None:
    """Issue 22: ``cronkeeper_last_ok_timestamp_seconds`` follows health's partial tolerance
    (``CRONKEEPER_PARTIAL_TOLERANCE``, 5 % by default)."""
    from datetime import UTC, datetime

    from cronkeeper.config import DEFAULT_JOBS
    from cronkeeper.ledger import RunRow
    from cronkeeper.metrics import last_ok

    def run(day: int, status: str, message: str | None) -> RunRow:
        at = datetime(2026, 11, day, 1, tzinfo=UTC)
        return RunRow(f"r{day}", "collect-daily", at, at, status, 10, message)

    daily = [s for s in DEFAULT_JOBS if s.name == "collect-daily"]
    within = run(20, "partial", "skipped 1 of 100 accounts:\n- act_1: HTTP 503")
    beyond = run(21, "partial", "skipped 50 of 100 accounts:\n- act_1: HTTP 503")
    unknown = run(19, "partial", None)
    success = datetime(2026, 11, 1, tzinfo=UTC)
    found = last_ok(daily, {"collect-daily": [beyond, within]}, {"collect-daily": success})
    assert found == {"collect-daily": within.finished_at}
    found = last_ok(daily, {"collect-daily": [beyond]}, {"collect-daily": success})
    assert found == {"collect-daily": success}, "beyond the tolerance: not ok"
    assert last_ok(daily, {"collect-daily": [unknown]}, {}) == {
        "collect-daily": unknown.finished_at
    }
    assert last_ok(daily, {}, {}) == {"collect-daily": None}
