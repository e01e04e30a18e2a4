"""idx_cron_runs_success: each job's successes, newest first, and nothing else.

``cronkeeper_last_success_timestamp_seconds`` asks for each job's latest ``success``. On
``idx_cron_runs_name_started`` that is a walk back from the newest run to the first success:
for a job that is always ``partial`` (one dead ad account is enough) the walk reads the job's
whole history on every scrape. A partial index holding only the successes answers with its
first entry, or with none, at any history size. Both backends support partial indexes.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SUCCESS = sa.text("status = 'success'")


def upgrade() -> None:
    op.create_index(
        "idx_cron_runs_success",
        "cron_runs",
        ["cron_name", sa.text("started_at DESC")],
        postgresql_where=SUCCESS,
        sqlite_where=SUCCESS,
    )


def downgrade() -> None:
    op.drop_index("idx_cron_runs_success", table_name="cron_runs")
