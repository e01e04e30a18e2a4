"""Pause and resume: a paused job is not fired, sends no alert, and is ``ok`` in health.

``cronkeeper pause``/``resume`` and ``POST /api/cron/{job}/pause``/``resume`` come here; the
pause itself is stored in ``job_state`` (:mod:`cronkeeper.ledger.job_state`), the scheduler
skips a paused job's fires, and the state machine (:mod:`cronkeeper.alerting.state`) puts a
paused job in ``paused``, which says nothing either way.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from cronkeeper.durations import parse_duration
from cronkeeper.jobs import get_job
from cronkeeper.ledger.job_state import JobState
from cronkeeper.redact import truncate
from cronkeeper.service import Service

__all__ = ["MAX_REASON", "pause_job", "pause_json", "resume_job"]

log = logging.getLogger("cronkeeper.alerting")

MAX_REASON = 500


async def pause_job(
    service: Service, job: str, *, for_: str | None = None, reason: str | None = None
) -> JobState:
    """``cronkeeper pause`` and ``POST /api/cron/{job}/pause``: no scheduled fire, no alert,
    ``ok`` in health until resumed or, with ``for_`` (``2h``), until that time has passed.

    Raises :class:`~cronkeeper.errors.UnknownJob`, ``ValueError`` for a bad duration, and
    :class:`~cronkeeper.errors.StorageError`.
    """
    get_job(job)
    now = service.clock()
    until = now + parse_duration(for_) if for_ else None
    text = truncate(service.settings.redactor(reason.strip()), MAX_REASON) if reason else None
    row = await service.job_states.pause(job, now, until=until, reason=text or None)
    log.info("%s paused%s", job, f" until {_iso(until)}" if until else "")
    return row


async def resume_job(service: Service, job: str) -> JobState:
    """End a pause at once (``cronkeeper resume``, ``POST /api/cron/{job}/resume``)."""
    get_job(job)
    row = await service.job_states.resume(job, service.clock())
    log.info("%s resumed", job)
    return row


def pause_json(row: JobState, now: datetime) -> dict[str, Any]:
    return {"cronName": row.cron_name, **row.pause_json(now)}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
