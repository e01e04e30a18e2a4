"""Numbers that match Meta's own reports: leads, each ad account's own day.

- ``meta_daily_insights.leads``: the lead count (first ``META_LEAD_ACTION_TYPES`` type present),
  0 for rows stored before it; the restatement window rewrites recent rows anyway.
- ``meta_account_details``: each ad account's ``timezone_name`` and ``currency`` as
  ``GET /{version}/act_{id}`` answers them, with when they were read (refreshed at most daily).
  A table of its own, not columns of ``accounts``: ``META_AD_ACCOUNT_IDS`` accounts have no
  ``accounts`` row.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
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


def downgrade() -> None:
    op.drop_table("meta_account_details")
    with op.batch_alter_table("meta_daily_insights") as batch:
        batch.drop_column("leads")
