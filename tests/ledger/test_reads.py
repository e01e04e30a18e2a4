"""The ledger's reads for the status page: only the newest runs per job, through
idx_cron_runs_name_started."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.ledger import Ledger
from cronkeeper.ledger.reads import last_runs_statement, recent_runs_statement
from cronkeeper.storage.schema import cron_runs
from tests.support.plans import query_plan
from tests.web.ledger_data import NOW, Row, insert_rows

pytestmark = pytest.mark.sql  # its subject is SQL: SQLite, PostgreSQL and PgBouncer

NAMES = ["collect-daily", "collect-mixpanel", "collect-benchmarks", "sync-notion"]


async def test_the_page_queries_walk_the_name_started_index(engine: AsyncEngine) -> None:
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO cron_runs (cron_name, started_at, finished_at, status) "
                    "SELECT (ARRAY['collect-daily','collect-mixpanel','collect-benchmarks',"
                    "'sync-notion','old-job'])[1 + g % 5], now() - g * interval '1 minute', "
                    "now() - g * interval '1 minute' + interval '5 seconds', "
                    "CASE WHEN g % 97 = 0 THEN 'error' ELSE 'success' END "
                    "FROM generate_series(1, 50000) AS g"
                )
            )
            await conn.execute(text("ANALYZE cron_runs"))
    strips = last_runs_statement(NAMES, 30)
    table = recent_runs_statement(NAMES, 50)
    filtered = recent_runs_statement(["collect-daily"], 50, status="error")
    for statement in (strips, table, filtered):
        shown = await query_plan(engine, statement)
        assert "idx_cron_runs_name_started" in shown, shown
        if engine.dialect.name == "postgresql":
            assert "Seq Scan" not in shown, shown
            assert "Bitmap" not in shown, shown
        else:
            assert "SCAN cron_runs" not in shown.replace("USING INDEX", "IDX"), shown
    # Each per-job arm needs no sort of its own: the index hands rows over newest first.
    strips_plan = await query_plan(engine, strips)
    if engine.dialect.name == "postgresql":
        assert "Sort" not in strips_plan, strips_plan
    else:
        assert "TEMP B-TREE" not in strips_plan, strips_plan


async def test_the_strips_hold_the_newest_30_runs_of_each_job(engine: AsyncEngine) -> None:
    rows = [
        Row(name, NOW - timedelta(hours=h, minutes=i), None, "success", h)
        for i, name in enumerate(NAMES[:2])
        for h in range(40)
    ]
    rows.append(Row("retired-job", NOW, None, "error"))
    await insert_rows(engine, rows)
    strips = await Ledger(engine).last_runs(NAMES, 30)
    by_job: dict[str, list[int]] = {}
    for run in strips:
        by_job.setdefault(run.cron_name, []).append(run.records_count)
    assert set(by_job) == {"collect-daily", "collect-mixpanel"}
    for counts in by_job.values():
        assert sorted(counts) == list(range(30))


async def test_the_table_holds_the_newest_runs_across_jobs_like_a_full_sort_would(
    engine: AsyncEngine,
) -> None:
    rows = [
        Row(
            NAMES[(i * 7) % 4],
            NOW - timedelta(minutes=13 * i + (i % 5)),
            None,
            "error" if i % 3 == 0 else "success",
        )
        for i in range(120)
    ]
    await insert_rows(engine, rows)
    for names, status in [(NAMES, None), (NAMES, "error"), (["sync-notion"], None)]:
        ours = await Ledger(engine).recent_runs(cron_names=names, limit=50, status=status)
        naive = select(cron_runs.c.id).where(cron_runs.c.cron_name.in_(names))
        if status:
            naive = naive.where(cron_runs.c.status == status)
        naive = naive.order_by(cron_runs.c.started_at.desc()).limit(50)
        async with engine.connect() as conn:
            expected = [str(r[0]) for r in await conn.execute(naive)]
        assert [r.id for r in ours] == expected
        assert 0 < len(ours) <= 50


def test_a_statement_needs_at_least_one_job() -> None:
    with pytest.raises(ValueError):
        last_runs_statement([], 30)
