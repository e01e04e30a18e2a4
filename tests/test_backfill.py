"""Backfill on SQLite and PostgreSQL: one run per date, done dates skipped, resumable,
``force``, failures reported, progress as a bar or as plain lines."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.backfill import (
    BackfillReport,
    DateOutcome,
    PlainProgress,
    RichProgress,
    backfill,
    make_progress,
    plan_runs,
)
from cronkeeper.errors import StorageError, UnknownJob
from cronkeeper.ledger import Ledger
from cronkeeper.service import Service
from cronkeeper.storage.engine import create_engine
from cronkeeper.storage.schema import meta_daily_insights
from tests.conftest import FakeClock, make_settings
from tests.support.fakes import FakeRun, Interrupted, insert_run

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # yesterday = 2026-11-19


def d(day: int, month: int = 11) -> date:
    return date(2026, month, day)


@pytest.fixture
def service(database_url: str, engine: AsyncEngine) -> Service:
    # A one-day window: one run per date, so each run is pinned (the windows have own tests).
    settings = make_settings(database_url, meta_lookback_days=1)
    return Service.from_settings(settings, clock=FakeClock(NOW), engine=engine)


async def test_one_run_per_date_in_date_order_each_recorded_with_its_date(
    service: Service,
) -> None:
    run = FakeRun()
    report = await backfill(service, "collect-daily", d(1), d(5), run=run)
    assert run.calls == [("collect-daily", d(n)) for n in range(1, 6)]
    assert [o.status for o in report.outcomes] == ["success"] * 5
    assert report.exit_code == 0
    assert await service.ledger.done_dates("collect-daily", d(1), d(30)) == {
        d(n) for n in range(1, 6)
    }


async def test_skips_done_dates_and_resumes_after_an_interruption(service: Service) -> None:
    with pytest.raises(Interrupted):
        await backfill(service, "collect-daily", d(1), d(6), run=FakeRun(interrupt={d(3)}))
    again = FakeRun()
    report = await backfill(service, "collect-daily", d(1), d(6), run=again)
    assert again.days() == [d(3), d(4), d(5), d(6)]
    assert [(o.day, o.status) for o in report.outcomes] == [
        (d(1), "skipped"),
        (d(2), "skipped"),
        (d(3), "success"),
        (d(4), "success"),
        (d(5), "success"),
        (d(6), "success"),
    ]
    assert report.exit_code == 0
    assert "4 runs (4 success), 2 already collected" in report.summary()


async def test_a_failed_date_is_reported_the_rest_goes_on_and_a_rerun_retries_only_it(
    service: Service,
) -> None:
    run = FakeRun(statuses={d(2): "error", d(4): "partial"})
    report = await backfill(service, "collect-daily", d(1), d(5), run=run)
    assert run.days() == [d(1), d(2), d(3), d(4), d(5)]
    assert [o.status for o in report.outcomes] == [
        "success",
        "error",
        "success",
        "partial",
        "success",
    ]
    assert report.exit_code == 1  # an error outranks a partial
    assert "to retry: 2026-11-02, 2026-11-04" in report.summary()
    again = FakeRun()
    await backfill(service, "collect-daily", d(1), d(5), run=again)
    assert again.days() == [d(2), d(4)]


async def test_a_run_that_raises_is_an_error_for_that_date_only(service: Service) -> None:
    run = FakeRun(crash={d(2)})
    report = await backfill(service, "collect-daily", d(1), d(3), run=run)
    assert [o.status for o in report.outcomes] == ["success", "error", "success"]
    assert report.outcomes[1].error_message == "RuntimeError: boom on 2026-11-02"


async def test_force_reruns_every_date(service: Service) -> None:
    await backfill(service, "collect-daily", d(1), d(3), run=FakeRun())
    again = FakeRun()
    report = await backfill(service, "collect-daily", d(1), d(3), force=True, run=again)
    assert again.days() == [d(1), d(2), d(3)]
    assert report.with_status("skipped") == []


async def test_a_job_running_elsewhere_stops_the_backfill_with_exit_75(service: Service) -> None:
    run = FakeRun(busy={"collect-daily"})
    report = await backfill(service, "collect-daily", d(1), d(5), run=run)
    assert run.days() == [d(1)]
    assert report.stopped_at == d(1)
    assert report.exit_code == 75
    assert "stopped at 2026-11-01 (5 run(s) left)" in report.summary()


async def test_only_success_runs_of_this_job_and_these_dates_count_as_done(
    service: Service, engine: AsyncEngine
) -> None:
    at = datetime(2026, 11, 20, 3, tzinfo=UTC)
    await insert_run(engine, "collect-daily", at, report_date=d(1))
    await insert_run(engine, "collect-daily", at, status="partial", report_date=d(2))
    await insert_run(engine, "collect-daily", at, status="error", report_date=d(3))
    await insert_run(engine, "collect-daily", at, status="running", report_date=d(4))
    await insert_run(engine, "collect-mixpanel", at, report_date=d(5))
    await insert_run(engine, "collect-daily", at, report_date=d(30, 10))  # before the range
    await insert_run(engine, "collect-daily", at)  # no report date recorded
    # A date that failed once and then succeeded is done.
    await insert_run(engine, "collect-daily", at, status="error", report_date=d(6))
    await insert_run(engine, "collect-daily", at + timedelta(hours=1), report_date=d(6))
    assert await Ledger(engine).done_dates("collect-daily", d(1), d(10)) == {d(1), d(6)}


async def test_done_dates_says_the_database_is_unavailable() -> None:
    engine = create_engine("postgresql://cronkeeper:pw@127.0.0.1:1/nothing", timeout=1)
    try:
        with pytest.raises(StorageError, match="cannot tell which dates are done"):
            await Ledger(engine).done_dates("collect-daily", d(1), d(2))
    finally:
        await engine.dispose()


async def test_until_defaults_to_yesterday_in_the_configured_zone(
    database_url: str, engine: AsyncEngine
) -> None:
    # 2026-11-20 20:00 UTC is already the 21st in Seoul: yesterday there is the 20th.
    clock = FakeClock(datetime(2026, 11, 20, 20, 0, tzinfo=UTC))
    service = Service.from_settings(
        make_settings(database_url, timezone="Asia/Seoul", meta_lookback_days=1),
        clock=clock,
        engine=engine,
    )
    run = FakeRun()
    report = await backfill(service, "collect-daily", d(18), run=run)
    assert (report.until, run.days()) == (d(20), [d(18), d(19), d(20)])


async def test_refuses_days_that_are_not_over_and_empty_or_unknown_ranges(
    service: Service,
) -> None:
    with pytest.raises(ValueError, match="2026-11-20 is not over yet in UTC"):
        await backfill(service, "collect-daily", d(18), d(20), run=FakeRun())
    with pytest.raises(ValueError, match="--since 2026-11-05 is after --until 2026-11-04"):
        await backfill(service, "collect-daily", d(5), d(4), run=FakeRun())
    with pytest.raises(UnknownJob, match="no job named 'collect-weekly'"):
        await backfill(service, "collect-weekly", d(1), d(2), run=FakeRun())


async def test_non_tty_progress_prints_one_plain_line_per_date(service: Service) -> None:
    await backfill(service, "collect-daily", d(1), d(1), run=FakeRun())
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=60)
    progress = make_progress(console)
    assert isinstance(progress, PlainProgress)
    run = FakeRun(statuses={d(3): "partial"})
    await backfill(service, "collect-daily", d(1), d(3), run=run, progress=progress)
    assert buffer.getvalue().splitlines() == [
        "2026-11-01 collect-daily skipped: already collected (1/3)",
        "2026-11-02 collect-daily success 120 records (2/3)",
        "2026-11-03 collect-daily partial 120 records: skipped 1 of 2 units: "
        "- act_1: HTTP 500 after 3 attempts (3/3)",
    ]
    assert "\x1b[" not in buffer.getvalue()


async def test_tty_progress_is_a_rich_bar(service: Service) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    progress = make_progress(console)
    assert isinstance(progress, RichProgress)
    run = FakeRun(statuses={d(2): "error"})
    await backfill(service, "collect-daily", d(1), d(3), run=run, progress=progress)
    out = buffer.getvalue()
    assert "3/3" in out
    assert "\x1b[" in out  # drawn, not printed line by line
    assert "2026-11-02 collect-daily error 0 records" in out  # failures stay visible


def test_report_json_and_plain_lines() -> None:
    report = BackfillReport("collect-daily", d(1), d(2), force=False)
    report.outcomes += [DateOutcome(d(1), "success", 5, None, "r1"), DateOutcome(d(2), "busy")]
    assert report.as_json()["exitCode"] == 75
    assert report.as_json()["dates"][0] == {
        "date": "2026-11-01",
        "since": "2026-11-01",
        "status": "success",
        "recordsCount": 5,
        "errorMessage": None,
        "runId": "r1",
    }
    assert (
        DateOutcome(d(2), "busy").line("collect-daily", 2, 2)
        == "2026-11-02 collect-daily already running elsewhere: backfill stopped (2/2)"
    )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_backfill_with_the_real_runner_skips_what_it_collected(service: Service) -> None:
    """The default ``run`` is ``run_job`` (the weekly job reads only the database); a week
    that found no insights is not done, one that wrote benchmarks is."""
    first = await backfill(service, "collect-benchmarks", d(1), d(12))
    assert [(o.since, o.day, o.status) for o in first.outcomes] == [
        (d(26, 10), d(1), "success"),
        (d(2), d(8), "success"),
    ]
    assert all(o.run_id for o in first.outcomes)
    async with service.engine.begin() as conn:
        await conn.execute(
            insert(meta_daily_insights).values(
                ad_account_id="1",
                date=d(5),
                spend=Decimal(10),
                impressions=1000,
                clicks=10,
                reach=900,
                conversions=Decimal(1),
                currency="USD",
                collected_at=NOW,
            )
        )
    second = await backfill(service, "collect-benchmarks", d(1), d(16))
    assert [(o.day, o.status, o.records_count) for o in second.outcomes] == [
        (d(1), "success", 0),  # still no insights: not done, computed again
        (d(8), "success", 4),
        (d(15), "success", 0),
    ]
    third = await backfill(service, "collect-benchmarks", d(1), d(16))
    assert [(o.day, o.status) for o in third.outcomes] == [
        (d(1), "success"),
        (d(8), "skipped"),
        (d(15), "success"),
    ]


def test_windows_tile_the_range_so_a_90_day_backfill_is_4_meta_chains() -> None:
    settings = make_settings("sqlite:///unused.db")
    runs = plan_runs(settings, "collect-daily", d(1, 8), d(29, 10))  # 90 days
    assert runs == [
        (d(1, 8), d(28, 8)),
        (d(29, 8), d(25, 9)),
        (d(26, 9), d(23, 10)),
        (d(24, 10), d(29, 10)),
    ]
    mixpanel = plan_runs(settings, "collect-mixpanel", d(1), d(15))
    assert [run for _, run in mixpanel] == [d(7), d(14), d(15)]
    assert plan_runs(settings, "sync-notion", d(1), d(15)) == [(d(1), d(15))]
    weeks = plan_runs(settings, "collect-benchmarks", d(3), d(23))  # Tue 3rd … Mon 23rd
    assert weeks == [(d(2), d(8)), (d(9), d(15)), (d(16), d(22))]
    assert all(run.weekday() == 6 for _, run in weeks)


async def test_a_ranged_backfill_runs_once_per_window(
    database_url: str, engine: AsyncEngine
) -> None:
    service = Service.from_settings(
        make_settings(database_url), clock=FakeClock(NOW), engine=engine
    )
    run = FakeRun()
    report = await backfill(service, "collect-daily", d(1, 8), d(29, 10), run=run)
    assert run.days() == [d(28, 8), d(25, 9), d(23, 10), d(29, 10)]
    assert report.total == 4
    assert (
        report.outcomes[0]
        .line("collect-daily", 1, 4)
        .startswith("2026-08-01…2026-08-28 collect-daily success")
    )
    again = FakeRun()
    await backfill(service, "collect-daily", d(1, 8), d(29, 10), run=again)
    assert again.days() == []
