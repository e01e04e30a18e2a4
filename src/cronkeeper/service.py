"""The running service's parts, built once from the settings and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.clock import Clock, utcnow
from cronkeeper.config import Settings
from cronkeeper.health import HealthReport, evaluate_health
from cronkeeper.ledger import Ledger
from cronkeeper.storage.engine import create_engine, ensure_schema

__all__ = ["Service"]


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    ledger: Ledger
    clock: Clock

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock = utcnow, engine: AsyncEngine | None = None
    ) -> Service:
        engine = engine or create_engine(settings.database_url, timeout=settings.ledger_timeout)
        ledger = Ledger(
            engine, timeout=settings.ledger_timeout, clock=clock, redactor=settings.redactor
        )
        return cls(settings=settings, engine=engine, ledger=ledger, clock=clock)

    async def prepare(self) -> None:
        """Create the SQLite schema on first use; on PostgreSQL, report a stale one."""
        await ensure_schema(self.engine)

    async def health(self) -> HealthReport:
        """Raises :class:`~cronkeeper.errors.StorageError` when the database cannot answer."""
        specs = self.settings.monitored
        latest = await self.ledger.latest_runs([spec.name for spec in specs])
        return evaluate_health(specs, latest, self.clock())

    async def aclose(self) -> None:
        await self.engine.dispose()
