"""No delivery is a fact, not a gap (issue 18, point 7).

- ``meta_no_delivery_days``: each (ad account, day) Meta answered without a row, with when
  collect-daily last saw it so. Meta sends no row for a day without delivery (Ads Insights
  API guide; ``REQUIRED_FIELDS`` in :mod:`cronkeeper.sources.meta`), so a day in this table
  was collected and is known empty; coverage shows it as ``no delivery``, not ``missing``.
  A day that gets a row later (Meta restates) leaves this table in the same transaction.

Revision ID: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta_no_delivery_days",
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ad_account_id", "date"),
    )
    op.create_index("idx_meta_no_delivery_days_date", "meta_no_delivery_days", ["date"])
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE meta_no_delivery_days ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.drop_index("idx_meta_no_delivery_days_date", table_name="meta_no_delivery_days")
    op.drop_table("meta_no_delivery_days")
