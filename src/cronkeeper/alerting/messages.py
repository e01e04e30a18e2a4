"""What an alert says: pure functions from runs and states to Slack-flavoured text.

Run ends (:func:`finished_text`: failed, partial, recovered), abandoned runs, and the state
machine's changes (:func:`change_text`: missing, stuck, failed, anomalous, recovered, and a
reminder of a job still down). Text taken from runs (error messages) is redacted, cut to 500
characters and escaped the way Slack asks (``&``, ``<``, ``>``), so an API error that happens
to contain ``<!channel>`` cannot ping anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cronkeeper.alerting.state import AlertKind, leading
from cronkeeper.config import JobSpec
from cronkeeper.durations import format_duration
from cronkeeper.inert import for_chat
from cronkeeper.ledger import RunRow
from cronkeeper.redact import Redactor, truncate
from cronkeeper.volume import Band

__all__ = [
    "MAX_EXCERPT",
    "abandoned_text",
    "change_text",
    "finished_text",
    "low_volume_text",
    "missing_text",
    "recovered_text",
    "reminder_text",
    "run_link",
    "scheduler_back_text",
    "scheduler_silent_text",
    "stuck_text",
    "test_text",
    "title_text",
]

MAX_EXCERPT = 500
MAX_EXCERPT_LINES = 6
MAX_LISTED_IDS = 5
RECOVERED_FROM = ("error", "partial")


def _excerpt(message: str | None, redactor: Redactor) -> str:
    """The first lines of a run's error message: redacted, then cut, then escaped."""
    if not message or not message.strip():
        return "no error message recorded"
    lines = [line.rstrip() for line in redactor(message).splitlines() if line.strip()]
    kept = lines[:MAX_EXCERPT_LINES]
    if len(lines) > len(kept):
        more = len(lines) - len(kept)
        kept.append(f"… and {more} more line{'s' if more != 1 else ''}")
    return for_chat(truncate("\n".join(kept), MAX_EXCERPT))  # cronkeeper/inert.py


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _records(count: int) -> str:
    return f"{count} record{'s' if count != 1 else ''}"


def finished_text(run: RunRow, previous: RunRow | None, redactor: Redactor) -> str | None:
    """The message for a run that ended, or ``None`` when there is nothing to say."""
    at = _iso(run.finished_at or run.started_at)
    job = run.cron_name
    if run.status == "error":
        return (
            f":red_circle: {job} failed (run {run.id}, {_records(run.records_count)})"
            f" at {at}: {_excerpt(run.error_message, redactor)}"
        )
    if run.status == "partial":
        return (
            f":large_yellow_circle: {job} partial: {_records(run.records_count)}"
            f" (run {run.id}) at {at}: {_excerpt(run.error_message, redactor)}"
        )
    if run.status == "success" and previous is not None and previous.status in RECOVERED_FROM:
        return (
            f":large_green_circle: {job} recovered at {at}: run {run.id} succeeded with"
            f" {_records(run.records_count)} after a run that ended {previous.status}"
            f" (started {_iso(previous.started_at)})"
        )
    return None


def abandoned_text(cron_name: str, run_ids: Sequence[str], at: datetime) -> str:
    """The message for runs whose process died before they finished."""
    count = len(run_ids)
    listed = ", ".join(run_ids[:MAX_LISTED_IDS])
    if count > MAX_LISTED_IDS:
        listed += f" and {count - MAX_LISTED_IDS} more"
    runs = "run was" if count == 1 else "runs were"
    return (
        f":warning: {cron_name}: {count} abandoned {runs} closed as error at {_iso(at)}"
        f" (the process running them stopped before they finished): {listed}"
    )


def missing_text(spec: JobSpec, last: RunRow | None, now: datetime) -> str:
    grace = format_duration(spec.grace)
    if spec.window_set or not spec.schedule.strip():
        due = f"in its {format_duration(spec.window)} window + {grace} grace"
    else:  # missing is judged from the schedule (cronkeeper.health.overdue_at)
        due = f"by its expected fire ({spec.schedule}) + {grace} grace"
    when = f"its last run started {_iso(last.started_at)}" if last else "it never ran"
    return (
        f":red_circle: {spec.name} is missing: no run started {due} ({when}; checked {_iso(now)})"
    )


def stuck_text(spec: JobSpec, run: RunRow | None, now: datetime) -> str:
    started = _iso(run.started_at) if run else "?"
    run_id = run.id if run else "?"
    return (
        f":red_circle: {spec.name} is stuck: run {run_id} has been running since {started},"
        f" longer than its max runtime of {format_duration(spec.max_runtime)}"
        f" (checked {_iso(now)})"
    )


def low_volume_text(run: RunRow, expected: tuple[float, float] | None) -> str:
    at = _iso(run.finished_at or run.started_at)
    if expected is None:
        usual = "after runs that wrote some"
    else:
        usual = f"expected {expected[0]:g}–{expected[1]:g}"
    return (
        f":large_orange_circle: {run.cron_name} wrote unusually few records: run {run.id}"
        f" wrote {run.records_count} ({usual}) at {at}"
    )


def recovered_text(job: str, before: str, since: datetime | None, run: RunRow | None) -> str:
    was = f"{before} since {_iso(since)}" if since else before
    if run is None:
        return f":large_green_circle: {job} recovered (it was {was})"
    at = _iso(run.finished_at or run.started_at)
    return (
        f":large_green_circle: {job} recovered at {at}: run {run.id} ended {run.status} with"
        f" {run.records_count} record{'s' if run.records_count != 1 else ''} (it was {was})"
    )


def change_text(
    spec: JobSpec,
    before: str,
    since: datetime | None,
    new: str,
    kind: AlertKind,
    runs: Sequence[RunRow],
    band: Band | None,
    now: datetime,
    redactor: Redactor,
) -> str:
    """The message for a job going from ``before`` (held ``since``) to ``new``; ``runs`` are
    its latest runs, newest first; ``band`` the volume verdict's expected range."""
    finished = [r for r in runs if r.status != "running"]
    if kind == "recovered":
        if before == "failed" and finished:
            streak = leading(finished, "success", spec.partial_tolerance)
            previous = finished[streak] if streak < len(finished) else None
            text = finished_text(finished[0], previous, redactor)
            if text is not None:
                return text
        return recovered_text(spec.name, before, since, finished[0] if finished else None)
    if new == "missing":
        return missing_text(spec, runs[0] if runs else None, now)
    if new == "stuck":
        return stuck_text(spec, runs[0] if runs else None, now)
    if new == "anomalous" and finished:
        expected = (round(band.low, 1), round(band.high, 1)) if band else None
        return low_volume_text(finished[0], expected)
    errors = leading(finished, "error", spec.partial_tolerance)
    text = finished_text(finished[0], None, redactor) if finished else None
    if text is None:
        return f":red_circle: {spec.name} failed"
    if errors > 1:
        text += f"\n({errors} runs in a row ended error)"
    return text


def reminder_text(state: str, since: datetime | None, text: str) -> str:
    """``CRONKEEPER_ALERT_REPEAT``'s reminder of a job still down."""
    held = f" since {_iso(since)}" if since else ""
    return f":repeat: still {state}{held}: {text}"


def run_link(public_url: str, run_id: str | None) -> str:
    """The line that opens a run on the status page (``CRONKEEPER_PUBLIC_URL``), or ``""``."""
    if not public_url or not run_id:
        return ""
    return f"\n{public_url.rstrip('/')}/status/runs/{run_id}"


def title_text(job: str, state: str) -> str:
    """A channel's title (e-mail subject, Teams card title): the job and its state."""
    return f"cronkeeper: {job} {state}"


def test_text(now: datetime, public_url: str) -> str:
    """``cronkeeper alert test``'s message."""
    where = f" Status page: {public_url.rstrip('/')}/status" if public_url else ""
    return (
        f":white_check_mark: cronkeeper test alert at {_iso(now)}: this channel receives"
        f" cronkeeper's alerts.{where}"
    )


def scheduler_silent_text(warning: str) -> str:
    """No scheduler has beaten for more than 3 watch intervals (health's warning, said once)."""
    return f":red_circle: {warning}"


def scheduler_back_text(host: str, pid: int, now: datetime) -> str:
    return f":large_green_circle: a scheduler is alive again: {host} (pid {pid}) at {_iso(now)}"
