"""Are the crons healthy? The one place that decides it, as pure functions of plain data.

Every caller asks here: ``GET /api/cron/health`` and ``cronkeeper health``
(:meth:`cronkeeper.service.Service.health`), the ``cronkeeper_job_healthy`` gauge
(:mod:`cronkeeper.metrics`), the status page's badges (:mod:`cronkeeper.web.view`) and the
watchdog's ``missing``/``stuck``/``failed`` facts (:mod:`cronkeeper.alerting.watchdog`,
:mod:`cronkeeper.alerting.state`). Nothing here reads the database or the clock: the
callers pass the job specs, each job's latest runs and ``job_state`` row, and ``now``.
``tests/test_health_ownership.py`` keeps other modules from deciding it again.

Rules (SPEC "Health", issue 17): a job is ``ok`` when its latest run is not overdue and
ended ``success`` or ``partial``, or is still ``running`` and younger than ``max_runtime``.
A run is **overdue** once a fire of the job's cron expression came after it (cronsim, in
``CRONKEEPER_TIMEZONE``, with Debian cron's DST rules: a 25-hour day is 25 hours) and the
job's grace (``CRONKEEPER_GRACE``, 1 h) has passed since that fire; a job without a schedule,
or whose window ``CRONKEEPER_JOB_WINDOWS`` sets, is overdue once its window plus the grace
has passed since the run started. ``missing`` lists the monitored jobs with no run, or an
overdue one, in configuration order. ``healthy`` is every check ``ok``.

With the jobs' rows of ``job_state`` (issue 13): a paused job is ``ok`` (and not
``missing``) and says ``"paused": true, "pausedUntil": …``; the watchdog's volume verdict on
the latest run shows as ``anomaly`` and ``expectedRecords``, and makes the job not ``ok`` only
when ``CRONKEEPER_VOLUME_AFFECTS_HEALTH`` asks for it.

A run's **outcome** (:func:`outcome`) is what the alert thresholds and the volume baseline
count: ``success``, and a ``partial`` that skipped no more than
``CRONKEEPER_PARTIAL_TOLERANCE`` of its units, are a success; ``error``, and a ``partial``
above the tolerance, a failure; a ``partial`` whose share is unknown is neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from cronkeeper.config import JobSpec
from cronkeeper.cron import CronExpression
from cronkeeper.records import JobState, RunRow

if TYPE_CHECKING:
    from cronkeeper.config import Settings
    from cronkeeper.presence import Presence  # the report only carries it

__all__ = [
    "EARLY_START",
    "CheckResult",
    "HealthReport",
    "HealthRules",
    "Outcome",
    "WatchFacts",
    "evaluate_health",
    "is_stuck",
    "outcome",
    "skipped_text",
    "watch_facts",
]

Reason = Literal["never-ran", "missing", "failed", "stuck", "anomalous"]
Outcome = Literal["running", "success", "failure", "warning"]
"""``warning``: a ``partial`` run whose skipped share is unknown (counts neither way)."""

DEFAULT_TOLERANCE = 0.05
EARLY_START = timedelta(minutes=1)
"""A run that started this much before a fire still counts for it (the clocks of the host
that fires a job and of the one that records it may differ by a few seconds)."""


@dataclass(frozen=True)
class HealthRules:
    """The settings the evaluation follows (built once from :class:`Settings`)."""

    volume_affects_health: bool = False
    tz: tzinfo = UTC
    """The zone the schedules fire in (``CRONKEEPER_TIMEZONE``)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthRules:
        return cls(volume_affects_health=settings.volume_affects_health, tz=settings.tz)


def outcome(run: RunRow, tolerance: float = DEFAULT_TOLERANCE) -> Outcome:
    """What ``run`` counts as for alert recovery, failure thresholds and the volume baseline;
    ``tolerance`` is the job's ``CRONKEEPER_PARTIAL_TOLERANCE`` (``JobSpec.partial_tolerance``)."""
    if run.status == "running":
        return "running"
    if run.status == "success":
        return "success"
    if run.status == "partial":
        share = run.skipped_share
        if share is None:
            return "warning"
        return "success" if share <= tolerance + 1e-12 else "failure"
    return "failure"


@dataclass(frozen=True)
class CheckResult:
    name: str
    run: RunRow | None
    ok: bool
    in_window: bool
    stuck: bool
    reason: Reason | None
    paused: bool = False
    paused_until: datetime | None = None
    pause_reason: str | None = None
    paused_by: str | None = None
    anomaly: str | None = None
    expected: tuple[float, float] | None = None
    overdue_after: datetime | None = None
    """When the latest run stops covering the job: its next fire plus the grace (or its window
    plus the grace); ``None`` when it never ran or its schedule never fires again."""
    changes_at: datetime | None = None
    """The first instant after ``now`` at which this verdict may change with time alone (a
    window or a grace ends, a run turns stuck, a pause ends); ``None``: never by itself."""

    def as_json(self) -> dict[str, Any]:
        run = self.run
        low_high = self.expected
        return {
            "lastRun": run.started_at.isoformat() if run else None,
            "status": run.status if run else None,
            "ok": self.ok,
            "finishedAt": run.finished_at.isoformat() if run and run.finished_at else None,
            "recordsCount": run.records_count if run else None,
            "durationSeconds": run.duration_seconds if run else None,
            "skippedShare": _share(run),
            "stuck": self.stuck,
            "reason": self.reason,
            "anomaly": self.anomaly,
            "expectedRecords": {"low": low_high[0], "high": low_high[1]} if low_high else None,
            "paused": self.paused,
            "pausedUntil": self.paused_until.isoformat() if self.paused_until else None,
            # Issue 17: units the latest run found inactive at the source (disabled or closed
            # ad accounts); their failures do not make the run partial.
            "inactiveUnits": run.inactive_units if run else 0,
            "pauseReason": self.pause_reason,
            "pausedBy": self.paused_by,
        }


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[CheckResult, ...]
    missing: tuple[str, ...]
    scheduler: Presence | None = None
    """Whether a scheduler is alive (issue 22); ``None`` when it could not be read."""

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def stable_until(self) -> datetime | None:
        """Until when (exclusive) this report stays the answer for the same rows: callers that
        share one read may share one evaluation, and its encoded body, before this instant."""
        moments = [c.changes_at for c in self.checks if c.changes_at is not None]
        return min(moments) if moments else None

    @property
    def warnings(self) -> list[str]:
        """This report's entries for health's top-level ``warnings`` (a silent scheduler)."""
        said = self.scheduler.warning() if self.scheduler is not None else None
        return [said] if said else []

    def as_json(self) -> dict[str, Any]:
        body = {
            "healthy": self.healthy,
            "checks": {check.name: check.as_json() for check in self.checks},
            "missing": list(self.missing),
        }
        if self.scheduler is not None:
            body["scheduler"] = self.scheduler.as_json()
        return body


def _share(run: RunRow | None) -> float | None:
    """The latest run's skipped share for the JSON (``null``: unknown, or still running)."""
    share = run.skipped_share if run is not None and run.status != "running" else None
    return None if share is None else round(share, 4)


def skipped_text(run: RunRow | None, spec: JobSpec) -> str:
    """``skipped 1.2 % of its units (within the 5 % tolerance)`` for a ``partial`` run whose
    share is known; empty otherwise (the status page's line under the last run)."""
    if run is None or run.status != "partial" or run.skipped_share is None:
        return ""
    within = outcome(run, spec.partial_tolerance) == "success"
    return (
        f"skipped {run.skipped_share:.1%} of its units ({'within' if within else 'above'}"
        f" the {spec.partial_tolerance:.0%} tolerance)"
    )


def is_stuck(run: RunRow, spec: JobSpec, now: datetime) -> bool:
    """Still ``running`` past the job's ``max_runtime``: the one rule for "stuck", used by the
    checks below and by the status page's run states."""
    return run.status == "running" and now - run.started_at > spec.max_runtime


def _in_window(spec: JobSpec, run: RunRow, now: datetime, rules: HealthRules) -> bool:
    due = _window_ends(spec, run, rules)
    return due is None or now <= due


def _window_ends(spec: JobSpec, run: RunRow, rules: HealthRules) -> datetime | None:
    """When a job whose latest run is ``run`` becomes overdue (``None``: never)."""
    return overdue_at(spec, run.started_at, rules.tz)


def overdue_at(spec: JobSpec, since: datetime, tz: tzinfo) -> datetime | None:
    """The instant after which a job that last started at ``since`` is overdue: the first fire
    after ``since`` (allowing :data:`EARLY_START`) plus the grace; by the window, for a job
    without a schedule or with its window set. ``None``: its schedule never fires again."""
    if spec.window_set or not spec.schedule.strip():
        return since + spec.window + spec.grace
    fire = _first_fire_after(spec.schedule, since + EARLY_START, tz)
    # In UTC: ``+`` on a zoned datetime moves the wall clock (02:30 CEST + 1 h = 03:30 CET,
    # two hours later on the day of an autumn change).
    return None if fire is None else fire.astimezone(UTC) + spec.grace


@lru_cache(maxsize=1024)
def _first_fire_after(schedule: str, moment: datetime, tz: tzinfo) -> datetime | None:
    """cronsim's walk, once per (schedule, run start, zone): every health read asks it again."""
    return CronExpression(schedule).next_after(moment, tz)


def _check(spec: JobSpec, run: RunRow | None, now: datetime, rules: HealthRules) -> CheckResult:
    if run is None:
        return CheckResult(spec.name, None, False, False, False, "never-ran")
    in_window = _in_window(spec, run, now, rules)
    stuck = is_stuck(run, spec, now)
    changes = [_window_ends(spec, run, rules)]
    if run.status == "running" and not stuck:
        changes.append(run.started_at + spec.max_runtime)
    if run.status == "running":
        ok = in_window and not stuck
    else:
        ok = in_window and run.status in ("success", "partial")
    reason: Reason | None = None
    if not ok:
        if stuck:
            reason = "stuck"
        elif not in_window:
            reason = "missing"
        else:
            reason = "failed"
    later = [moment for moment in changes if moment is not None and moment >= now]
    return CheckResult(
        spec.name,
        run,
        ok,
        in_window,
        stuck,
        reason,
        overdue_after=changes[0],
        changes_at=min(later) if later else None,
    )


def _with_state(
    check: CheckResult, state: JobState | None, now: datetime, rules: HealthRules
) -> CheckResult:
    if state is None:
        return check
    run = check.run
    anomaly: str | None = None
    expected: tuple[float, float] | None = None
    if run is not None and state.evaluated_run_id == run.id:
        anomaly = state.anomaly
        if state.expected_low is not None and state.expected_high is not None:
            expected = (round(state.expected_low, 1), round(state.expected_high, 1))
    ok, reason = check.ok, check.reason
    if rules.volume_affects_health and anomaly is not None and ok:
        ok, reason = False, "anomalous"
    paused = state.is_paused(now)
    if paused:
        ok, reason = True, None
    changes_at = check.changes_at
    if paused and state.paused_until is not None:
        changes_at = min(changes_at or state.paused_until, state.paused_until)
    return replace(
        check,
        ok=ok,
        reason=reason,
        paused=paused,
        paused_until=state.paused_until if paused else None,
        pause_reason=state.pause_reason if paused else None,
        paused_by=state.paused_by if paused else None,
        anomaly=anomaly,
        expected=expected,
        changes_at=changes_at,
    )


def evaluate_health(
    specs: Sequence[JobSpec],
    latest: Mapping[str, RunRow | None],
    now: datetime,
    states: Mapping[str, JobState] | None = None,
    *,
    rules: HealthRules | None = None,
    volume_affects_health: bool | None = None,
) -> HealthReport:
    """The health of ``specs`` (monitored jobs, in configuration order) at ``now``.

    ``volume_affects_health`` overrides ``rules``' (kept for callers that set only it).
    """
    rules = rules or HealthRules()
    if volume_affects_health is not None:
        rules = replace(rules, volume_affects_health=volume_affects_health)
    found = states or {}
    checks = tuple(
        _with_state(
            _check(spec, latest.get(spec.name), now, rules), found.get(spec.name), now, rules
        )
        for spec in specs
    )
    missing = tuple(check.name for check in checks if not check.in_window and not check.paused)
    return HealthReport(checks, missing)


@dataclass(frozen=True)
class WatchFacts:
    """What the watchdog's state machine needs from health about one job."""

    missing: bool
    """A monitored job with no run in its window, not just resumed from a pause."""
    stuck: bool


def watch_facts(
    spec: JobSpec,
    latest: RunRow | None,
    state: JobState | None,
    now: datetime,
    rules: HealthRules | None = None,
) -> WatchFacts:
    """The health facts behind the alert states (the pause itself is the state machine's).

    A job resumed from a pause is not ``missing`` until it is overdue counting from the resume
    (its next fire plus the grace): it was not supposed to run while paused.
    """
    rules = rules or HealthRules()
    [check] = evaluate_health([spec], {spec.name: latest}, now, rules=rules).checks
    missing = spec.monitored and not check.in_window
    resumed = state.resumed_at if state is not None else None
    if missing and resumed is not None:
        due = overdue_at(spec, resumed, rules.tz)
        missing = due is not None and now > due
    return WatchFacts(missing=missing, stuck=check.stuck)
