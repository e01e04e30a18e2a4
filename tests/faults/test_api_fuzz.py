"""Fuzz the HTTP API from its own OpenAPI document (schemathesis), over real uvicorn.

With the bearer, no answer is a 5xx except the documented ones: a triggered run that ended
``error`` answers 500 with the run JSON, and ``?strict=1`` answers 503 while unhealthy. A
trigger may answer 202 (still running after ``CRONKEEPER_TRIGGER_WAIT``).
Without it (or with a wrong one), everything but ``/healthz`` is 401 and no job runs.
Triggered jobs cannot reach the network: no credentials are configured (they end ``error``
with a ConfigError before any call), and every API base points at a local simulator whose
request log must stay empty. One served app per backend for the whole module.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case
from sqlalchemy.pool import NullPool

from cronkeeper.api.app import create_app
from cronkeeper.auth import FailureLimiter
from cronkeeper.jobs import JOBS
from cronkeeper.sandbox import MetaSimulator, MixpanelSimulator, NotionSimulator, serve_apps
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine
from tests.conftest import BACKENDS, SECRET, fresh_postgres_database, make_settings, migrated
from tests.support.pg import PgCluster

AUTH = {"Authorization": f"Bearer {SECRET}"}
RUN_KEYS = {"runId", "cronName", "date", "status", "recordsCount", "errorMessage"}
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is a bug, never bad luck
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Target:
    url: str
    database_url: str
    simulators: tuple[MetaSimulator, MixpanelSimulator, NotionSimulator]

    def api_calls(self) -> int:
        return sum(len(sim.log) for sim in self.simulators)

    def count_runs(self) -> int:
        async def count() -> int:
            engine = create_engine(self.database_url, poolclass=NullPool)
            service = Service.from_settings(make_settings(self.database_url), engine=engine)
            try:
                return await service.ledger.count_runs()
            finally:
                await service.aclose()

        return asyncio.run(count())


@pytest.fixture(scope="module", params=[b for b in ("sqlite", "postgresql") if b in BACKENDS])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """create_app over real uvicorn on a migrated database of the backend, for this module."""
    cluster: PgCluster | None = None
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        name = fresh_postgres_database(cluster)
        database_url = cluster.url(name)
    else:
        database_url = migrated(f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/ledger.db")
    sims = (MetaSimulator(["1"]), MixpanelSimulator(["1"]), NotionSimulator([]))
    try:
        with serve_apps(*(sim.app for sim in sims)) as (meta, mixpanel, notion):
            settings = make_settings(
                database_url,
                meta_api_base=meta,
                mixpanel_api_base=f"{mixpanel}/api/query",
                notion_api_base=notion,
            )
            # NullPool: the app's event loop is uvicorn's, in its own thread.
            engine = create_engine(database_url, poolclass=NullPool)
            service = Service.from_settings(settings, engine=engine)
            # Every case sends a wrong secret from 127.0.0.1: a limiter that never blocks, so
            # each answer is the one for that case (the limiter is tested in tests/api).
            never_blocks = FailureLimiter(service.clock, max_failures=1_000_000)
            app = create_app(service, own_service=False, limiter=never_blocks)
            with serve_apps(app) as (url,):
                yield Target(url, database_url, sims)
    finally:
        if cluster is not None:
            cluster.start()  # a no-op unless a test left it stopped
            cluster.drop_database(name)


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document; building the app opens no connection."""
    settings = make_settings("sqlite:///:memory:")
    return create_app(Service.from_settings(settings)).openapi()


DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.hook
def before_generate_path_parameters(ctx: Any, strategy: Any) -> Any:
    """Mix the real job names into ``{job}`` and ``{name}``: random strings alone would only
    ever 404. ``{run_id}`` stays random (an unknown run is a documented 404)."""
    path = ctx.operation.path if ctx.operation is not None else ""
    for param in ("job", "name"):
        if "{" + param + "}" in path:
            return strategy | st.fixed_dictionaries({param: st.sampled_from(sorted(JOBS))})
    return strategy


def wrong_method(case: Case[Any]) -> bool:
    """Schemathesis also sends methods a path does not have (``DELETE /healthz``)."""
    return case.method.lower() not in DOCUMENT["paths"][case.operation.path]


def documented(case: Case[Any]) -> set[int]:
    return {int(code) for code in case.operation.definition.raw["responses"] if code.isdigit()}


def check_body(case: Case[Any], response: Any) -> None:
    """The shapes the README promises, per route and status."""
    path, status = case.operation.path, response.status_code
    if status == 422:
        assert isinstance(response.json()["detail"], list)
    elif path == "/healthz":
        assert response.json() == {"status": "ok"}
    elif path == "/api/cron/health":
        assert set(response.json()) >= {"healthy", "checks", "missing"}
    elif path == "/api/cron/runs" and status == 400:  # unknown job or status
        assert "error" in response.json()
    elif path == "/api/cron/runs":
        runs = response.json()["runs"]
        assert isinstance(runs, list)
        assert all({"id", "cronName", "status"} <= set(run) for run in runs), runs
    elif path == "/api/cron/{job}" and status in (400, 404):  # bad date, unknown job
        assert "error" in response.json()
    elif path == "/api/cron/{job}" and status == 202:  # still running after the wait
        body = response.json()
        assert set(body) == {"runId", "cronName", "status"}
        assert body["status"] == "running"
        assert response.headers["location"] == f"/api/cron/runs/{body['runId']}"
    elif path == "/api/cron/runs/{run_id}" and status == 404:
        assert response.json() == {"error": "unknown run"}
    elif path == "/api/cron/{job}":
        body = response.json()
        assert set(body) >= RUN_KEYS
        assert body["cronName"] in JOBS
        assert body["status"] in {"success", "partial", "error"}
    elif path == "/metrics":
        assert "cronkeeper_" in response.text


@schema.parametrize()
@FUZZ
def test_with_the_bearer_nothing_fails_but_a_failed_run(case: Case[Any], target: Target) -> None:
    response = case.call(base_url=target.url, headers=AUTH, timeout=30)
    status = response.status_code
    assert SECRET not in response.text
    if wrong_method(case):
        assert status == 405, (case.method, case.operation.path, status)
        return
    assert status in documented(case), (case.operation.label, status, response.text)
    if status == 500:
        # With the database up, the one 500 the README documents: a run that ended `error`.
        assert case.operation.path == "/api/cron/{job}", (case.operation.label, response.text)
        assert response.json()["status"] == "error", response.text
    if status == 503:  # ?strict=1 while unhealthy (nothing has succeeded here)
        assert response.json()["healthy"] is False, response.text
    check_body(case, response)
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.response_schema_conformance,
        ],
    )
    assert target.api_calls() == 0, "a triggered job called an API"


@schema.parametrize()
@FUZZ
def test_without_the_bearer_everything_but_liveness_is_401(case: Case[Any], target: Target) -> None:
    trigger = case.operation.path == "/api/cron/{job}"
    runs_before = target.count_runs() if trigger else 0
    response = case.call(
        base_url=target.url, headers={"Authorization": f"Bearer {SECRET}-not"}, timeout=30
    )
    if wrong_method(case):
        assert response.status_code == 405  # routing answers before auth; it reveals nothing
        return
    if case.operation.path == "/healthz":
        assert response.status_code == 200
        return
    assert response.status_code == 401, (case.operation.label, response.text)
    assert response.headers["www-authenticate"] == ["Bearer"]
    anonymous = case.call(base_url=target.url, timeout=30)
    assert anonymous.status_code == 401
    if trigger:
        assert target.count_runs() == runs_before, "a job ran without the secret"


@pytest.mark.parametrize("job", ["%00", "collect-daily%00x", "%C3%A9", "%FF", "a" * 100])
def test_a_runs_filter_the_database_cannot_hold_is_not_a_database_outage(
    target: Target, job: str
) -> None:
    # PostgreSQL refuses NUL in text: found by fuzzing, it answered 500 "database unavailable".
    response = httpx.get(f"{target.url}/api/cron/runs?job={job}", headers=AUTH)
    assert response.status_code in (400, 422), response.text
    if response.status_code == 400:  # not a job: the same refusal as every unknown job
        assert response.json()["error"].startswith("unknown job"), response.text


def test_the_openapi_document_has_unique_operation_ids_and_names_every_status() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns about a duplicate operationId
        document = openapi_document()
    operations = [op for item in document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)), ids

    def codes(path: str, method: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    assert codes("/api/cron/health", "get") >= {"200", "401", "500", "503"}
    assert codes("/api/cron/runs", "get") >= {"200", "401", "500"}
    for method in ("get", "post"):
        assert codes("/api/cron/{job}", method) >= {"200", "401", "404", "409", "500"}


def test_the_schema_is_served_behind_the_bearer_and_the_docs_ui_is_off(target: Target) -> None:
    """Issue 12: every endpoint but /healthz needs the bearer, the schema included."""
    response = httpx.get(f"{target.url}/openapi.json", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["paths"].keys() == DOCUMENT["paths"].keys()
    anonymous = httpx.get(f"{target.url}/openapi.json")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert "paths" not in anonymous.text
    for docs in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert httpx.get(f"{target.url}{docs}", headers=AUTH).status_code == 404
