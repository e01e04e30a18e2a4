"""cron_runs.report_date: the date a run collected, so backfills know which dates are done.

Nullable (runs recorded before this column, and runs of callers that pass no date, have
none). An index on (cron_name, report_date) keeps the backfill's "done dates" lookup cheap.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cron_runs") as batch:
        batch.add_column(sa.Column("report_date", sa.Date, nullable=True))
    op.create_index("idx_cron_runs_name_report_date", "cron_runs", ["cron_name", "report_date"])


def downgrade() -> None:
    op.drop_index("idx_cron_runs_name_report_date", table_name="cron_runs")
    with op.batch_alter_table("cron_runs") as batch:
        batch.drop_column("report_date")
