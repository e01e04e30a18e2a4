"""The FastAPI application: health, runs, job triggers, liveness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cronkeeper import __version__
from cronkeeper.alerting.pause import pause_job, pause_json, resume_job
from cronkeeper.alerting.watchdog import install_watchdog
from cronkeeper.api import checkins
from cronkeeper.api.deps import AUTH_RESPONSES, Authorized, ServiceDep
from cronkeeper.api.triggers import TriggeredRuns
from cronkeeper.auth import FailureLimiter, is_authorized, limiter_for
from cronkeeper.errors import AlreadyRunning, StorageError, UnknownJob
from cronkeeper.ledger.job_state import JobState
from cronkeeper.metrics import install_metrics
from cronkeeper.runner import RunProgress, RunResult, parse_report_date, run_job
from cronkeeper.scheduler import CronScheduler
from cronkeeper.service import Service
from cronkeeper.storage.schema import RUN_STATUSES
from cronkeeper.web import install_status_page

__all__ = ["create_app"]

log = logging.getLogger("cronkeeper.api")

DB_DOWN = {"healthy": False, "error": "database unavailable"}
HEALTH_PATH = "/api/cron/health"
JSON = "application/json"

Responses = dict[int | str, dict[str, Any]]
DB_ERROR: Responses = {500: {"description": "database unavailable"}}
router = APIRouter(prefix="/api/cron", dependencies=[Authorized], responses=AUTH_RESPONSES)
TRIGGER: dict[str, Any] = {  # GET and POST, each with its own operationId
    "summary": "Run a job now (for system cron, Vercel-style cron callers, or by hand)",
    "responses": {
        202: {
            "description": "still running after CRONKEEPER_TRIGGER_WAIT: "
            '{"runId", "cronName", "status": "running"}, Location: /api/cron/runs/{id}'
        },
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
) -> Response:
    status_code, body = await health_body(service, strict=strict)
    return Response(body, status_code=status_code, media_type=JSON)


async def health_body(service: Service, *, strict: bool) -> tuple[int, bytes]:
    """The health answer as a status code and a JSON body (the route and its fast path)."""
    try:
        answer = await service.health_answer()
    except StorageError as exc:
        log.error("health check failed: %s", exc)
        return 500, DB_DOWN_BODY
    return (503 if strict and not answer.report.healthy else 200), answer.body


DB_DOWN_BODY = orjson.dumps(DB_DOWN)
STRICT: dict[bytes, bool] = {
    b"": False,
    b"strict=0": False,
    b"strict=false": False,
    b"strict=1": True,
    b"strict=true": True,
}
"""The query strings the fast path answers; any other goes through FastAPI's validation."""


class HealthFastPath:
    """``GET /api/cron/health`` from an authorised client, answered before FastAPI's router.

    Issue 16: on one worker, routing through every route's pattern, solving the dependency
    tree and validating ``strict`` cost more than the whole health answer (which single
    flight and the shared evaluation make cheap). This middleware answers the common request
    itself with the very same pieces: the app's one :class:`FailureLimiter` consulted first
    (a blocked client is never compared), the constant-time bearer check, the shared answer
    and its body. Everything else (a wrong or missing bearer, a blocked client, another
    query string, another method) falls through to the FastAPI route, which answers it
    exactly as before: 401 with ``WWW-Authenticate``, 429 with ``Retry-After``, 422.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != HEALTH_PATH
            or scope["method"] != "GET"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        strict = STRICT.get(scope["query_string"])
        state = scope["app"].state
        service: Service | None = getattr(state, "service", None)
        if strict is None or service is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        limiter = limiter_for(state, service.clock)
        if limiter.retry_after(client[0] if client else "unknown") is not None:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        text = header.decode("latin-1") if header is not None else None
        if not is_authorized(text, service.settings.cron_secret):
            await self.app(scope, receive, send)  # counted and answered by the route
            return
        status, body = await health_body(service, strict=strict)
        start: Message = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode("ascii")),
                (b"content-type", JSON.encode("ascii")),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})


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


@router.get(
    "/runs/{run_id}",
    summary="One run's row (where a 202 from a trigger points)",
    responses={**DB_ERROR, 404: {"description": "unknown run"}},
)
async def run_by_id(
    service: ServiceDep, run_id: Annotated[str, Path(max_length=100)]
) -> JSONResponse:
    try:
        row = await service.ledger.get_run(run_id)
    except StorageError as exc:
        log.error("reading a run failed: %s", exc)
        return JSONResponse({"error": "database unavailable"}, status_code=500)
    if row is None:
        return JSONResponse({"error": "unknown run"}, status_code=404)
    return JSONResponse(row.as_json())


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
    return await _pausing(
        service, job, lambda: pause_job(service, job, for_=for_, reason=reason, by="api")
    )


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
    request: Request,
    job: str,
    day: Annotated[
        str | None,
        Query(alias="date", max_length=40, description="report date, YYYY-MM-DD (a day over)"),
    ] = None,
) -> JSONResponse:
    runs: TriggeredRuns = request.app.state.triggered
    try:
        # A str, parsed here: FastAPI's ``date`` also takes 1699920000 and 2026-11-29T00:00:00.
        report_date = None if day is None else parse_report_date(day)
        progress = RunProgress.new()
        # The run is the app's, not the request's: it goes on if the caller hangs up.
        task = runs.start(run_job(service, job, report_date, progress=progress), job)
        result = await _answer_within(service, task, progress)
    except UnknownJob as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except AlreadyRunning as exc:
        return JSONResponse({"error": str(exc), "cronName": job}, status_code=409)
    except ValueError as exc:  # not YYYY-MM-DD, before 2000, or not over yet
        return JSONResponse({"error": str(exc), "cronName": job}, status_code=400)
    except StorageError as exc:  # the lease refused the run (schema behind, permission)
        log.error("%s", exc)
        return JSONResponse({"error": str(exc), "cronName": job}, status_code=500)
    if isinstance(result, str | None):
        body = {"runId": result, "cronName": job, "status": "running"}
        headers = {"Location": f"/api/cron/runs/{result}"} if result else None
        return JSONResponse(body, status_code=202, headers=headers)
    return JSONResponse(result.as_json(), status_code=500 if result.status == "error" else 200)


async def _answer_within(
    service: Service, task: asyncio.Task[RunResult], progress: RunProgress
) -> RunResult | str | None:
    """The run's result if it ends within ``CRONKEEPER_TRIGGER_WAIT``, else its id once its
    row is open (still running). The refusals before the run (unknown job, already running,
    the lease's) are raised. The observers (webhook delivery) come after the result: never
    waited for here."""
    timer = asyncio.ensure_future(service.sleep(service.settings.trigger_wait_seconds))
    try:
        first: set[asyncio.Future[Any]] = {task, progress.ended, timer}
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not (task.done() or progress.ended.done() or progress.started.done()):
            # Time is up before the row was opened (a slow lease or insert, both bounded).
            opened: set[asyncio.Future[Any]] = {task, progress.started}
            await asyncio.wait(opened, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    if progress.ended.done():
        return progress.ended.result()
    if task.done():
        return task.result()  # raises the refusal
    return progress.started.result()


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
            await triggered.aclose()
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
    triggered = app.state.triggered = TriggeredRuns()
    service.closers.append(triggered.settle)  # a run answered 500/200 may still be notifying
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
    app.add_middleware(HealthFastPath)
    install_metrics(app, service)
    install_status_page(app, service)
    return app
