"""Plain records read from the database: a run (``cron_runs``) and a job's state (``job_state``).

Pure data, free of SQL and of the rest of cronkeeper, so that the pure rules (health, alert
states, volume) can take them without importing the ledger that reads them. The ledger
(:mod:`cronkeeper.ledger`) owns the statements and re-exports these names.

The skipped share of a ``partial`` run is read from the first line of its message, which
:func:`cronkeeper.ledger.models.summarize` writes with :data:`SKIPPED_HEADER`: the two live
side by side so the format and its reader cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

__all__ = ["INACTIVE_WORDING", "SKIPPED_HEADER", "JobState", "RunRow", "skipped_units"]

SKIPPED_HEADER = "skipped {skipped} of {total} {label}:"
"""The first line of a ``partial`` or ``error`` run's message: how many units were skipped."""
_SKIPPED = re.compile(r"\Askipped (\d+) of (\d+) \S")
INACTIVE_WORDING = "inactive at the source, not counted as failures:"
_INACTIVE_LINE = re.compile(rf"^(\d+) of \d+ .*{re.escape(INACTIVE_WORDING)}$", re.MULTILINE)


@dataclass(frozen=True)
class RunRow:
    """One row of ``cron_runs``."""

    id: str
    cron_name: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    records_count: int
    error_message: str | None
    report_date: date | None = None

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    @property
    def inactive_units(self) -> int:
        """How many units the run found inactive at the source (disabled or closed ad
        accounts), as :func:`~cronkeeper.ledger.summarize` wrote it in the message; 0 when
        none."""
        found = _INACTIVE_LINE.search(self.error_message or "")
        return int(found.group(1)) if found else 0

    @property
    def skipped_share(self) -> float | None:
        """The share of units this run skipped (0.0–1.0), when its message says
        (``skipped 3 of 200 accounts:``); ``None`` when it does not (a message of another
        shape, e.g. a check-in's)."""
        counts = skipped_units(self.error_message)
        if counts is None:
            return 0.0 if self.status == "success" else None
        skipped, total = counts
        return skipped / total

    def as_json(self) -> dict[str, Any]:
        """The camelCase shape the HTTP API and the CLI print."""
        return {
            "id": self.id,
            "cronName": self.cron_name,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "status": self.status,
            "recordsCount": self.records_count,
            "durationSeconds": self.duration_seconds,
            "errorMessage": self.error_message,
            "reportDate": self.report_date.isoformat() if self.report_date else None,
        }


def skipped_units(message: str | None) -> tuple[int, int] | None:
    """``(skipped, total)`` from a message that starts with :data:`SKIPPED_HEADER`."""
    if not message:
        return None
    match = _SKIPPED.match(message)
    if match is None:
        return None
    skipped, total = int(match.group(1)), int(match.group(2))
    if total < 1 or skipped > total:
        return None
    return skipped, total


@dataclass(frozen=True)
class JobState:
    """One row of ``job_state`` (a job without a row reads as a fresh ``ok`` one)."""

    cron_name: str
    state: str = "ok"
    since: datetime | None = None
    version: int = 0
    last_alerted_at: datetime | None = None
    paused: bool = False
    paused_until: datetime | None = None
    pause_reason: str | None = None
    paused_by: str | None = None
    """``api`` or ``cli``: who paused the job."""
    resumed_at: datetime | None = None
    evaluated_run_id: str | None = None
    anomaly: str | None = None
    expected_low: float | None = None
    expected_high: float | None = None

    def is_paused(self, now: datetime) -> bool:
        """Paused, and its ``--for`` (if any) not over yet: a pause with an end ends by itself."""
        return self.paused and (self.paused_until is None or self.paused_until > now)

    def pause_json(self, now: datetime) -> dict[str, Any]:
        paused = self.is_paused(now)
        return {
            "paused": paused,
            "pausedUntil": self.paused_until.isoformat() if paused and self.paused_until else None,
            "pauseReason": self.pause_reason if paused else None,
            "pausedBy": self.paused_by if paused else None,
        }
