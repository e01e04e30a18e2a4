"""The status page's routes: ``/status``, ``/status/runs/{id}``, login and logout.

Server-rendered with Jinja2 (autoescaping on: error messages come from third-party APIs and
are shown as text, never as markup), no JavaScript, one stylesheet inlined and allowed by its
hash in the Content-Security-Policy, so the page runs no script at all.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Mapping
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from cronkeeper.auth import (
    SESSION_COOKIE,
    FailureLimiter,
    Sessions,
    client_address,
    limiter_for,
    safe_next,
    secret_matches,
)
from cronkeeper.auth.bearer import check_bearer
from cronkeeper.auth.secret import is_authorized
from cronkeeper.coverage import SourceCoverage, load_coverage
from cronkeeper.durations import format_duration
from cronkeeper.errors import StorageError
from cronkeeper.ledger.reads import FILTER_DEPTH
from cronkeeper.service import Service
from cronkeeper.storage.schema import RUN_STATUSES
from cronkeeper.versions import settings_warnings
from cronkeeper.web.view import STRIP_LENGTH, Clockface, build_jobs, format_seconds, run_state

__all__ = ["RECENT_LIMIT", "StatusPage", "install_status_page"]

log = logging.getLogger("cronkeeper.web")

RECENT_LIMIT = 50
COVERAGE_DAYS = 28
COOKIE_PATH = "/status"
STATES = (*RUN_STATUSES, "stuck")

_CSS = files("cronkeeper.web").joinpath("static/status.css").read_text(encoding="utf-8")
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cronkeeper.web", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["css"] = Markup(_CSS)  # noqa: S704 - our own stylesheet, hashed in the CSP
    env.filters["seconds"] = format_seconds
    env.filters["duration"] = format_duration
    env.globals["seconds_or_dash"] = format_seconds
    env.globals["count_or_dash"] = _count
    env.filters["summary"] = _summary
    return env


def _summary(text: str | None, limit: int = 160) -> str:
    """A message on one line for the table: its lines joined, cut at ``limit``."""
    if not text or not text.strip():
        return ""
    parts = (part.strip().removeprefix("- ") for part in text.strip().splitlines())
    line = " · ".join(part for part in parts if part)
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{round(value):,}"


class StatusPage:
    """The page's state for one app: the service, the session signer, the failure limiter."""

    def __init__(self, service: Service, *, limiter: FailureLimiter) -> None:
        """``limiter``: the app's, shared with the bearer API (see :func:`install_status_page`)."""
        self.service = service
        self.sessions = Sessions(service.settings.cron_secret, service.clock)
        self.limiter = limiter
        self.templates = _environment()
        self.router = APIRouter(include_in_schema=False)
        self.router.add_api_route("/status", self.status, methods=["GET"])
        self.router.add_api_route("/status/runs/{run_id}", self.run, methods=["GET"])
        self.router.add_api_route("/status/login", self.login_form, methods=["GET"])
        self.router.add_api_route("/status/login", self.login, methods=["POST"])
        self.router.add_api_route("/status/logout", self.logout, methods=["POST"])

    # -- rendering ------------------------------------------------------------------------

    def _clock(self) -> Clockface:
        return Clockface(self.service.settings.timezone, self.service.clock())

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.templates.get_template(name).render(clock=self._clock(), **context)
        return HTMLResponse(html, status_code=status_code, headers={**_HEADERS, **(headers or {})})

    def _signed_in(self, request: Request) -> bool:
        return self.sessions.valid(request.cookies.get(SESSION_COOKIE))

    def _admit(self, request: Request) -> Response | None:
        """``None`` for a signed-in person or a tool with ``Authorization: Bearer`` (a monitor,
        a screenshot: issue 22), through the one door (:func:`check_bearer`: the same limiter,
        429 before any compare, a wrong one counted); the login page for anyone else."""
        if self._signed_in(request):
            return None
        if request.headers.get("authorization") is None:
            return self._to_login(request)
        secret = self.service.settings.cron_secret
        try:
            check_bearer(
                request,
                lambda header: True if is_authorized(header, secret) else None,
                wrong="status page: wrong bearer token",
            )
        except HTTPException as refused:
            return PlainTextResponse(
                str(refused.detail), status_code=refused.status_code, headers=refused.headers
            )
        return None

    def _to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = "/status/login"
        if target != "/status":
            location += "?" + urlencode({"next": target})
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})

    def _unavailable(self, exc: StorageError) -> HTMLResponse:
        log.error("status page: %s", exc)
        return self.render(
            "error.html",
            {
                "title": "Database unavailable",
                "message": "The run ledger cannot be read right now. The crons keep running; "
                "this page shows their history again as soon as the database answers.",
            },
            status_code=503,
            headers={"Retry-After": "30"},
        )

    # -- pages ----------------------------------------------------------------------------

    async def status(
        self, request: Request, job: str | None = None, status: str | None = None
    ) -> Response:
        refused = self._admit(request)
        if refused is not None:
            return refused
        settings = self.service.settings
        names = [spec.name for spec in settings.jobs]
        job_filter = job if job in names else None
        state_filter = status if status in STATES else None
        # "stuck" is a judgement, not a stored status: read running rows, keep the stuck ones.
        stored_filter = "running" if state_filter == "stuck" else state_filter
        try:
            strips, recent = await self.service.ledger.history(
                names,
                per_job=STRIP_LENGTH,
                recent_from=[job_filter] if job_filter else names,
                limit=RECENT_LIMIT,
                status=stored_filter,
            )
        except StorageError as exc:
            return self._unavailable(exc)
        clock = self._clock()
        by_job: dict[str, list[Any]] = {name: [] for name in names}
        for row in strips:
            by_job[row.cron_name].append(row)
        for rows in by_job.values():
            rows.sort(key=lambda r: r.started_at, reverse=True)
        try:  # pauses: the page still shows the ledger without them
            states = await self.service.job_states.read(names)
        except StorageError:
            states = {}
        try:  # is a scheduler alive? (issue 22) Unknown: the page says "expected"
            scheduler = await self.service.heartbeats.read(clock.now, settings.watch_every)
        except StorageError:
            scheduler = None
        jobs = build_jobs(
            settings.jobs,
            by_job,
            clock,
            states,
            self.service.health_rules,
            scheduler_alive=scheduler.alive if scheduler is not None else None,
            system_cron=settings.system_cron,
        )
        specs = {spec.name: spec for spec in settings.jobs}
        table = [(row, run_state(row, specs.get(row.cron_name), clock.now)) for row in recent]
        if state_filter is not None:
            table = [(row, state) for row, state in table if state == state_filter]
        monitored = [j for j in jobs if j.badge != "unmonitored"]
        coverage = await self._coverage()
        try:  # alerts the webhook has not taken yet (the outbox retries them)
            undelivered: int | None = await self.service.alert_outbox.pending()
        except StorageError:
            undelivered = None
        return self.render(
            "status.html",
            {
                "jobs": jobs,
                "table": table,
                "names": names,
                "states": STATES,
                "job_filter": job_filter,
                "state_filter": state_filter,
                "failing": [j for j in monitored if j.badge == "not-ok"],
                "monitored": monitored,
                "recent_limit": RECENT_LIMIT,
                "filter_depth": FILTER_DEPTH,
                "strip_length": STRIP_LENGTH,
                "coverage": coverage,
                "coverage_days": COVERAGE_DAYS,
                "warnings": settings_warnings(settings, clock.now) + self.service.source_warnings,
                "undelivered": undelivered,
                "scheduler": scheduler,
            },
        )

    async def _coverage(self) -> list[SourceCoverage] | None:
        """The coverage section's data; ``None`` (the section says so) when it cannot be read
        in time: the rest of the page must not wait on it."""
        service = self.service

        async def load() -> list[SourceCoverage]:
            return await load_coverage(
                service.engine, service.settings, service.clock(), COVERAGE_DAYS
            )

        try:
            return await service.ledger.call(load)
        except StorageError:
            return None

    async def run(self, request: Request, run_id: str) -> Response:
        refused = self._admit(request)
        if refused is not None:
            return refused
        try:
            # Canonical form: SQLite stores the id as lower-case text, and a UUID pasted in
            # upper case (some tools print them so) must find its run there too.
            canonical: str | None = str(uuid.UUID(run_id))
        except ValueError:
            canonical = None
        try:
            row = None if canonical is None else await self.service.ledger.get_run(canonical)
        except StorageError as exc:
            return self._unavailable(exc)
        if row is None:
            return self.render(
                "error.html",
                {"title": "Run not found", "message": "There is no run with that id."},
                status_code=404,
            )
        specs = {spec.name: spec for spec in self.service.settings.jobs}
        state = run_state(row, specs.get(row.cron_name), self.service.clock())
        return self.render("run.html", {"run": row, "state": state})

    # -- access ---------------------------------------------------------------------------

    def _login_page(
        self,
        next_path: str,
        *,
        error: str | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        return self.render(
            "login.html",
            {"next": next_path, "error": error, "enabled": self.sessions.enabled},
            status_code=status_code,
            headers=headers,
        )

    def _cross_site(self, request: Request) -> HTMLResponse | None:
        """Refuse a form post another site made (browsers say so in ``Sec-Fetch-Site``)."""
        if request.headers.get("sec-fetch-site") != "cross-site":
            return None
        return self.render(
            "error.html",
            {"title": "Refused", "message": "Use the forms on the status page itself."},
            status_code=403,
        )

    async def login_form(self, request: Request, next: str | None = None) -> Response:
        target = safe_next(next)
        if self._signed_in(request):
            return RedirectResponse(target, status_code=303)
        return self._login_page(target)

    async def login(self, request: Request) -> Response:
        refused = self._cross_site(request)
        if refused is not None:
            return refused
        # The limiter, then a small read, before any parsing: a refused client or a 200 MB
        # multipart body used to be read and parsed whole first (issue 19).
        client = client_address(request)
        wait = self.limiter.retry_after(client)
        if wait is not None:
            minutes = max(1, round(wait / 60))
            return self._login_page(
                safe_next(None),
                error=f"Too many wrong secrets. Try again in about {minutes} min.",
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        form = await _small_form(request, LOGIN_FORM_LIMIT)
        if isinstance(form, Response):
            return form
        secret = form.get("secret", "")
        target = safe_next(form.get("next"))
        if not self.sessions.enabled:
            return self._login_page(
                target, error="Sign-in is disabled: CRON_SECRET is not set.", status_code=401
            )
        if not secret_matches(secret, self.service.settings.cron_secret):
            self.limiter.failed(client)
            log.warning("status page: wrong secret from %s", client)
            return self._login_page(target, error="That is not the secret.", status_code=401)
        self.limiter.succeeded(client)
        response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue(),
            max_age=self.sessions.max_age,
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        refused = self._cross_site(request)
        if refused is not None:
            return refused
        response = RedirectResponse("/status/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE,
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response


LOGIN_FORM_LIMIT = 8 * 1024
"""The login form holds a secret and a path: a few hundred bytes."""


async def _small_form(request: Request, limit: int) -> dict[str, str] | Response:
    """The URL-encoded form of ``request``, read up to ``limit`` bytes; a 413 past it, a 415
    for any other encoding (the login form sends nothing else)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return PlainTextResponse("send the form URL-encoded", status_code=415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return PlainTextResponse("form too large", status_code=413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return PlainTextResponse("form too large", status_code=413)
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs[:16])


def install_status_page(app: FastAPI, service: Service) -> None:
    """Add ``/status`` (and its login) to ``app``, reading ``service``'s ledger and settings."""
    if getattr(app.state, "status_page", False):  # create_app already did it
        return
    app.state.status_page = True
    if getattr(app.state, "service", None) is None:  # the bearer door reads it (check_bearer)
        app.state.service = service
    limiter = limiter_for(app.state, service.clock)
    app.include_router(StatusPage(service, limiter=limiter).router)
