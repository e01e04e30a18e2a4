"""A realistic month of ledger rows for the status page tests and its screenshot."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from cronkeeper.storage.schema import cron_runs

SEOUL = ZoneInfo("Asia/Seoul")
# Friday 2026-11-27 12:00 in Seoul: today's runs are done, except collect-mixpanel's, stuck
# since 01:30.
NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    cron_name: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    records_count: int = 0
    error_message: str | None = None
    report_date: date | None = None
    id: str = ""

    def values(self) -> dict[str, object]:
        return {
            "id": self.id or str(uuid.uuid4()),
            "cron_name": self.cron_name,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "records_count": self.records_count,
            "error_message": self.error_message,
            "created_at": self.started_at,
            "report_date": self.report_date,
        }


def _at(day: date, hour: int, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SEOUL).astimezone(UTC)


def realistic_month(now: datetime = NOW, days: int = 30) -> list[Row]:
    """Four jobs over ``days`` days: a failed run, a partial one, a volume drop, a stuck run."""
    rng = random.Random(6)
    today = now.astimezone(SEOUL).date()
    rows: list[Row] = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        report = day - timedelta(days=1)

        start = _at(day, 0, 0) + timedelta(seconds=rng.randint(1, 4))
        took = timedelta(seconds=rng.uniform(4, 9))
        if back == 12:
            rows.append(
                Row(
                    "sync-notion", start, start + took, "error", 0,
                    "FetchError: api.notion.com answered HTTP 502 three times "
                    "(POST /v1/data_sources/…/query); nothing was stored",
                    report,
                )
            )  # fmt: skip
        else:
            rows.append(
                Row(
                    "sync-notion",
                    start,
                    start + took,
                    "success",
                    rng.randint(118, 124),
                    None,
                    report,
                )
            )

        start = _at(day, 1, 0) + timedelta(seconds=rng.randint(1, 4))
        took = timedelta(seconds=rng.uniform(85, 150))
        if back == 0:
            rows.append(
                Row(
                    "collect-daily", start, start + timedelta(seconds=41), "error", 0,
                    "skipped 118 of 118 ad accounts:\n"
                    "- act_1023344556: RetriesExhausted: HTTP 503 from /v24.0/act_1023344556/"
                    "insights after 3 attempts (waited 3 s, 6 s)\n"
                    "- act_1023344557: RetriesExhausted: HTTP 503 after 3 attempts\n"
                    "- … 116 more",
                    report,
                )
            )  # fmt: skip
        elif back == 5:
            rows.append(
                Row(
                    "collect-daily", start, start + took + timedelta(seconds=95), "partial", 109,
                    "skipped 9 of 118 ad accounts:\n"
                    "- act_2031000001: PermanentFetchError: Meta error 190 (access token "
                    "expired) for act_2031000001; renew META_ACCESS_TOKEN\n"
                    "- act_2031000002: WaitTooLong: Meta asked to wait 25 min "
                    "(X-Business-Use-Case-Usage), above max_wait 60 s",
                    report,
                )
            )  # fmt: skip
        else:
            rows.append(
                Row("collect-daily", start, start + took, "success", rng.randint(114, 118), None,
                    report)
            )  # fmt: skip

        start = _at(day, 1, 30) + timedelta(seconds=rng.randint(1, 4))
        took = timedelta(seconds=rng.uniform(18, 35))
        if back == 0:
            rows.append(Row("collect-mixpanel", start, None, "running", 0, None, report))
        elif back in (8, 9):
            rows.append(
                Row(
                    "collect-mixpanel", start, start + took * 3, "partial", 12,
                    "skipped 8 of 12 Mixpanel projects:\n"
                    "- project 3304411: RetriesExhausted: HTTP 429 after 3 attempts "
                    "(Retry-After 60)",
                    report,
                )
            )  # fmt: skip
        else:
            rows.append(
                Row("collect-mixpanel", start, start + took, "success", rng.randint(34, 36), None,
                    report)
            )  # fmt: skip

        if day.weekday() == 0:  # Monday
            start = _at(day, 2, 0) + timedelta(seconds=rng.randint(1, 4))
            took = timedelta(seconds=rng.uniform(2, 5))
            if back == 18:
                rows.append(
                    Row(
                        "collect-benchmarks", start, start + took, "error", 0,
                        "no meta_daily_insights rows for the week starting "
                        f"{day - timedelta(days=7)}: run collect-daily for those dates first",
                        report,
                    )
                )  # fmt: skip
            else:
                rows.append(
                    Row("collect-benchmarks", start, start + took, "success",
                        rng.choice((20, 20, 24)), None, report)
                )  # fmt: skip
    return rows


async def insert_rows(engine: AsyncEngine, rows: list[Row]) -> list[str]:
    """Insert ``rows``; their ids, in order."""
    values = [row.values() for row in rows]
    async with engine.begin() as conn:
        await conn.execute(cron_runs.insert(), values)
    return [str(v["id"]) for v in values]
