"""Numbers that match Meta's own reports: leads, each ad account's own day.

- ``meta_daily_insights.leads``: the lead count (first ``META_LEAD_ACTION_TYPES`` type present),
  0 for rows stored before it; the restatement window rewrites recent rows anyway.
- ``meta_account_details``: each ad account's ``timezone_name`` and ``currency`` as
  ``GET /{version}/act_{id}`` answers them, with when they were read (refreshed at most daily).
  A table of its own, not columns of ``accounts``: ``META_AD_ACCOUNT_IDS`` accounts have no
  ``accounts`` row.
- ``weekly_benchmarks`` gains ``currency`` in its key (``week_start``, ``industry``,
  ``currency``, ``metric``): money metrics are never mixed across currencies. Rows computed
  before this mixed them, so they are kept labelled ``mixed`` (no run writes that value);
  ``cronkeeper backfill collect-benchmarks`` recomputes them per currency.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meta_daily_insights") as batch:
        batch.add_column(sa.Column("leads", sa.Numeric(18, 4), nullable=False, server_default="0"))
    op.create_table(
        "meta_account_details",
        sa.Column("ad_account_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("timezone_name", sa.Text, nullable=False),
        sa.Column("currency", sa.Text),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE meta_account_details ENABLE ROW LEVEL SECURITY")
        op.execute(
            "ALTER TABLE weekly_benchmarks ADD COLUMN currency TEXT NOT NULL DEFAULT 'mixed'"
        )
        op.execute("ALTER TABLE weekly_benchmarks ALTER COLUMN currency DROP DEFAULT")
        op.execute("ALTER TABLE weekly_benchmarks DROP CONSTRAINT weekly_benchmarks_pkey")
        op.execute(
            "ALTER TABLE weekly_benchmarks ADD CONSTRAINT weekly_benchmarks_pkey"
            " PRIMARY KEY (week_start, industry, currency, metric)"
        )
    else:  # SQLite cannot change a primary key in place: copy into the new shape.
        _rebuild_benchmarks(with_currency=True)


def _rebuild_benchmarks(*, with_currency: bool) -> None:
    key = ["week_start", "industry", "currency", "metric"] if with_currency else None
    columns: list[sa.schema.SchemaItem] = [
        sa.Column("week_start", sa.Date, nullable=False),
        sa.Column("industry", sa.Text, nullable=False),
        *([sa.Column("currency", sa.Text, nullable=False)] if with_currency else []),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("p25", sa.Double, nullable=False),
        sa.Column("p50", sa.Double, nullable=False),
        sa.Column("p75", sa.Double, nullable=False),
        sa.Column("sample_size", sa.Integer, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    ]
    op.create_table(
        "weekly_benchmarks_new",
        *columns,
        sa.PrimaryKeyConstraint(*(key or ["week_start", "industry", "metric"])),
        sa.CheckConstraint(
            "metric IN ('ctr','cpc','cpm','cpa')", name="weekly_benchmarks_metric_check"
        ),
    )
    shared = "week_start, industry, metric, p25, p50, p75, sample_size, computed_at"
    if with_currency:
        op.execute(
            f"INSERT INTO weekly_benchmarks_new ({shared}, currency)"
            f" SELECT {shared}, 'mixed' FROM weekly_benchmarks"
        )
    else:  # one row per old key: keep the one with the largest sample
        op.execute(
            f"INSERT OR REPLACE INTO weekly_benchmarks_new ({shared})"
            f" SELECT {shared} FROM weekly_benchmarks ORDER BY sample_size"
        )
    op.drop_table("weekly_benchmarks")
    op.rename_table("weekly_benchmarks_new", "weekly_benchmarks")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "DELETE FROM weekly_benchmarks a USING weekly_benchmarks b"
            " WHERE (a.week_start, a.industry, a.metric) = (b.week_start, b.industry, b.metric)"
            " AND (a.sample_size, a.currency) < (b.sample_size, b.currency)"
        )
        op.execute("ALTER TABLE weekly_benchmarks DROP CONSTRAINT weekly_benchmarks_pkey")
        op.execute("ALTER TABLE weekly_benchmarks DROP COLUMN currency")
        op.execute(
            "ALTER TABLE weekly_benchmarks ADD CONSTRAINT weekly_benchmarks_pkey"
            " PRIMARY KEY (week_start, industry, metric)"
        )
    else:
        _rebuild_benchmarks(with_currency=False)
    op.drop_table("meta_account_details")
    with op.batch_alter_table("meta_daily_insights") as batch:
        batch.drop_column("leads")
