"""What the status page shows, computed from plain data: no I/O, no request, no template.

The routes read rows and the clock; everything a person sees (badges, reasons, strips,
charts, formatted times) is decided here, where tests can check it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from cronkeeper.config import JobSpec
from cronkeeper.durations import format_duration
from cronkeeper.health import CheckResult, HealthRules, evaluate_health, is_stuck, skipped_text
from cronkeeper.ledger import RunRow
from cronkeeper.records import JobState
from cronkeeper.web.charts import Sparkline, sparkline
from cronkeeper.web.schedule import NextKind, next_kind, next_run

__all__ = [
    "STRIP_LENGTH",
    "Cell",
    "Clockface",
    "JobView",
    "build_jobs",
    "format_seconds",
    "run_state",
]

STRIP_LENGTH = 30
Badge = Literal["ok", "not-ok", "unmonitored"]


def format_seconds(seconds: float | None) -> str:
    """``4.2 s``, ``42 s``, ``2m 05s``, ``1h 02m``; an em dash for no value."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


@dataclass(frozen=True)
class Clockface:
    """Times as people here read them: the configured zone, named, plus "2 h ago"."""

    zone: str
    now: datetime

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def abbreviation(self) -> str:
        return self.now.astimezone(self.tz).strftime("%Z")

    def zone_label(self) -> str:
        """``KST (Asia/Seoul)``, or just ``UTC`` when the two are the same."""
        abbreviation = self.abbreviation()
        return self.zone if abbreviation == self.zone else f"{abbreviation} ({self.zone})"

    def short(self, moment: datetime | None) -> str:
        """``2026-11-27 10:00 KST``."""
        if moment is None:
            return "—"
        return moment.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")

    def full(self, moment: datetime | None) -> str:
        """``2026-11-27 10:00:05 KST (Asia/Seoul)``."""
        if moment is None:
            return "—"
        local = moment.astimezone(self.tz)
        abbreviation = local.strftime("%Z")
        zone = "" if abbreviation == self.zone else f" ({self.zone})"
        return local.strftime("%Y-%m-%d %H:%M:%S %Z") + zone

    def relative(self, moment: datetime | None) -> str:
        """``3 h ago`` / ``in 40 min``: the rough size of the gap, for a glance."""
        if moment is None:
            return ""
        delta = moment - self.now
        seconds = abs(delta.total_seconds())
        if seconds < 60:
            size = "<1 min" if seconds >= 1 else "now"
        elif seconds < 3600:
            size = f"{int(seconds // 60)} min"
        elif seconds < 2 * 86400:
            size = f"{int(seconds // 3600)} h"
        else:
            size = f"{int(seconds // 86400)} d"
        if size == "now":
            return "just now"
        return f"in {size}" if delta > timedelta(0) else f"{size} ago"


def run_state(run: RunRow, spec: JobSpec | None, now: datetime) -> str:
    """The run's status, except that a run ``running`` past its ``max_runtime`` is ``stuck``."""
    if spec is not None and is_stuck(run, spec, now):
        return "stuck"
    return run.status


@dataclass(frozen=True)
class Cell:
    """One square of a job's run strip; ``run`` is ``None`` for the padding before history."""

    run: RunRow | None
    state: str
    title: str


@dataclass(frozen=True)
class JobView:
    spec: JobSpec
    badge: Badge
    badge_text: str
    reason: str
    latest: RunRow | None
    latest_state: str | None
    next_run: datetime | None
    cells: tuple[Cell, ...]
    durations: Sparkline
    records: Sparkline
    counts: Mapping[str, int]
    skipped: str = ""
    """How much of its units the latest run skipped, against the job's partial tolerance."""
    next_kind: NextKind = "scheduled"
    """Whether ``next_run`` is a promise (a live scheduler), expected, or not scheduled."""

    @property
    def name(self) -> str:
        return self.spec.name


def _cell_title(run: RunRow, state: str, clock: Clockface) -> str:
    parts = [clock.short(run.started_at), state]
    if run.duration_seconds is not None:
        parts.append(format_seconds(run.duration_seconds))
    parts.append(f"{run.records_count:,} records")
    title = " · ".join(parts)
    if run.error_message:
        first = run.error_message.strip().splitlines()[0] if run.error_message.strip() else ""
        title += "\n" + (first[:197] + "…" if len(first) > 200 else first)
    return title


def _reason(check: CheckResult, spec: JobSpec, clock: Clockface) -> str:
    run = check.run
    if check.reason == "never-ran" or run is None:
        return "never ran"
    if check.reason == "stuck":
        running_for = format_seconds((clock.now - run.started_at).total_seconds())
        return f"stuck: running for {running_for} (limit {format_duration(spec.max_runtime)})"
    if check.reason == "missing":
        grace = format_duration(spec.grace)
        due = check.overdue_after
        if spec.window_set or not spec.schedule.strip() or due is None:
            return f"missing: no run in the last {format_duration(spec.window)} + {grace} grace"
        return f"missing: no run since its {clock.short(due - spec.grace)} fire ({grace} grace)"
    if check.reason == "failed":
        return "failed: the last run ended in error"
    return ""


def build_jobs(
    specs: Sequence[JobSpec],
    runs: Mapping[str, Sequence[RunRow]],
    clock: Clockface,
    job_states: Mapping[str, JobState] | None = None,
    rules: HealthRules | None = None,
    *,
    scheduler_alive: bool | None = True,
    system_cron: bool = False,
) -> list[JobView]:
    """One view per job, monitored jobs first (in configuration order), then the others.

    ``runs`` holds each job's newest runs, newest first. Monitored jobs get the same verdict
    as ``GET /api/cron/health`` (given the service's ``rules``); the others show their last
    status with no ok/not-ok judgement, because nothing promises they run on time.
    """
    monitored = [s for s in specs if s.monitored]
    ordered = monitored + [s for s in specs if not s.monitored]
    latest: dict[str, RunRow | None] = {}
    for spec in specs:
        job_runs = runs.get(spec.name) or ()
        latest[spec.name] = job_runs[0] if job_runs else None
    report = evaluate_health(monitored, latest, clock.now, job_states, rules=rules)
    checks = {c.name: c for c in report.checks}
    views: list[JobView] = []
    for spec in ordered:
        history = list(reversed(runs.get(spec.name, ())[:STRIP_LENGTH]))  # oldest first
        states = [run_state(run, spec, clock.now) for run in history]
        padding = [Cell(None, "empty", "no run")] * (STRIP_LENGTH - len(history))
        cells = padding + [
            Cell(run, state, _cell_title(run, state, clock))
            for run, state in zip(history, states, strict=True)
        ]
        durations = [r.duration_seconds for r in history]
        # A run still going has written nothing yet: a gap, not a drop to zero.
        records = [None if r.status == "running" else float(r.records_count) for r in history]
        counts: dict[str, int] = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        newest = history[-1] if history else None
        check = checks.get(spec.name)
        badge: Badge
        if check is None:
            badge, badge_text, reason = "unmonitored", "not monitored", ""
        elif check.paused:
            badge, badge_text = "ok", "paused"
            until = check.paused_until
            reason = f"paused until {clock.full(until)}" if until else "paused until resumed"
            if check.paused_by:
                reason += f" (by {check.paused_by.upper()})"
            if check.pause_reason:
                reason += f": {check.pause_reason}"
        elif check.ok:
            badge, badge_text, reason = "ok", "OK", ""
        else:
            badge = "not-ok"
            badge_text = (check.reason or "not ok").replace("-", " ")
            reason = _reason(check, spec, clock)
        views.append(
            JobView(
                spec=spec,
                badge=badge,
                badge_text=badge_text,
                reason=reason,
                latest=newest,
                latest_state=states[-1] if states else None,
                next_run=next_run(spec.schedule, clock.tz, clock.now),
                cells=tuple(cells),
                durations=sparkline(durations),
                records=sparkline(records, band=check.expected if check else None),
                counts=counts,
                skipped=skipped_text(newest, spec),
                next_kind=next_kind(spec, scheduler_alive, system_cron),
            )
        )
    return views
