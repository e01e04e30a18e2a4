"""Pause and resume: a paused job is not fired, sends no alert, and is ``ok`` in health.

``cronkeeper pause``/``resume`` and ``POST /api/cron/{job}/pause``/``resume`` come here; the
pause itself is stored in ``job_state`` (:mod:`cronkeeper.ledger.job_state`), the scheduler
skips a paused job's fires, and the state machine (:mod:`cronkeeper.alerting.state`) puts a
paused job in ``paused``, which says nothing either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from cronkeeper.config import JobSpec
from cronkeeper.durations import parse_duration
from cronkeeper.errors import UnknownJob
from cronkeeper.health import evaluate_health
from cronkeeper.ledger import RunRow
from cronkeeper.ledger.job_state import JobState
from cronkeeper.redact import truncate
from cronkeeper.service import Service

__all__ = ["MAX_REASON", "missing_when_paused", "pause_job", "pause_json", "resume_job"]

log = logging.getLogger("cronkeeper.alerting")

MAX_REASON = 500

PausedBy = Literal["api", "cli"]


def declared(service: Service, job: str) -> None:
    """:class:`~cronkeeper.errors.UnknownJob` unless ``job`` is configured: built-in, or an
    external job of ``cronkeeper.toml``."""
    names = service.settings.job_names
    if job not in names:
        raise UnknownJob(f"unknown job {job!r}; jobs are {', '.join(names)}")


async def pause_job(
    service: Service,
    job: str,
    *,
    for_: str | None = None,
    reason: str | None = None,
    by: PausedBy | None = None,
) -> JobState:
    """``cronkeeper pause`` and ``POST /api/cron/{job}/pause``: no scheduled fire, no alert,
    ``ok`` in health until resumed or, with ``for_`` (``2h``), until that time has passed.
    ``by`` (``api``, ``cli``) shows in health and on the status page with the reason.

    Raises :class:`~cronkeeper.errors.UnknownJob`, ``ValueError`` for a bad duration, and
    :class:`~cronkeeper.errors.StorageError`.
    """
    declared(service, job)
    now = service.clock()
    until = now + parse_duration(for_) if for_ else None
    text = truncate(service.settings.redactor(reason.strip()), MAX_REASON) if reason else None
    row = await service.job_states.pause(job, now, until=until, reason=text or None, by=by)
    log.info("%s paused%s", job, f" until {_iso(until)}" if until else "")
    return row


async def resume_job(service: Service, job: str) -> JobState:
    """End a pause at once (``cronkeeper resume``, ``POST /api/cron/{job}/resume``).

    The observers hear of it (:meth:`~cronkeeper.service.RunObserver.job_resumed`): the
    watchdog evaluates the job at once, so a job still ``failed``, ``stuck`` or ``missing``
    alerts now, once, as if it had just gone down (issue 17), not at the next tick.
    """
    declared(service, job)
    spec = next((s for s in service.settings.jobs if s.name == job), None)
    before = (await service.job_states.read([job]))[job]
    runs = await service.ledger.last_runs([job], 1) if spec is not None else []
    down = before.state == "missing" or (
        spec is not None
        and before.state == "paused"
        and missing_when_paused(spec, runs, before.since)
    )
    row = await service.job_states.resume(job, service.clock(), grace=not down)
    log.info("%s resumed%s", job, " (it was missing before its pause)" if down else "")
    await service.notify(lambda observer: observer.job_resumed(job))
    return row


def missing_when_paused(spec: JobSpec, runs: Sequence[RunRow], paused_at: datetime | None) -> bool:
    """Whether ``spec``'s job was already ``missing`` when its pause began, and has not run
    since: then the end of the pause owes no grace (a job resumed after a pause is otherwise
    not ``missing`` until one window after the resume, its fires having been skipped on
    purpose). ``runs``: the job's latest runs, newest first; ``paused_at``: when the state
    machine saw the pause (the ``since`` of its ``paused`` state).
    """
    if not spec.monitored or paused_at is None:
        return False
    if any(run.started_at > paused_at for run in runs):
        return False  # it ran during the pause: the usual rule decides
    [check] = evaluate_health([spec], {spec.name: runs[0] if runs else None}, paused_at).checks
    return not check.in_window


def pause_json(row: JobState, now: datetime) -> dict[str, Any]:
    return {"cronName": row.cron_name, **row.pause_json(now)}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
