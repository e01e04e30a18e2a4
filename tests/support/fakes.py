"""A stand-in for ``run_job`` that records its calls and writes real ledger rows (no HTTP)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.errors import AlreadyRunning
from cronkeeper.service import Service
from cronkeeper.storage.schema import cron_runs


@dataclass(frozen=True)
class Outcome:
    run_id: str | None
    status: str
    records_count: int
    error_message: str | None


class Interrupted(BaseException):
    """What Ctrl-C or a lost pod looks like from inside a backfill."""


@dataclass
class FakeRun:
    """Plays a job: ``busy`` names raise AlreadyRunning, ``crash`` dates raise RuntimeError,
    ``interrupt`` dates raise :class:`Interrupted`, ``statuses`` sets a date's final status."""

    busy: set[str] = field(default_factory=set)
    crash: set[date] = field(default_factory=set)
    interrupt: set[date] = field(default_factory=set)
    statuses: dict[date, str] = field(default_factory=dict)
    records: int = 120
    block: asyncio.Event | None = None
    calls: list[tuple[str, date]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    inside: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a run's ledger row is written and ``block`` holds it."""

    async def __call__(
        self, service: Service, name: str, day: date, *, slot: datetime | None = None
    ) -> Outcome:
        self.calls.append((name, day))
        self.called.set()
        if name in self.busy:
            raise AlreadyRunning(f"{name} is already running (held by another replica)")
        if day in self.crash:
            raise RuntimeError(f"boom on {day}")
        if day in self.interrupt:
            raise Interrupted
        async with service.ledger.track(name, report_date=day) as tracker:
            if self.block is not None:
                self.inside.set()
                await self.block.wait()
            status = self.statuses.get(day, "success")
            if status in ("success", "partial"):
                tracker.stored(self.records)
            if status in ("partial", "error"):
                tracker.skip("act_1", "HTTP 500 after 3 attempts")
        assert tracker.summary is not None
        return Outcome(
            tracker.run_id,
            tracker.summary.status,
            tracker.summary.records_count,
            tracker.summary.error_message,
        )

    def days(self) -> list[date]:
        return [day for _, day in self.calls]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


_ids = iter(range(1, 1_000_000))


async def insert_run(
    engine: AsyncEngine,
    cron_name: str,
    started_at: datetime,
    *,
    status: str = "success",
    report_date: date | None = None,
) -> str:
    """A ledger row written directly (for states a real run takes hours to reach)."""
    run_id = f"00000000-0000-4000-8000-{next(_ids):012d}"
    finished = None if status == "running" else started_at
    async with engine.begin() as conn:
        await conn.execute(
            cron_runs.insert().values(
                id=run_id,
                cron_name=cron_name,
                started_at=started_at,
                finished_at=finished,
                status=status,
                records_count=0,
                created_at=datetime.now(UTC),
                report_date=report_date,
            )
        )
    return run_id
