"""Table definitions (SQLAlchemy Core), the single description both dialects share.

The DDL that creates them lives in the Alembic migrations (``cronkeeper/migrations``), where
the PostgreSQL side is written exactly as the design asks (``gen_random_uuid()``, RLS).
These objects are what queries are built from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
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
    text,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "RUN_STATUSES",
    "Money",
    "UtcDateTime",
    "accounts",
    "cron_leases",
    "cron_runs",
    "job_state",
    "meta_account_details",
    "meta_daily_insights",
    "meta_no_delivery_days",
    "metadata",
    "mixpanel_daily_events",
    "scheduler_heartbeats",
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


class Money(TypeDecorator[Decimal]):
    """An exact amount with 4 decimal places: ``NUMERIC(18,4)`` on PostgreSQL, decimal text
    on SQLite.

    SQLite has no decimal type: a ``NUMERIC`` column stores ``0.1 + 0.2`` as the float
    ``0.30000000000000004`` and a large KRW amount loses its last digits. As text (a ``TEXT``
    column, so SQLite's type affinity leaves it alone) it keeps exactly what PostgreSQL keeps:
    the value rounded to 4 places the way PostgreSQL rounds (half away from zero), and
    the same overflow (at most 14 integer digits). Values come back as ``Decimal`` with 4
    places on both.
    """

    impl = Numeric(18, 4)
    cache_ok = True
    PLACES = Decimal("0.0001")
    LIMIT = Decimal(10) ** 14

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(18, 4, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = self.exact(value)
        return format(amount, "f") if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        # SQLite hands back the text, or a float for arithmetic on it (SUM).
        return self.exact(value)

    @classmethod
    def exact(cls, value: Any) -> Decimal:
        """``value`` rounded to 4 places as PostgreSQL's ``NUMERIC(18,4)`` would store it."""
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
        if not amount.is_finite():
            raise ValueError(f"not an amount: {value!r}")
        amount = amount.quantize(cls.PLACES, rounding=ROUND_HALF_UP)
        if abs(amount) >= cls.LIMIT:
            raise ValueError(f"amount {amount} does not fit NUMERIC(18,4)")
        return amount + 0  # no negative zero: PostgreSQL has none


metadata = MetaData()

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
    Column("retry_counts", Text),
    # The epoch of the job's lease the run was started under (migration 0013); NULL: it held
    # no lease (the database could not be asked), or it ran before 0013.
    Column("lease_epoch", BigInteger),
    # A run without a lease: its last sign of life (closed as abandoned once stale).
    Column("heartbeat_at", UtcDateTime),
    CheckConstraint(
        "status IN ('running','success','error','partial')", name="cron_runs_status_check"
    ),
    CheckConstraint("records_count >= 0", name="cron_runs_records_count_check"),
    Index("idx_cron_runs_name_report_date", "cron_name", "report_date"),
)
# As the design writes it, and as migration 0001 creates it: newest first.
Index("idx_cron_runs_name_started", cron_runs.c.cron_name, cron_runs.c.started_at.desc())
# Each job's successes only, newest first (migration 0008): the last success at any history.
Index(
    "idx_cron_runs_success",
    cron_runs.c.cron_name,
    cron_runs.c.started_at.desc(),
    postgresql_where=text("status = 'success'"),
    sqlite_where=text("status = 'success'"),
)
# Each job's successes and partials, newest first (migration 0012): the last ok run for
# ``cronkeeper_last_ok_timestamp_seconds`` at any history, a job that always fails included.
Index(
    "idx_cron_runs_ok",
    cron_runs.c.cron_name,
    cron_runs.c.started_at.desc(),
    postgresql_where=text("status IN ('success', 'partial')"),
    sqlite_where=text("status IN ('success', 'partial')"),
)
# Each job's running runs only (migration 0009): closing abandoned runs at any history size.
Index(
    "idx_cron_runs_running",
    cron_runs.c.cron_name,
    postgresql_where=text("status = 'running'"),
    sqlite_where=text("status = 'running'"),
)

cron_leases = Table(
    "cron_leases",
    metadata,
    Column("job_name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("run_id", Uuid(as_uuid=False)),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    # Grows by one with every claim (migration 0013): the holder's fencing token.
    Column("epoch", BigInteger, nullable=False, server_default=text("0")),
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
    Column("paused_by", Text),
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

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("cron_name", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_by", Text),
    Column("claimed_until", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    Column("last_error", Text),
)
"""Alert messages waiting for (or past) delivery, written with the state change that owes
them (migration 0011; :mod:`cronkeeper.ledger.outbox` owns its SQL)."""
Index(
    "idx_alert_outbox_pending",
    alert_outbox.c.next_attempt_at,
    postgresql_where=text("delivered_at IS NULL"),
    sqlite_where=text("delivered_at IS NULL"),
)

scheduler_heartbeats = Table(
    "scheduler_heartbeats",
    metadata,
    Column("id", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("last_beat_at", UtcDateTime, nullable=False),
    Column("stopped_at", UtcDateTime),
    Index("idx_scheduler_heartbeats_beat", "last_beat_at"),
)
"""Which schedulers are alive (:mod:`cronkeeper.ledger.presence` owns its SQL)."""

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
    Column("spend", Money(), nullable=False),
    Column("impressions", BigInteger, nullable=False),
    Column("clicks", BigInteger, nullable=False),
    Column("reach", BigInteger, nullable=False),
    Column("conversions", Money(), nullable=False),
    Column("currency", Text),
    Column("collected_at", UtcDateTime, nullable=False),
    Column("leads", Money, nullable=False, server_default="0"),
    PrimaryKeyConstraint("ad_account_id", "date"),
    Index("idx_meta_daily_insights_date", "date"),
    # What changed since the last benchmarks (migration 0009; jobs/collect_benchmarks.py).
    Index("idx_meta_daily_insights_collected", "collected_at"),
)

meta_no_delivery_days = Table(
    "meta_no_delivery_days",
    metadata,
    Column("ad_account_id", Text, nullable=False),
    Column("date", Date, nullable=False),
    Column("collected_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("ad_account_id", "date"),
    Index("idx_meta_no_delivery_days_date", "date"),
)
"""(ad account, day) pairs Meta answered without a row: collected, no delivery (0010)."""

meta_account_details = Table(
    "meta_account_details",
    metadata,
    Column("ad_account_id", Text, primary_key=True),
    Column("name", Text),
    Column("timezone_name", Text, nullable=False),
    Column("currency", Text),
    Column("fetched_at", UtcDateTime, nullable=False),
    Column("account_status", Integer),  # Meta's account_status (migration 0009)
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
