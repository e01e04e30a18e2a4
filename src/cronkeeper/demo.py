"""``cronkeeper demo``: the whole pipeline against local simulators, no credentials needed.

Starts the Meta, Mixpanel and Notion simulators on loopback (with some throttling and one
account that always fails, so retries and a ``partial`` run are visible), runs the four jobs
in their natural order on a SQLite file, then shows the ledger and the health answer.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

from cronkeeper.config import Settings
from cronkeeper.http import RetryEvent
from cronkeeper.inert import printable
from cronkeeper.reportday import default_day
from cronkeeper.runner import RunResult, run_job
from cronkeeper.runs_table import print_runs
from cronkeeper.sandbox import demo_world
from cronkeeper.service import RunObserver, Service

__all__ = ["DEMO_ORDER", "run_demo"]

DEMO_ORDER = ("sync-notion", "collect-daily", "collect-mixpanel", "collect-benchmarks")
DEMO_SECRET = "demo-secret-change-me-0123456789"  # noqa: S105 - printed for the local demo only
STYLE = {"success": "green", "partial": "yellow", "error": "red"}


class _ShowRetries(RunObserver):
    """Prints each retry as it happens, so the waits the APIs ask for are visible."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def retry(self, cron_name: str, event: RetryEvent) -> None:
        endpoint = event.url.rsplit("/", 2)[-2] if "/" in event.url else event.url
        self.console.print(
            f"    ↻ {endpoint}: attempt {event.attempt} failed ({event.reason}), "
            f"retrying in {event.wait:g} s",
            style="dim",
            highlight=False,
        )


async def run_demo(database: Path, console: Console, *, day: date | None = None) -> bool:
    """Run the demo; True when every job ended ``success`` or ``partial``.

    ``database`` is an absolute path whose folder exists.
    """

    database_url = f"sqlite:///{database}"
    world = demo_world()
    results: list[RunResult] = []
    console.print("[bold]cronkeeper demo[/] — simulators on 127.0.0.1, ledger in SQLite\n")
    with world.serve() as endpoints:
        values: dict[str, Any] = {"DATABASE_URL": database_url, "CRON_SECRET": DEMO_SECRET}
        values.update(world.environment(endpoints))
        settings = Settings(_env_file=None, **values)
        service = Service.from_settings(settings)
        service.observers.append(_ShowRetries(console))
        try:
            await service.prepare()
            report_day = day or default_day(service.clock(), settings.tz)
            console.print(
                f"report date: {report_day.isoformat()} (yesterday, {settings.timezone})\n"
            )
            for name in DEMO_ORDER:
                console.print(f"→ {name} …")
                started = time.monotonic()
                result = await run_job(service, name, report_day)
                results.append(result)
                style = STYLE[result.status]
                console.print(
                    f"  [{style}]{result.status}[/] · {result.records_count} records · "
                    f"{time.monotonic() - started:.1f}s",
                    highlight=False,
                )
                if result.error_message:
                    for line in result.error_message.splitlines():
                        console.print(
                            f"    {printable(line)}", style="dim", markup=False, highlight=False
                        )
            console.print()
            print_runs(
                console, await service.ledger.recent_runs(limit=10), settings.tz, settings.timezone
            )
            report = await service.health()
            console.print("\n[bold]GET /api/cron/health[/]")
            console.print_json(json.dumps(report.as_json()))
        finally:
            await service.aclose()
    retries = sum(1 for r in world.meta.log.records if r.status in (429, 400, 500))
    console.print(
        f"\nThe Meta simulator answered {len(world.meta.log.records)} requests "
        f"({retries} of them with 429/400/500 faults that were retried or skipped)."
    )
    console.print(f"\nLedger: [bold]{database}[/]")
    console.print("Serve it and ask for health:")
    console.print(
        f"  DATABASE_URL={database_url} CRON_SECRET={DEMO_SECRET} .venv/bin/cronkeeper serve",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  curl -H 'Authorization: Bearer {DEMO_SECRET}' http://127.0.0.1:8000/api/cron/health",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "  then open http://127.0.0.1:8000/status and log in with that CRON_SECRET",
        highlight=False,
        soft_wrap=True,
    )
    return all(r.status in ("success", "partial") for r in results)
