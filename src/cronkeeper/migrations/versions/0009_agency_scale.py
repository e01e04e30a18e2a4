"""An agency's scale (issue 17): each ad account's status, and running runs found at once.

- ``meta_account_details.account_status``: Meta's ``account_status`` as ``GET /act_{id}``
  answers it (1 active, 2 disabled, 101 closed, …; Meta's AdAccount reference), read with the
  account's time zone and currency. ``NULL`` for details read before this revision: they are
  read again at the next run.
- ``idx_cron_runs_running``: each job's ``running`` rows and nothing else. Closing abandoned
  runs (before every run) looked them up on ``idx_cron_runs_name_started``, reading the job's
  whole history; the partial index holds only the few rows still running, so the lookup costs
  the same at 10³ and 10⁷ rows. Both backends support partial indexes.
- ``idx_meta_daily_insights_collected``: the insight rows collected since a time. A weekly
  benchmarks run looks for the weeks whose insights changed since it last computed them; it
  grouped the whole insight history to find them.

Revision ID: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("meta_account_details") as batch:
        batch.add_column(sa.Column("account_status", sa.Integer))
    op.create_index(
        "idx_cron_runs_running",
        "cron_runs",
        ["cron_name"],
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )
    op.create_index("idx_meta_daily_insights_collected", "meta_daily_insights", ["collected_at"])


def downgrade() -> None:
    op.drop_index("idx_meta_daily_insights_collected", table_name="meta_daily_insights")
    op.drop_index("idx_cron_runs_running", table_name="cron_runs")
    with op.batch_alter_table("meta_account_details") as batch:
        batch.drop_column("account_status")
