"""Check-ins: crons cronkeeper does not run report their own runs (the seed's
``startCronRun`` / ``completeCronRun``, over HTTP).

- ``POST /api/cron/{name}/start`` → ``201 {"runId"}`` (optional ``{"reportDate"}``);
- ``POST /api/cron/runs/{id}/finish`` ``{"status", "recordsCount", "errorMessage"}`` → ``200``
  with the run; the same end again is ``200`` (an idempotent retry), another one ``409``;
- ``POST /api/cron/{name}/ping`` with the same body and ``durationSeconds`` → one finished run.

Credentials: ``Bearer CRON_SECRET``, or the job's own ping key (``ping_key_env`` in
``cronkeeper.toml``), which reports that job only and reads nothing (these three routes are
the only ones that accept it). Every wrong credential counts in the app's one limiter of
wrong secrets, as at every other door. Run ends reach the observers (watchdog, metrics) after
the answer is sent; a paused job's check-ins are recorded and alert nothing (the watchdog's
rule for every run).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, BackgroundTasks, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from cronkeeper.api.deps import get_service
from cronkeeper.auth import bearer_token, secret_matches
from cronkeeper.auth.bearer import check_bearer
from cronkeeper.errors import StorageError
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.checkins import finish_run, record_finished_run, start_run
from cronkeeper.runner import parse_report_date
from cronkeeper.service import Service

__all__ = ["MAX_BODY", "router"]

log = logging.getLogger("cronkeeper.api.checkins")

MAX_BODY = 64 * 1024
MAX_DURATION = timedelta(days=31)
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid body (the answer names the field)"},
    401: {"description": "missing or invalid bearer token or ping key"},
    404: {"description": "no such job (or run) for this credential"},
    413: {"description": "body over 64 KB"},
    429: {"description": "too many wrong secrets from this client (see Retry-After)"},
    500: {"description": "database unavailable"},
}
router = APIRouter(prefix="/api/cron", responses=RESPONSES, tags=["check-ins"])
M = TypeVar("M", bound=BaseModel)
# No length limit on the path here: FastAPI validates before the route's own bearer check, and
# a 422 there would answer callers without the secret; an over-long name is an unknown job.
JobName = Annotated[str, Path()]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StartBody(_Body):
    reportDate: str | None = Field(default=None, max_length=40)


class FinishBody(_Body):
    status: Literal["success", "partial", "error"]
    recordsCount: int = Field(default=0, ge=0, le=2**31 - 1)
    errorMessage: str | None = None


class PingBody(FinishBody):
    durationSeconds: float | None = Field(default=None, ge=0)
    startedAt: str | None = Field(default=None, max_length=40)
    """When the run started (ISO 8601 with offset): a late report, e.g. ``exec``'s spool."""
    reportDate: str | None = Field(default=None, max_length=40)


@dataclass(frozen=True)
class Caller:
    """Who checked in: the holder of ``CRON_SECRET`` (``jobs is None``: any job) or of the
    ping key of ``jobs``."""

    jobs: frozenset[str] | None

    def may_report(self, job: str) -> bool:
        return self.jobs is None or job in self.jobs


async def _caller(request: Request) -> Caller:
    """401 / 429 like :func:`~cronkeeper.auth.bearer.require_bearer`, but a job's ping key
    passes too (compared in constant time against every configured key)."""
    settings = (await get_service(request)).settings

    def accept(header: str | None) -> Caller | None:
        token = bearer_token(header)
        if secret_matches(token, settings.cron_secret):
            return Caller(None)
        jobs = frozenset(
            job
            for job, key in settings.ping_keys.items()
            if secret_matches(token, SecretStr(key))  # every key compared: no early exit
        )
        return Caller(jobs) if jobs else None

    return check_bearer(request, accept, wrong="wrong bearer token or ping key")


def _error(code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=code)


class _Refused(Exception):
    def __init__(self, answer: JSONResponse) -> None:
        self.answer = answer


async def _body(request: Request, model: type[M], *, optional: bool = False) -> M:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _Refused(_error(413, f"body over {MAX_BODY // 1024} KB"))
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise _Refused(_error(413, f"body over {MAX_BODY // 1024} KB"))
    if not raw.strip():
        if optional:
            return model()
        raise _Refused(_error(400, 'a JSON body is required, e.g. {"status": "success"}'))
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _Refused(_error(400, "the body is not JSON")) from None
    if not isinstance(data, dict):
        raise _Refused(_error(400, "the body must be a JSON object"))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = str(first["msg"])
        if first["type"] == "extra_forbidden":
            fields = ", ".join(model.model_fields)
            message = f"unknown field; fields are {fields}"
        raise _Refused(_error(400, f"{where}: {message}")) from None


def _report_date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return parse_report_date(text)
    except ValueError as exc:
        raise _Refused(_error(400, f"reportDate: {exc}")) from None


def _declared(service: Service, caller: Caller, job: str) -> None:
    names = service.settings.job_names
    if job not in names:
        raise _Refused(_error(404, f"unknown job {job!r}; declare it in cronkeeper.toml"))
    if not caller.may_report(job):
        raise _Refused(_error(404, f"unknown job {job!r} for this ping key"))


def _message(service: Service, text: str | None) -> str | None:
    return service.settings.redactor.message(text) if text else None


def _notify(service: Service, run: RunRow, tasks: BackgroundTasks) -> None:
    """Tell the observers (watchdog, metrics) after the answer has gone out: an alert's
    webhook must not hold a cron's check-in."""

    async def finished() -> None:
        previous: RunRow | None = None
        try:
            before = await service.ledger.last_runs([run.cron_name], 2)
            previous = next((r for r in before if r.id != run.id), None)
        except StorageError:
            pass
        await service.notify(lambda o: o.run_finished(run, previous))

    tasks.add_task(finished)


def _database_down(what: str, exc: StorageError) -> JSONResponse:
    log.error("check-in %s failed: %s", what, exc)
    return _error(500, "database unavailable")


@router.post("/{name}/start", status_code=201, summary="A cron started: its run id")
async def start(request: Request, name: JobName) -> JSONResponse:
    service = await get_service(request)
    caller = await _caller(request)
    try:
        _declared(service, caller, name)
        body = await _body(request, StartBody, optional=True)
        day = _report_date(body.reportDate)
    except _Refused as refused:
        return refused.answer
    try:
        run_id = await start_run(service.ledger, name, day)
    except StorageError as exc:
        return _database_down(f"start of {name}", exc)
    return JSONResponse({"runId": run_id}, status_code=201)


@router.post("/runs/{run_id}/finish", summary="A cron ended: its status and records")
async def finish(
    request: Request,
    tasks: BackgroundTasks,
    run_id: Annotated[str, Path()],
) -> JSONResponse:
    service = await get_service(request)
    caller = await _caller(request)
    if len(run_id) > 64:  # checked after the caller (see JobName)
        return _error(404, f"no run {run_id[:64]!r}")
    try:
        body = await _body(request, FinishBody)
    except _Refused as refused:
        return refused.answer
    jobs = caller.jobs
    message = _message(service, body.errorMessage)
    try:
        # A ping key reports its own job's runs only; a run of another job is "not found".
        outcome = await finish_run(
            service.ledger,
            run_id,
            body.status,
            body.recordsCount,
            message,
            cron_names=None if jobs is None else sorted(jobs),
        )
    except StorageError as exc:
        return _database_down(f"finish of run {run_id}", exc)
    if outcome.outcome == "unknown" or outcome.run is None:
        return _error(404, f"no run {run_id[:64]!r}")
    run = outcome.run
    if outcome.outcome == "conflict":
        return _error(409, f"run {run.id} already ended {run.status}", run=run.as_json())
    if outcome.outcome == "done":
        _notify(service, run, tasks)
    return JSONResponse(run.as_json())


@router.post("/{name}/ping", status_code=201, summary="A cron ran: one finished run at once")
async def ping(request: Request, tasks: BackgroundTasks, name: JobName) -> JSONResponse:
    service = await get_service(request)
    caller = await _caller(request)
    try:
        _declared(service, caller, name)
        body = await _body(request, PingBody)
        day = _report_date(body.reportDate)
    except _Refused as refused:
        return refused.answer
    seconds = body.durationSeconds or 0.0
    if not math.isfinite(seconds) or timedelta(seconds=seconds) > MAX_DURATION:
        return _error(400, f"durationSeconds: at most {MAX_DURATION.days} days")
    now = service.clock()
    started_at, finished_at = now - timedelta(seconds=seconds), now
    if body.startedAt is not None:
        try:
            started_at = datetime.fromisoformat(body.startedAt)
        except ValueError:
            return _error(400, "startedAt: expected ISO 8601 with an offset")
        if started_at.tzinfo is None:
            return _error(400, "startedAt: expected ISO 8601 with an offset")
        if not now - MAX_DURATION <= started_at <= now:
            return _error(400, f"startedAt: in the last {MAX_DURATION.days} days, not later")
        finished_at = min(now, started_at + timedelta(seconds=seconds))
    try:
        run = await record_finished_run(
            service.ledger,
            name,
            started_at=started_at,
            finished_at=finished_at,
            status=body.status,
            records_count=body.recordsCount,
            error_message=_message(service, body.errorMessage),
            report_date=day,
        )
    except StorageError as exc:
        return _database_down(f"ping of {name}", exc)
    _notify(service, run, tasks)
    return JSONResponse(run.as_json(), status_code=201)
