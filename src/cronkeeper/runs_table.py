"""The recent-runs table printed by ``cronkeeper runs`` and ``cronkeeper demo``.

Its own module so that neither command imports the other (the CLI starts the demo).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cronkeeper.inert import printable
from cronkeeper.ledger import RunRow

__all__ = ["STATUS_STYLE", "print_runs"]

STATUS_STYLE = {"success": "green", "partial": "yellow", "error": "red", "running": "cyan"}


def print_runs(console: Console, rows: Sequence[RunRow], tz: tzinfo, zone_name: str) -> None:
    table = Table(title=f"Recent runs ({zone_name})")
    for column in ("started", "job", "status", "records", "duration", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        started: datetime = row.started_at.astimezone(tz)
        duration = f"{row.duration_seconds:.1f}s" if row.duration_seconds is not None else "—"
        style = STATUS_STYLE.get(row.status, "")
        message = (row.error_message or "").splitlines()
        # Stored text is outside text (Notion names, API errors): plain Text, never markup,
        # and its control characters shown, not sent to the terminal (issue 19).
        table.add_row(
            started.strftime("%Y-%m-%d %H:%M:%S"),
            Text(printable(row.cron_name)),
            Text(printable(row.status), style=style),
            str(row.records_count),
            duration,
            Text(printable(" ".join(message)[:160])),
        )
    console.print(table)
