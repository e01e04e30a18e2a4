"""The tables the four jobs write: accounts, Meta insights, Mixpanel counts, benchmarks.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("accounts", "meta_daily_insights", "mixpanel_daily_events", "weekly_benchmarks")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    money = sa.Numeric(18, 4)
    op.create_table(
        "accounts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("meta_ad_account_id", sa.Text, nullable=False),
        sa.Column("mixpanel_project_id", sa.Text),
        sa.Column("industry", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.UniqueConstraint("meta_ad_account_id", name="accounts_meta_ad_account_id_key"),
    )
    op.create_table(
        "meta_daily_insights",
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("spend", money, nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
        sa.Column("reach", sa.BigInteger, nullable=False),
        sa.Column("conversions", money, nullable=False),
        sa.Column("currency", sa.Text),
        sa.Column("collected_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("ad_account_id", "date"),
    )
    op.create_index("idx_meta_daily_insights_date", "meta_daily_insights", ["date"])
    op.create_table(
        "mixpanel_daily_events",
        sa.Column("project_id", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("collected_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "event", "date"),
    )
    op.create_table(
        "weekly_benchmarks",
        sa.Column("week_start", sa.Date, nullable=False),
        sa.Column("industry", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("p25", sa.Double, nullable=False),
        sa.Column("p50", sa.Double, nullable=False),
        sa.Column("p75", sa.Double, nullable=False),
        sa.Column("sample_size", sa.Integer, nullable=False),
        sa.Column("computed_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("week_start", "industry", "metric"),
        sa.CheckConstraint(
            "metric IN ('ctr','cpc','cpm','cpa')", name="weekly_benchmarks_metric_check"
        ),
    )
    if op.get_context().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
