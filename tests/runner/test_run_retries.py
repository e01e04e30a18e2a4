"""A run's retries are stored with its end (issue 22): ``/metrics`` counts the retries of a
``cronkeeper run`` from system cron too, not only those of the process it scrapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cronkeeper.http import RetryEvent
from cronkeeper.runner import run_job
from cronkeeper.sandbox import Fault, MetaSimulator
from cronkeeper.sandbox.server import serve_app
from cronkeeper.service import RunObserver, Service
from tests.alerting.test_alerts import FakeSleep
from tests.conftest import FakeClock, make_settings

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


class Retries(RunObserver):
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def retry(self, cron_name: str, event: RetryEvent) -> None:
        self.reasons.append(event.reason)


async def test_the_runs_retries_are_in_the_ledger_by_reason(database_url: str) -> None:
    token = "meta-token-0123456789abcdef"
    sim = MetaSimulator(["1001", "1002"], access_token=token)
    clock = FakeClock(T0)
    with serve_app(sim.app) as meta_base:
        settings = make_settings(
            database_url,
            meta_access_token=token,
            meta_api_base=meta_base,
            meta_api_version="v27.0",
            meta_ad_account_ids=("1001", "1002"),
            meta_lookback_days=1,
        )
        service = Service.from_settings(settings, clock=clock, sleep=FakeSleep())
        seen = Retries()
        service.observers.append(seen)
        try:
            sim.always("1002", Fault.status(503))
            result = await run_job(service, "collect-daily", T0.date() - timedelta(days=1))
            [(job, status, counts)] = await service.ledger.started_since(
                ["collect-daily"], T0 - timedelta(hours=1)
            )
        finally:
            await service.aclose()
    assert result.status == "partial" and (job, status) == ("collect-daily", "partial")
    assert seen.reasons and set(seen.reasons) == {"status_5xx"}
    assert counts == {"status_5xx": len(seen.reasons)}
