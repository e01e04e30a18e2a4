"""Plain data about runs, and the pure rule that turns a run's units into its status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

__all__ = ["ABANDONED", "FinalStatus", "RunRow", "RunSummary", "Skipped", "summarize"]

FinalStatus = Literal["success", "error", "partial"]
FINAL_STATUSES: tuple[FinalStatus, ...] = ("success", "error", "partial")
ABANDONED = (
    "abandoned: its end was never recorded (the process stopped, or the database was"
    " unreachable when it finished) and its lease expired"
)
"""The message of a ``running`` row closed by the next holder of the job's lease: a guess,
which the run's own end, replayed from a spool, corrects (:mod:`.spool`)."""


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


@dataclass(frozen=True)
class Skipped:
    """A unit of work (account, project, page) that could not be stored, and why."""

    unit: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    status: FinalStatus
    records_count: int
    error_message: str | None


def summarize(
    *,
    records_count: int,
    units_stored: int,
    skipped: Sequence[Skipped],
    unit_label: str = "units",
    notes: Sequence[str] = (),
) -> RunSummary:
    """``success`` when nothing was skipped; ``partial`` when some units were stored and some
    skipped; ``error`` when units were skipped and none stored. The message names every
    skipped unit and its reason, then the run's ``notes`` (a success with notes has them as
    its message: stored figures it rewrote, accounts it kept active)."""
    if not skipped:
        return RunSummary("success", records_count, "\n".join(notes) if notes else None)
    total = units_stored + len(skipped)
    lines = [f"skipped {len(skipped)} of {total} {unit_label}:"]
    lines += [f"- {s.unit}: {s.reason}" for s in skipped]
    lines += list(notes)
    status: FinalStatus = "partial" if units_stored > 0 else "error"
    return RunSummary(status, records_count, "\n".join(lines))
