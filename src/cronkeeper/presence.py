"""Is a scheduler alive? A pure function of the newest heartbeats, the watch interval and
the time (issue 22): health, the status page and ``/metrics`` ask it. The heartbeats' SQL is
:mod:`cronkeeper.ledger.presence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["SILENT_INTERVALS", "Heartbeat", "Presence", "presence"]

SILENT_INTERVALS = 3
"""A scheduler silent for more than this many watch intervals is not alive."""


@dataclass(frozen=True)
class Heartbeat:
    """One scheduler's row."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None = None


@dataclass(frozen=True)
class Presence:
    """What health, the page and ``/metrics`` say about the schedulers."""

    alive: bool
    last: Heartbeat | None
    age_seconds: float | None
    """Seconds since the newest beat (``None``: no scheduler ever beat)."""
    limit_seconds: float

    @property
    def ever(self) -> bool:
        return self.last is not None

    @property
    def changes_at(self) -> datetime | None:
        """When this verdict stops being true without a new beat: a live scheduler turns
        not alive, a stopped or silent-to-be one turns silent (``None``: never, by itself)."""
        if self.last is None or self.silent:
            return None
        return self.last.last_beat_at + timedelta(seconds=self.limit_seconds)

    @property
    def silent(self) -> bool:
        """A scheduler was here and none has beaten for more than ``SILENT_INTERVALS`` watch
        intervals (a clean stop counts too once that long has passed: a restart beats at
        once, so only a stop that nobody replaced gets here)."""
        return (
            not self.alive
            and self.age_seconds is not None
            and self.age_seconds > self.limit_seconds
        )

    def as_json(self) -> dict[str, Any]:
        last = self.last
        return {
            "alive": self.alive,
            "host": last.host if last else None,
            "pid": last.pid if last else None,
            "startedAt": last.started_at.isoformat() if last else None,
            "lastBeatAt": last.last_beat_at.isoformat() if last else None,
            "stoppedAt": last.stopped_at.isoformat() if last and last.stopped_at else None,
            "ageSeconds": round(self.age_seconds, 1) if self.age_seconds is not None else None,
        }

    def warning(self) -> str | None:
        """Health's ``warnings`` entry for a scheduler that was there and fell silent."""
        last = self.last
        if not self.silent or last is None:
            return None
        if last.stopped_at is not None:
            return (
                f"scheduler {last.host} (pid {last.pid}) stopped at"
                f" {last.stopped_at.isoformat(timespec='seconds')}: no job runs on its"
                " schedule unless another scheduler or system cron starts it"
            )
        return (
            f"scheduler {last.host} (pid {last.pid}) silent since"
            f" {last.last_beat_at.isoformat(timespec='seconds')} (more than"
            f" {SILENT_INTERVALS} watch intervals): no job runs on its schedule"
        )


def presence(beats: Sequence[Heartbeat], now: datetime, interval: timedelta) -> Presence:
    """Whether a scheduler is alive at ``now``, from the newest heartbeats (any order): the
    newest live one if there is one (a replica that stopped a moment ago does not hide one
    that goes on), else the newest of all (to say since when it is silent or stopped)."""
    limit = (interval * SILENT_INTERVALS).total_seconds()

    def age(beat: Heartbeat) -> float:
        return max((now - beat.last_beat_at).total_seconds(), 0.0)

    newest = sorted(beats, key=lambda b: b.last_beat_at, reverse=True)
    live = [b for b in newest if b.stopped_at is None and age(b) <= limit]
    if live:
        return Presence(True, live[0], age(live[0]), limit)
    if not newest:
        return Presence(False, None, None, limit)
    return Presence(False, newest[0], age(newest[0]), limit)
