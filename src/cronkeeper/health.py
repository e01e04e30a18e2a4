"""Are the crons healthy? A pure function of each job's latest run, its window and the time.

Rules (SPEC "Health"): a job is ``ok`` when its latest run started inside its window and
ended ``success`` or ``partial``, or is still ``running`` and younger than ``max_runtime``.
``missing`` lists the monitored jobs with no run started inside their window, in
configuration order. ``healthy`` is every check ``ok``.

With the jobs' rows of ``job_state`` (issue 13): a paused job is ``ok`` (and not
``missing``) and says ``"paused": true, "pausedUntil": …``; the watchdog's volume verdict on
the latest run shows as ``anomaly`` and ``expectedRecords``, and makes the job not ``ok`` only
when ``CRONKEEPER_VOLUME_AFFECTS_HEALTH`` asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from cronkeeper.config import JobSpec
from cronkeeper.ledger.job_state import JobState
from cronkeeper.ledger.models import RunRow

__all__ = ["CheckResult", "HealthReport", "evaluate_health", "is_stuck"]

Reason = Literal["never-ran", "missing", "failed", "stuck", "anomalous"]


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
    anomaly: str | None = None
    expected: tuple[float, float] | None = None

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
            "stuck": self.stuck,
            "reason": self.reason,
            "anomaly": self.anomaly,
            "expectedRecords": {"low": low_high[0], "high": low_high[1]} if low_high else None,
            "paused": self.paused,
            "pausedUntil": self.paused_until.isoformat() if self.paused_until else None,
            # Issue 17: units the latest run found inactive at the source (disabled or closed
            # ad accounts); their failures do not make the run partial.
            "inactiveUnits": run.inactive_units if run else 0,
        }


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[CheckResult, ...]
    missing: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checks": {check.name: check.as_json() for check in self.checks},
            "missing": list(self.missing),
        }


def is_stuck(run: RunRow, spec: JobSpec, now: datetime) -> bool:
    """Still ``running`` past the job's ``max_runtime``: the one rule for "stuck", used by the
    checks below and by the status page's run states."""
    return run.status == "running" and now - run.started_at > spec.max_runtime


def _check(spec: JobSpec, run: RunRow | None, now: datetime) -> CheckResult:
    if run is None:
        return CheckResult(spec.name, None, False, False, False, "never-ran")
    age = now - run.started_at
    in_window = age <= spec.window
    stuck = is_stuck(run, spec, now)
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
    return CheckResult(spec.name, run, ok, in_window, stuck, reason)


def _with_state(
    check: CheckResult, state: JobState | None, now: datetime, volume_affects_health: bool
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
    if volume_affects_health and anomaly is not None and ok:
        ok, reason = False, "anomalous"
    paused = state.is_paused(now)
    if paused:
        ok, reason = True, None
    return replace(
        check,
        ok=ok,
        reason=reason,
        paused=paused,
        paused_until=state.paused_until if paused else None,
        anomaly=anomaly,
        expected=expected,
    )


def evaluate_health(
    specs: Sequence[JobSpec],
    latest: Mapping[str, RunRow | None],
    now: datetime,
    states: Mapping[str, JobState] | None = None,
    *,
    volume_affects_health: bool = False,
) -> HealthReport:
    """The health of ``specs`` (monitored jobs, in configuration order) at ``now``."""
    found = states or {}
    checks = tuple(
        _with_state(
            _check(spec, latest.get(spec.name), now),
            found.get(spec.name),
            now,
            volume_affects_health,
        )
        for spec in specs
    )
    missing = tuple(check.name for check in checks if not check.in_window and not check.paused)
    return HealthReport(checks, missing)
