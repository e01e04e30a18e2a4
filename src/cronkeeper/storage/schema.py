"""Table definitions (SQLAlchemy Core), the single description both dialects share.

The DDL that creates them lives in the Alembic migrations (``cronkeeper/migrations``), where
the PostgreSQL side is written exactly as the design asks (``gen_random_uuid()``, RLS).
These objects are what queries are built from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "RUN_STATUSES",
    "UtcDateTime",
    "accounts",
    "cron_leases",
    "cron_runs",
    "job_state",
    "meta_account_details",
    "meta_daily_insights",
    "metadata",
    "mixpanel_daily_events",
    "weekly_benchmarks",
]

RUN_STATUSES = ("running", "success", "error", "partial")
BENCHMARK_METRICS = ("ctr", "cpc", "cpm", "cpa")


class UtcDateTime(TypeDecorator[datetime]):
    """``TIMESTAMPTZ`` on PostgreSQL; on SQLite, UTC text that sorts correctly.

    Values always come back timezone-aware in UTC, whatever the dialect, so nothing above the
    storage layer ever compares a naive datetime with an aware one.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - SQLite via raw text
            value = datetime.fromisoformat(value)
        stamp: datetime = value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


metadata = MetaData()
Money = Numeric(18, 4)

cron_runs = Table(
    "cron_runs",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("cron_name", Text, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("status", Text, nullable=False, server_default="running"),
    Column("records_count", Integer, server_default="0"),
    Column("error_message", Text),
    Column("created_at", UtcDateTime),
    Column("report_date", Date),
    CheckConstraint(
        "status IN ('running','success','error','partial')", name="cron_runs_status_check"
    ),
    CheckConstraint("records_count >= 0", name="cron_runs_records_count_check"),
    Index("idx_cron_runs_name_started", "cron_name", "started_at"),
    Index("idx_cron_runs_name_report_date", "cron_name", "report_date"),
)

cron_leases = Table(
    "cron_leases",
    metadata,
    Column("job_name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("run_id", Uuid(as_uuid=False)),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

job_state = Table(
    "job_state",
    metadata,
    Column("cron_name", Text, primary_key=True),
    Column("state", Text, nullable=False, server_default="ok"),
    Column("since", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False, server_default="0"),
    Column("last_alerted_at", UtcDateTime),
    Column("paused", Boolean, nullable=False, server_default="false"),
    Column("paused_until", UtcDateTime),
    Column("pause_reason", Text),
    Column("resumed_at", UtcDateTime),
    Column("evaluated_run_id", Text),
    Column("anomaly", Text),
    Column("expected_low", Double),
    Column("expected_high", Double),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint(
        "state IN ('ok','missing','stuck','failed','anomalous','paused')",
        name="job_state_state_check",
    ),
    CheckConstraint(
        "anomaly IS NULL OR anomaly IN ('low-volume','high-volume')",
        name="job_state_anomaly_check",
    ),
)
"""Each job's alert state and pause (:mod:`cronkeeper.ledger.job_state` owns its SQL)."""

accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("meta_ad_account_id", Text, nullable=False, unique=True),
    Column("mixpanel_project_id", Text),
    Column("industry", Text),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("updated_at", UtcDateTime, nullable=False),
)

meta_daily_insights = Table(
    "meta_daily_insights",
    metadata,
    Column("ad_account_id", Text, nullable=False),
    Column("date", Date, nullable=False),
    Column("spend", Money, nullable=False),
    Column("impressions", BigInteger, nullable=False),
    Column("clicks", BigInteger, nullable=False),
    Column("reach", BigInteger, nullable=False),
    Column("conversions", Money, nullable=False),
    Column("currency", Text),
    Column("collected_at", UtcDateTime, nullable=False),
    Column("leads", Money, nullable=False, server_default="0"),
    PrimaryKeyConstraint("ad_account_id", "date"),
)

meta_account_details = Table(
    "meta_account_details",
    metadata,
    Column("ad_account_id", Text, primary_key=True),
    Column("name", Text),
    Column("timezone_name", Text, nullable=False),
    Column("currency", Text),
    Column("fetched_at", UtcDateTime, nullable=False),
)

mixpanel_daily_events = Table(
    "mixpanel_daily_events",
    metadata,
    Column("project_id", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("date", Date, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("collected_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("project_id", "event", "date"),
)

weekly_benchmarks = Table(
    "weekly_benchmarks",
    metadata,
    Column("week_start", Date, nullable=False),
    Column("industry", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("p25", Double, nullable=False),
    Column("p50", Double, nullable=False),
    Column("p75", Double, nullable=False),
    Column("sample_size", Integer, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("week_start", "industry", "currency", "metric"),
    CheckConstraint("metric IN ('ctr','cpc','cpm','cpa')", name="weekly_benchmarks_metric_check"),
)
