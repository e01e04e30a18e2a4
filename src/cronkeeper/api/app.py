"""The FastAPI application: health, runs, job triggers, liveness."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, RedirectResponse

from cronkeeper import __version__
from cronkeeper.alerting.pause import pause_job, pause_json, resume_job
from cronkeeper.api import checkins
from cronkeeper.api.deps import AUTH_RESPONSES, Authorized, ServiceDep
from cronkeeper.auth import FailureLimiter
from cronkeeper.errors import AlreadyRunning, StorageError, UnknownJob
from cronkeeper.ledger.job_state import JobState
from cronkeeper.ops.metrics import install_metrics
from cronkeeper.ops.watchdog import install_watchdog
from cronkeeper.runner import parse_report_date, run_job
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from cronkeeper.storage.schema import RUN_STATUSES
from cronkeeper.web import install_status_page

__all__ = ["create_app"]

log = logging.getLogger("cronkeeper.api")

DB_DOWN = {"healthy": False, "error": "database unavailable"}

Responses = dict[int | str, dict[str, Any]]
DB_ERROR: Responses = {500: {"description": "database unavailable"}}
router = APIRouter(prefix="/api/cron", dependencies=[Authorized], responses=AUTH_RESPONSES)
TRIGGER: dict[str, Any] = {  # GET and POST, each with its own operationId
    "summary": "Run a job now (for system cron, Vercel-style cron callers, or by hand)",
    "responses": {
        400: {"description": "report date not YYYY-MM-DD, before 2000 or not over yet"},
        404: {"description": "unknown job"},
        409: {"description": "already running"},
        500: {"description": "the run ended error (the body is the run JSON)"},
    },
}


@router.get(
    "/health",
    summary="Are the monitored crons healthy?",
    responses={**DB_ERROR, 503: {"description": "unhealthy, with ?strict=1"}},
)
async def health(
    service: ServiceDep,
    strict: Annotated[bool, Query(description="answer 503 when unhealthy")] = False,
) -> JSONResponse:
    try:
        report = await service.health()
    except StorageError as exc:
        log.error("health check failed: %s", exc)
        return JSONResponse(DB_DOWN, status_code=500)
    status_code = 503 if strict and not report.healthy else 200
    body = report.as_json() | {"warnings": service.warnings()}
    return JSONResponse(body, status_code=status_code)


@router.get(
    "/runs",
    summary="Recent runs, newest first",
    responses={**DB_ERROR, 400: {"description": "unknown job or status"}},
)
async def runs(
    service: ServiceDep,
    # No NUL: PostgreSQL refuses it in text, which would read as "database unavailable".
    job: Annotated[str | None, Query(max_length=100, pattern="^[^\\x00]*$")] = None,
    status: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> JSONResponse:
    # An unknown job or status is a 400 with the `{"error"}` body every other refusal has (the
    # CLI exits 2 for the same); it once answered 200 with no runs, or a raw validation body.
    names = [spec.name for spec in service.settings.jobs]
    if job is not None and job not in names:
        return JSONResponse(
            {"error": f"unknown job {job!r}; jobs are {', '.join(names)}"}, status_code=400
        )
    if status is not None and status not in RUN_STATUSES:
        return JSONResponse(
            {"error": f"unknown status {status!r}; statuses are {', '.join(RUN_STATUSES)}"},
            status_code=400,
        )
    try:
        rows = await service.ledger.recent_runs(
            cron_name=job, status=status, limit=limit, cron_names=names
        )
    except StorageError as exc:
        log.error("listing runs failed: %s", exc)
        return JSONResponse({"error": "database unavailable"}, status_code=500)
    return JSONResponse({"runs": [row.as_json() for row in rows]})


PAUSE: dict[str, Any] = {
    "responses": {
        400: {"description": "invalid duration"},
        404: {"description": "unknown job"},
        **DB_ERROR,
    }
}


@router.post("/{job}/pause", summary="Pause a job: not fired, no alert, ok in health", **PAUSE)
async def pause(
    service: ServiceDep,
    job: str,
    for_: Annotated[
        str | None, Query(alias="for", max_length=20, description="e.g. 2h; ends by itself")
    ] = None,
    reason: Annotated[str | None, Query(max_length=500, pattern="^[^\\x00]*$")] = None,
) -> JSONResponse:
    return await _pausing(service, job, lambda: pause_job(service, job, for_=for_, reason=reason))


@router.post("/{job}/resume", summary="End a job's pause now", **PAUSE)
async def resume(service: ServiceDep, job: str) -> JSONResponse:
    return await _pausing(service, job, lambda: resume_job(service, job))


async def _pausing(
    service: Service, job: str, change: Callable[[], Awaitable[JobState]]
) -> JSONResponse:
    try:
        row = await change()
    except UnknownJob as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except ValueError as exc:
        return JSONResponse({"error": f"for: {exc}", "cronName": job}, status_code=400)
    except StorageError as exc:
        log.error("pausing or resuming %s failed: %s", job, exc)
        return JSONResponse({"error": "database unavailable"}, status_code=500)
    return JSONResponse(pause_json(row, service.clock()))


@router.get("/{job}", operation_id="trigger_job_get", **TRIGGER)
@router.post("/{job}", operation_id="trigger_job_post", **TRIGGER)
async def trigger(
    service: ServiceDep,
    job: str,
    day: Annotated[
        str | None,
        Query(alias="date", max_length=40, description="report date, YYYY-MM-DD (a day over)"),
    ] = None,
) -> JSONResponse:
    try:
        # A str, parsed here: FastAPI's ``date`` also takes 1699920000 and 2026-11-29T00:00:00.
        result = await run_job(service, job, None if day is None else parse_report_date(day))
    except UnknownJob as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except AlreadyRunning as exc:
        return JSONResponse({"error": str(exc), "cronName": job}, status_code=409)
    except ValueError as exc:  # not YYYY-MM-DD, before 2000, or not over yet
        return JSONResponse({"error": str(exc), "cronName": job}, status_code=400)
    except StorageError as exc:  # the lease refused the run (schema behind, permission)
        log.error("%s", exc)
        return JSONResponse({"error": str(exc), "cronName": job}, status_code=500)
    return JSONResponse(result.as_json(), status_code=500 if result.status == "error" else 200)


def create_app(
    service: Service,
    *,
    own_service: bool = True,
    scheduler: bool = False,
    limiter: FailureLimiter | None = None,
) -> FastAPI:
    """The app around ``service``.

    ``own_service``: dispose of the engine at shutdown. ``scheduler``: also run every job on
    its schedule in this process (``cronkeeper serve --scheduler``); with several replicas the
    database lease lets only one of them run each fire. ``limiter``: the one limiter of wrong
    secrets for every door (default: 5 per client in 5 minutes, on the service's clock).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.prepare()  # never raises: health answers 500 until the database is back
        cron = CronScheduler(service) if scheduler else None
        watchdog = install_watchdog(service) if scheduler else None
        if cron is not None:
            await cron.start()
        if watchdog is not None:
            watchdog.start()  # next to the scheduler: absences alert even when nothing runs
        try:
            yield
        finally:
            if watchdog is not None:
                await watchdog.stop()
            if cron is not None:
                await cron.shutdown()
            if own_service:
                await service.aclose()

    app = FastAPI(
        title="cronkeeper",
        version=__version__,
        lifespan=lifespan,
        # Served below behind the bearer like every other endpoint; no docs UI (it would
        # fetch the schema without the header).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.auth_limiter = FailureLimiter(service.clock) if limiter is None else limiter

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Authorized])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/healthz", summary="Liveness: the process answers (no auth, no database)")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/status", status_code=307)

    app.include_router(router)
    app.include_router(checkins.router)
    install_metrics(app, service)
    install_status_page(app, service)
    return app
