"""Helpers for the job tests: a recording sleep, a job runner over the real ledger, reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import httpx
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.config import Settings
from cronkeeper.errors import CronkeeperError
from cronkeeper.http import HttpContext, RetryPolicy
from cronkeeper.http.pacing import Pacer
from cronkeeper.jobs import JobContext, get_job
from cronkeeper.ledger import Ledger, RunRow, RunSummary
from tests.conftest import FakeClock, make_settings

DAY = date(2026, 11, 19)
META_TOKEN = "meta-token-0123456789abcdef"
MIXPANEL_ACCOUNT = "cronkeeper.sa"
MIXPANEL_SECRET = "mixpanel-secret-0123456789"
NOTION_TOKEN = "ntn_test_token_0123456789"
DATA_SOURCE = "5f0c8c2e-0d6b-4c3a-9a57-4a1f2b3c4d5e"
POLICY = RetryPolicy(max_retries=2, waits=(3.0, 6.0), timeout=10.0, max_wait=60.0)


@dataclass
class FakeSleep:
    """Records every wait and returns at once; ``hook`` may hold a wait (to test overlap)."""

    waits: list[float] = field(default_factory=list)
    hook: Callable[[float], Awaitable[None]] | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.hook is not None:
            await self.hook(seconds)
        await asyncio.sleep(0)


@dataclass(frozen=True)
class Outcome:
    """What one run left behind: the tracker's summary, the ledger row, and the exception."""

    summary: RunSummary
    row: RunRow
    error: BaseException | None

    @property
    def status(self) -> str:
        return self.summary.status

    @property
    def message(self) -> str:
        return self.summary.error_message or ""


@dataclass
class Harness:
    engine: AsyncEngine
    database_url: str
    sleep: FakeSleep
    clock: FakeClock
    client: httpx.AsyncClient

    @classmethod
    @asynccontextmanager
    async def open(
        cls, engine: AsyncEngine, database_url: str, sleep: FakeSleep, clock: FakeClock
    ) -> AsyncIterator[Harness]:
        async with httpx.AsyncClient() as client:
            yield cls(engine, database_url, sleep, clock, client)

    def settings(self, **overrides: Any) -> Settings:
        return make_settings(self.database_url, **overrides)

    async def run(
        self,
        name: str,
        settings: Settings,
        day: date = DAY,
        *,
        explicit: bool = True,
        pacer: Pacer | None = None,
        deadline: datetime | None = None,
        policy: RetryPolicy = POLICY,
    ) -> Outcome:
        """Run job ``name`` inside the real ledger, the way the runner does (``explicit=False``:
        as a run without ``--date``, each source's own yesterday)."""
        job = get_job(name)
        http = HttpContext(
            client=self.client,
            policy=policy,
            sleep=self.sleep,
            now=self.clock,
            redactor=settings.redactor,
            pacer=pacer,
        )
        ctx = JobContext(
            settings=settings,
            engine=self.engine,
            http=http,
            clock=self.clock,
            explicit_day=explicit,
            deadline=deadline,
        )
        ledger = Ledger(self.engine, clock=self.clock, redactor=settings.redactor)
        error: BaseException | None = None
        try:
            async with ledger.track(name, unit_label=job.unit_label, report_date=day) as tracker:
                await job.run(ctx, day, tracker)
        except CronkeeperError as exc:
            error = exc
        assert tracker.summary is not None
        assert tracker.run_id is not None
        row = await ledger.get_run(tracker.run_id)
        assert row is not None
        assert (row.status, row.records_count, row.error_message) == (
            tracker.summary.status,
            tracker.summary.records_count,
            tracker.summary.error_message,
        )
        return Outcome(tracker.summary, row, error)

    async def rows(self, table: Table, *order_by: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            statement = select(table).order_by(*(table.c[c] for c in order_by))
            return [dict(r._mapping) for r in await conn.execute(statement)]

    async def count(self, table: Table) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())

    async def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(table.insert(), rows)
