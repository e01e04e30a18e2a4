"""Each job's alert state, and which changes of it deserve a message: pure functions.

States: ``ok``; the down states ``missing`` (no run started inside the job's window),
``stuck`` (a run ``running`` longer than its ``max_runtime``), ``failed`` (the last
``CRONKEEPER_FAILURE_THRESHOLD`` finished runs ended ``error``), ``anomalous`` (the latest
run succeeded with unusually few records); and ``paused``, which silences everything.

The rules, in order:

1. paused → ``paused`` (nothing else is looked at);
2. stuck → ``stuck``; no run in the window → ``missing``;
3. at least *failure threshold* consecutive ``error`` runs → ``failed``;
4. leaving a down state needs *recovery threshold* consecutive ``success`` runs; until then
   the job stays where it is;
5. the latest run a ``success`` flagged ``low-volume`` → ``anomalous``; else ``ok``.

A ``partial`` run counts as :func:`cronkeeper.health.outcome` says: within the job's
``CRONKEEPER_PARTIAL_TOLERANCE`` a success (towards a recovery), above it a failure (towards
``failed``), and neither when its skipped share is unknown; it also sends a warning of its own
when it ends. A change into a down state sends a
"down" message, a change from a down state to ``ok`` a "recovered" one; going in and out of
``paused`` says nothing (a pause that ends on a job that is down does alert, once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from cronkeeper.health import DEFAULT_TOLERANCE, outcome
from cronkeeper.records import RunRow
from cronkeeper.volume import Anomaly

if TYPE_CHECKING:
    from cronkeeper.config import Settings

__all__ = [
    "ALERT_STATES",
    "DOWN_STATES",
    "AlertKind",
    "AlertState",
    "Observation",
    "Thresholds",
    "alert_kind",
    "leading",
    "next_state",
    "reminder_due",
    "thresholds_from_settings",
]

AlertState = Literal["ok", "missing", "stuck", "failed", "anomalous", "paused"]
ALERT_STATES: tuple[AlertState, ...] = ("ok", "missing", "stuck", "failed", "anomalous", "paused")
DOWN_STATES: frozenset[str] = frozenset({"missing", "stuck", "failed", "anomalous"})
AlertKind = Literal["down", "recovered"]
_STICKY: dict[str, AlertState] = {"missing": "missing", "stuck": "stuck", "failed": "failed"}
"""Down states that only enough consecutive successes end."""


@dataclass(frozen=True)
class Thresholds:
    """``failure``: consecutive errors before ``failed``; ``recovery``: consecutive successes
    before a down job is ``ok`` again; per job where configured."""

    failure: int = 1
    recovery: int = 1
    failure_by_job: Mapping[str, int] | None = None

    def failure_for(self, job: str) -> int:
        if self.failure_by_job and job in self.failure_by_job:
            return self.failure_by_job[job]
        return self.failure

    def depth(self, job: str) -> int:
        """How many recent runs the rules need to see."""
        return max(self.failure_for(job), self.recovery) + 1


def thresholds_from_settings(settings: Settings) -> Thresholds:
    """``CRONKEEPER_FAILURE_THRESHOLD`` (per job where given) and
    ``CRONKEEPER_RECOVERY_THRESHOLD``."""
    failure, by_job = settings.failure_thresholds
    return Thresholds(failure=failure, recovery=settings.recovery_threshold, failure_by_job=by_job)


@dataclass(frozen=True)
class Observation:
    """What the ledger and the pause say about one job at one moment."""

    job: str
    recent: Sequence[RunRow]
    """The job's latest runs, newest first (at least :meth:`Thresholds.depth` when it has them)."""
    missing: bool
    stuck: bool
    paused: bool
    anomaly: Anomaly | None = None
    """The verdict on the latest finished run's volume."""
    tolerance: float = DEFAULT_TOLERANCE
    """The job's ``CRONKEEPER_PARTIAL_TOLERANCE``."""


def leading(
    runs: Sequence[RunRow],
    status: Literal["success", "error"],
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """How many of the newest finished runs in a row count as ``status``: ``success`` (or a
    ``partial`` within ``tolerance``), ``error`` (or a ``partial`` above it)."""
    wanted = "success" if status == "success" else "failure"
    count = 0
    for run in runs:
        seen = outcome(run, tolerance)
        if seen == "running":
            continue
        if seen != wanted:
            break
        count += 1
    return count


def _latest_finished(runs: Sequence[RunRow]) -> RunRow | None:
    return next((r for r in runs if r.status != "running"), None)


def next_state(current: str, seen: Observation, thresholds: Thresholds) -> AlertState:
    """The state ``seen`` puts a job in, coming from ``current``."""
    if seen.paused:
        return "paused"
    if seen.stuck:
        return "stuck"
    if seen.missing:
        return "missing"
    if leading(seen.recent, "error", seen.tolerance) >= thresholds.failure_for(seen.job):
        return "failed"
    sticky = _STICKY.get(current)
    if sticky is not None and leading(seen.recent, "success", seen.tolerance) < thresholds.recovery:
        return sticky
    latest = _latest_finished(seen.recent)
    if (
        latest is not None
        and outcome(latest, seen.tolerance) == "success"
        and seen.anomaly == "low-volume"
    ):
        return "anomalous"
    return "ok"


def alert_kind(old: str, new: str) -> AlertKind | None:
    """The message a change of state sends, or ``None`` for a silent one."""
    if new == old:
        return None
    if new in DOWN_STATES:
        return "down"
    if new == "ok" and old in DOWN_STATES:
        return "recovered"
    return None


def reminder_due(
    state: str, last_alerted_at: datetime | None, now: datetime, repeat: timedelta | None
) -> bool:
    """``CRONKEEPER_ALERT_REPEAT``: whether a job still down is owed a reminder."""
    if repeat is None or state not in DOWN_STATES or last_alerted_at is None:
        return False
    return now - last_alerted_at >= repeat
