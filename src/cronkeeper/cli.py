"""The ``cronkeeper`` command.

Exit codes are part of the contract: ``run`` 0 success, 3 partial, 1 error, 75 already
running; ``health`` 0 healthy, 1 unhealthy, 2 database error; ``check`` 0 every job ok or
paused, 1 a job down, 2 database error; 2 for bad configuration or usage everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from cronkeeper.config import Settings
from cronkeeper.errors import (
    AlreadyRunning,
    ConfigError,
    CronkeeperError,
    StorageError,
    UnknownJob,
    first_line,
)
from cronkeeper.inert import printable
from cronkeeper.logs import configure_logging
from cronkeeper.redact import Redactor
from cronkeeper.runs_table import print_runs
from cronkeeper.storage.url import safe_url

if TYPE_CHECKING:
    from cronkeeper.ledger.job_state import JobState
    from cronkeeper.service import Service

__all__ = ["app", "main"]

T = TypeVar("T")
MIN_SECRET_LENGTH = 16
_redactor = Redactor()  # the loaded settings' one, for the last-resort message in main()

# Plain click help: Typer's Rich panels print a type column that shows flags as `--help <bool>`.
app = typer.Typer(
    help="Scheduled marketing-data collection with a run ledger and a health check.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")
alert_app = typer.Typer(help="Alert channels.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(alert_app, name="alert")
out = Console()
err = Console(stderr=True, soft_wrap=True)  # one message, one line, whatever the width


def _print_version(value: bool) -> None:
    if value:
        from cronkeeper import __version__

        out.print(f"cronkeeper {__version__}", highlight=False, markup=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Scheduled marketing-data collection with a run ledger and a health check."""


def say_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(printable(message))}", highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    say_error(message)
    raise typer.Exit(code)


def load_settings(*, verbose: bool = False) -> Settings:
    """The settings, or exit 2 with one line per problem, each naming its variable."""
    global _redactor
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = []
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem["loc"]).upper()
            message = problem["msg"].removeprefix("Value error, ")
            # A field's error names its variable here; a cross-field one names it itself.
            named = f"{where}: {message}" if where and not message.startswith(where) else message
            lines.append(f"invalid configuration: {named}")
        fail("\nerror: ".join(lines))
    configure_logging(settings.redactor, logging.DEBUG if verbose else logging.INFO)
    _redactor = settings.redactor
    return settings


@asynccontextmanager
async def opened(
    settings: Settings, *, alerts: bool = False, announce: bool = False
) -> AsyncIterator[Service]:
    """The service of one command: alerts wired if asked, schema prepared, engine disposed."""
    from cronkeeper.alerting.watchdog import install_watchdog
    from cronkeeper.service import Service

    service = Service.from_settings(settings)
    try:
        if alerts:
            try:
                install_watchdog(service)
            except ConfigError as exc:  # e.g. ALERT_WEBHOOK_URL that is not a URL
                fail(str(exc))
        await service.prepare(announce=announce)  # others fail with one line of their own
        yield service
    finally:
        await service.aclose()


def database_failed(settings: Settings, exc: StorageError) -> int:
    """Say why on stderr (redacted); exit code 2, the contract's "database error"."""
    say_error(settings.redactor(str(exc)))
    return 2


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await factory()

    return asyncio.run(wrapper())


def parse_day(value: str | None) -> date | None:
    from cronkeeper.runner import parse_report_date

    if value is None:
        return None
    try:
        return parse_report_date(value)
    except ValueError as exc:
        fail(str(exc))


@app.command()
def run(
    job: Annotated[
        str,
        typer.Argument(help="sync-notion, collect-daily, collect-mixpanel or collect-benchmarks"),
    ],
    day: Annotated[
        str | None, typer.Option("--date", help="report date YYYY-MM-DD (default: yesterday)")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="sync-notion: deactivate above NOTION_MAX_DEACTIVATE"),
    ] = False,
) -> None:
    """Run one job now and record it in the ledger (exit 0 success, 3 partial, 1 error, 75 busy)."""
    from cronkeeper.runner import EXIT_ALREADY_RUNNING, EXIT_CODES, run_job

    settings = load_settings()
    if force:
        if job != "sync-notion":
            fail("--force applies to sync-notion only (deactivations above the limit)")
        settings = settings.model_copy(update={"notion_max_deactivate": 1.0})
    report_day = parse_day(day)

    async def go() -> int:
        try:
            async with opened(settings, alerts=True, announce=True) as service:
                result = await run_job(service, job, report_day)
        except (UnknownJob, ValueError) as exc:
            fail(str(exc))
        except AlreadyRunning as exc:
            err.print(f"[yellow]{exc}[/]; no run recorded", highlight=False)
            return EXIT_ALREADY_RUNNING
        except StorageError as exc:  # no engine at all (a SQLite directory it cannot create)
            return database_failed(settings, exc)
        out.print_json(json.dumps(result.as_json()))
        return EXIT_CODES[result.status]

    raise typer.Exit(run_async(go))


@app.command()
def health() -> None:
    """Print the health JSON (exit 0 healthy, 1 unhealthy, 2 database error)."""
    settings = load_settings()

    async def go() -> int:
        try:
            async with opened(settings) as service:
                report = await service.health()
        except StorageError as exc:
            out.print_json(json.dumps({"healthy": False, "error": "database unavailable"}))
            return database_failed(settings, exc)
        warnings = service.warnings() + report.warnings  # as GET /api/cron/health
        out.print_json(json.dumps(report.as_json() | {"warnings": warnings}))
        return 0 if report.healthy else 1

    raise typer.Exit(run_async(go))


@app.command()
def check() -> None:
    """Evaluate every job's alert state once and send what changed (for system cron).

    Exit 0 every job ok or paused, 1 a job is down (missing, stuck, failed, anomalous),
    2 database error.
    """
    from cronkeeper.alerting.state import DOWN_STATES
    from cronkeeper.alerting.watchdog import EXIT_CHECK_DOWN, EXIT_CHECK_OK, install_watchdog

    settings = load_settings()

    async def go() -> int:
        try:
            async with opened(settings, alerts=True) as service:
                changes = await install_watchdog(service).check()
        except StorageError as exc:
            return database_failed(settings, exc)
        out.print_json(json.dumps({"jobs": {c.job: c.as_json() for c in changes}}))
        return EXIT_CHECK_DOWN if any(c.state in DOWN_STATES for c in changes) else EXIT_CHECK_OK

    raise typer.Exit(run_async(go))


@alert_app.command("test")
def alert_test() -> None:
    """Send one test message to each channel (ALERT_WEBHOOK_URL, ALERT_URLS).

    Exit 0 every channel took it, 1 a channel did not, 2 no channel or an unusable URL.
    """
    from cronkeeper.alerting.channels import send_test

    settings = load_settings()
    try:
        results = run_async(lambda: send_test(settings))
    except ConfigError as exc:
        fail(str(exc))
    if not results:
        fail("no alert channel configured: set ALERT_URLS or ALERT_WEBHOOK_URL")
    out.print_json(json.dumps({"channels": [r.as_json() for r in results]}))
    raise typer.Exit(0 if all(r.delivered for r in results) else 1)


@app.command()
def pause(
    job: Annotated[str, typer.Argument(help="the job to pause")],
    for_: Annotated[
        str | None, typer.Option("--for", help="end the pause by itself after this, e.g. 2h")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="why, shown in health")] = None,
) -> None:
    """Pause a job: the scheduler skips it, no alert, ok in health (exit 0; 2 error)."""
    from cronkeeper.alerting.pause import pause_job

    pausing(lambda service: pause_job(service, job, for_=for_, reason=reason, by="cli"))


@app.command()
def resume(job: Annotated[str, typer.Argument(help="the job to resume")]) -> None:
    """End a job's pause now (exit 0; 2 error)."""
    from cronkeeper.alerting.pause import resume_job

    pausing(lambda service: resume_job(service, job), alerts=True)  # re-evaluates: may alert


def pausing(change: Callable[[Service], Awaitable[JobState]], *, alerts: bool = False) -> NoReturn:
    """Pause or resume, print the pause as JSON, exit 0; 2 for bad input or the database."""
    from cronkeeper.alerting.pause import pause_json

    settings = load_settings()

    async def go() -> int:
        try:
            async with opened(settings, alerts=alerts) as service:
                row = await change(service)
                now = service.clock()
        except UnknownJob as exc:
            fail(str(exc))
        except ValueError as exc:
            fail(f"--for: {exc}")
        except StorageError as exc:
            return database_failed(settings, exc)
        out.print_json(json.dumps(pause_json(row, now)))
        return 0

    raise typer.Exit(run_async(go))


@app.command()
def runs(
    job: Annotated[str | None, typer.Option(help="only this job")] = None,
    status: Annotated[str | None, typer.Option(help="running, success, error or partial")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Show the most recent runs, newest first (exit 2 for an unknown job or status)."""
    settings = load_settings()
    if job is not None and job not in settings.job_names:
        fail(f"unknown job {job!r}; jobs are {', '.join(settings.job_names)}")

    async def go() -> int:
        try:
            async with opened(settings) as service:
                rows = await service.ledger.recent_runs(
                    cron_name=job, status=status, limit=limit, cron_names=settings.job_names
                )
        except StorageError as exc:
            return database_failed(settings, exc)
        except ValueError as exc:
            fail(str(exc))
        if as_json:
            out.print_json(json.dumps([r.as_json() for r in rows]))
            return 0
        print_runs(out, rows, settings.tz, settings.timezone)
        return 0

    raise typer.Exit(run_async(go))


@app.command("exec")
def exec_command(
    job: Annotated[str, typer.Argument(help="the job, declared in cronkeeper.toml")],
    command: Annotated[list[str], typer.Argument(help="-- COMMAND [ARGS…]", show_default=False)],
) -> None:
    """Run COMMAND as a recorded run of JOB, for crontab lines: exit status 0 success,
    3 partial, else error; exits with the command's status (75 when JOB is already running,
    2 for bad usage). Over HTTP when CRONKEEPER_URL is set."""
    from cronkeeper.wrapper import EXIT_ALREADY_RUNNING, exec_job

    settings = load_settings()
    # cron mails whatever a line prints: only problems, never cronkeeper's routine lines.
    logging.getLogger("cronkeeper").setLevel(logging.WARNING)
    if job not in settings.job_names:
        fail(f"unknown job {job!r}; declare it in cronkeeper.toml as an external job")
    if settings.job(job).kind == "builtin":
        fail(f"{job} is a built-in job: cronkeeper runs it itself (cronkeeper run {job})")
    try:
        code = run_async(lambda: exec_job(settings, job, command))
    except AlreadyRunning as exc:
        err.print(f"[yellow]{escape(str(exc))}[/]; the command was not started", highlight=False)
        code = EXIT_ALREADY_RUNNING
    except StorageError as exc:  # the lease refused the run (schema behind, permission)
        code = database_failed(settings, exc)
    raise typer.Exit(code)


@app.command("config")
def show_config(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print the effective job table and where each value came from: default, file
    (cronkeeper.toml, CRONKEEPER_CONFIG) or env (exit 0; 2 for bad configuration)."""
    from rich.table import Table

    from cronkeeper.jobtable import effective_jobs

    settings = load_settings()
    rows = effective_jobs(settings)
    if as_json:
        out.print_json(json.dumps({"file": settings.job_file.path, "jobs": rows}))
        raise typer.Exit(0)
    table = Table(title=f"jobs ({settings.job_file.path or 'no cronkeeper.toml'})")
    for heading in ("job", "kind", "setting", "value", "from"):
        table.add_column(heading, overflow="fold")
    for row in rows:
        for number, (key, cell) in enumerate(row["settings"].items()):
            value = "-" if cell["value"] is None else str(cell["value"])
            first = number == 0
            table.add_row(
                row["name"] if first else "",
                row["kind"] if first else "",
                key,
                value,
                cell["from"],
                end_section=number == len(row["settings"]) - 1,
            )
    out.print(table)
    raise typer.Exit(0)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (safe from several replicas at once; exit 2 on failure)."""
    from cronkeeper.storage.engine import create_engine, upgrade

    settings = load_settings()

    async def go() -> str:
        engine = create_engine(settings.database_url, timeout=max(settings.ledger_timeout, 30))
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        revision = run_async(go)
    except Exception as exc:  # unreachable, refused, or a failed migration: a database error
        fail(
            f"migration failed on {safe_url(settings.database_url)}: "
            f"{settings.redactor(first_line(exc, type(exc).__name__))}"
        )
    out.print(f"database {safe_url(settings.database_url)} is at revision {revision}")


def refuse_busy_port(host: str, port: int) -> None:
    """Exit 2 with one line when ``host:port`` cannot be listened on (uvicorn would say so only
    after start-up, with exit 3: "partial" in this command's contract)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0 in a container)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    scheduler: Annotated[
        bool, typer.Option("--scheduler", help="also run the jobs on their schedules")
    ] = False,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="proxies whose X-Forwarded-For/-Proto to trust (comma list or *), "
            "so the status page sees client addresses and https behind a load balancer; "
            "none when not given"
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (health, runs, triggers) with uvicorn."""
    import uvicorn

    from cronkeeper.alerting.watchdog import install_watchdog
    from cronkeeper.api.app import create_app
    from cronkeeper.service import Service
    from cronkeeper.serving import uvicorn_limits

    settings = load_settings()
    refuse_busy_port(host, port)  # before the schema or the scheduler is touched
    secret = settings.cron_secret.get_secret_value() if settings.cron_secret else ""
    if len(secret) < MIN_SECRET_LENGTH:
        fail(
            f"CRON_SECRET must be set to at least {MIN_SECRET_LENGTH} characters before serving "
            "(every endpoint but /healthz checks it); generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    try:
        service = Service.from_settings(settings)
        install_watchdog(service)
    except (ConfigError, StorageError) as exc:
        fail(settings.redactor(str(exc)))
    api = create_app(service, scheduler=scheduler)
    trusted = (forwarded_allow_ips or "").strip()
    uvicorn.run(
        api,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        lifespan="on",
        # Forwarded headers only from the proxies named here. Left to itself uvicorn trusts
        # 127.0.0.1 (or $FORWARDED_ALLOW_IPS), and any local client could then pick its own
        # address for the limiter of wrong secrets by rotating X-Forwarded-For.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or "",
        **uvicorn_limits(),  # header-read and keep-alive timeouts, connection limit
    )


@app.command()
def scheduler() -> None:
    """Run every job on its schedule (CRONKEEPER_SCHEDULES, CRONKEEPER_TIMEZONE) until stopped,
    with the watchdog evaluating every job each CRONKEEPER_WATCH_INTERVAL."""
    from cronkeeper.alerting.watchdog import install_watchdog
    from cronkeeper.scheduler import CronScheduler

    settings = load_settings()

    async def go() -> int:
        try:
            async with opened(settings, alerts=True) as service:
                watchdog = install_watchdog(service)
                watchdog.start()
                try:
                    await CronScheduler(service).run_forever()
                finally:
                    await watchdog.stop()
        except StorageError as exc:
            return database_failed(settings, exc)
        return 0

    raise typer.Exit(run_async(go))


@app.command()
def backfill(
    job: Annotated[str, typer.Argument(help="the job to re-collect")],
    since: Annotated[str, typer.Option("--since", help="first date, YYYY-MM-DD")],
    until: Annotated[
        str | None, typer.Option("--until", help="last date (default: yesterday)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="re-run dates already collected")] = False,
) -> None:
    """Re-collect a date range in as few runs as each job's lookback allows (collect-daily one
    per META_LOOKBACK_DAYS days); run dates already `success` are skipped, so running it again
    resumes an interrupted backfill."""
    from cronkeeper.backfill import backfill as run_backfill
    from cronkeeper.backfill import make_progress

    settings = load_settings()
    first, last = parse_day(since), parse_day(until)
    assert first is not None

    async def go() -> int:
        try:
            async with opened(settings, alerts=True, announce=True) as service:
                report = await run_backfill(
                    service, job, first, last, force=force, progress=make_progress(out)
                )
        except (UnknownJob, ValueError) as exc:
            fail(str(exc))
        except StorageError as exc:
            return database_failed(settings, exc)
        out.print(report.summary(), highlight=False, markup=False, soft_wrap=True)
        return report.exit_code

    raise typer.Exit(run_async(go))


@app.command()
def coverage(
    days: Annotated[int, typer.Option(min=1, max=366, help="days to show, up to yesterday")] = 28,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of lines")] = False,
) -> None:
    """Per ad account and Mixpanel project and day: collected, missing or still restating."""
    from cronkeeper.coverage import load_coverage, render_text

    settings = load_settings()

    async def go() -> int:
        try:
            async with opened(settings) as service:
                found = await load_coverage(service.engine, settings, service.clock(), days)
        except StorageError as exc:
            return database_failed(settings, exc)
        if as_json:
            out.print_json(json.dumps({"days": days, "sources": [c.as_json() for c in found]}))
            return 0
        for line in render_text(found):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        return 0

    raise typer.Exit(run_async(go))


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    send_test: Annotated[
        bool, typer.Option("--send-test", help="also send a test message to every alert channel")
    ] = False,
) -> None:
    """Check the configuration, the database and every source API (exit 0 all good,
    1 a warning, 2 an error)."""
    from cronkeeper.doctor import exit_code, render_table, run_doctor

    settings = load_settings()
    send = None
    if send_test:
        from cronkeeper.alerting.probe import probe_sender

        try:
            send = probe_sender(settings)
        except ConfigError as exc:
            fail(str(exc))

    async def go() -> int:
        import httpx

        from cronkeeper.http import HttpContext, RetryPolicy
        from cronkeeper.http.client import client_from_settings
        from cronkeeper.storage.engine import create_engine

        engine = None
        engine_error: StorageError | None = None
        try:
            engine = create_engine(settings.database_url, timeout=settings.ledger_timeout)
        except StorageError as exc:  # e.g. a SQLite directory it cannot create
            engine_error = exc
        client: httpx.AsyncClient = client_from_settings(settings)
        try:
            async with client:
                # One retry at most: a preflight says what is wrong, it does not wait it out.
                policy = RetryPolicy(
                    max_retries=1, timeout=settings.http_timeout, max_wait=settings.max_wait
                )
                http = HttpContext(client=client, policy=policy, redactor=settings.redactor)
                checks = await run_doctor(
                    settings, http, engine=engine, engine_error=engine_error, send_test=send
                )
        finally:
            if engine is not None:
                await engine.dispose()
        if as_json:
            body = {"exit_code": exit_code(checks), "checks": [c.as_json() for c in checks]}
            out.print_json(json.dumps(body))
        else:
            out.print(render_table(checks))
        return exit_code(checks)

    raise typer.Exit(run_async(go))


@app.command()
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="age, e.g. 90d")],
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, delete nothing")] = False,
) -> None:
    """Delete ledger rows older than --older-than (never a latest run, never a running one)."""
    from cronkeeper.durations import format_duration, parse_duration
    from cronkeeper.ledger.prune import prune as prune_runs

    settings = load_settings()
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        fail(f"--older-than: {exc}")

    async def go() -> int:
        try:
            async with opened(settings) as service:
                deleted = await prune_runs(
                    service.engine,
                    older_than=age,
                    now=service.clock(),
                    batch_size=batch_size,
                    dry_run=dry_run,
                    progress=lambda n: err.print(f"deleted {n} runs…", highlight=False),
                )
        except StorageError as exc:
            return database_failed(settings, exc)
        verb = "would delete" if dry_run else "deleted"
        out.print(f"{verb} {deleted} runs older than {format_duration(age)}", highlight=False)
        return 0

    raise typer.Exit(run_async(go))


@app.command()
def demo(
    database: Annotated[Path, typer.Option(help="SQLite file for the demo ledger and data")] = Path(
        ".demo/cronkeeper.db"
    ),
) -> None:
    """Run all four jobs against local API simulators, then show the runs and the health JSON."""
    from cronkeeper.demo import run_demo
    from cronkeeper.redact import Redactor

    configure_logging(Redactor(), logging.ERROR)
    database = database.expanduser().resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    ok = run_async(lambda: run_demo(database, out))
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    """The console script. Whatever escapes a command ends as one line, never a traceback
    (``CRONKEEPER_DEBUG=1`` shows it): 2 for cronkeeper's own errors, 1 for the rest."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("CRONKEEPER_DEBUG"):
            raise
        code = 2 if isinstance(exc, CronkeeperError) else 1
        what = "" if isinstance(exc, CronkeeperError) else f"unexpected {type(exc).__name__}: "
        say_error(what + _redactor(first_line(exc)))
        sys.exit(code)
