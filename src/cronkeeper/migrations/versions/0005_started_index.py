"""An index on cron_runs.started_at alone, for "the newest runs of every job".

``GET /api/cron/runs`` and ``cronkeeper runs`` without a job filter read the newest N rows of
the whole ledger; ``idx_cron_runs_name_started`` leads with the job name, so without this
index that query sorts the entire history.

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
    op.create_index("idx_cron_runs_started", "cron_runs", [sa.text("started_at DESC")])


def downgrade() -> None:
    op.drop_index("idx_cron_runs_started", table_name="cron_runs")
