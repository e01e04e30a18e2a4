"""job_state: each job's alert state and pause, shared by every replica.

One row per job. A change of state is claimed with one conditional UPDATE on ``version``
(checked by its row count), so however many replicas evaluate the same job, exactly one of
them sends the alert. The pause lives here too, so every scheduler and watchdog sees it.

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"  # brief: "0004"; chained after main's 0006 so there is one head
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "job_state",
        sa.Column("cron_name", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False, server_default="ok"),
        sa.Column("since", stamp, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_alerted_at", stamp),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("paused_until", stamp),
        sa.Column("pause_reason", sa.Text),
        sa.Column("resumed_at", stamp),
        sa.Column("evaluated_run_id", sa.Text),
        sa.Column("anomaly", sa.Text),
        sa.Column("expected_low", sa.Double),
        sa.Column("expected_high", sa.Double),
        sa.Column("updated_at", stamp, nullable=False),
        sa.CheckConstraint(
            "state IN ('ok','missing','stuck','failed','anomalous','paused')",
            name="job_state_state_check",
        ),
        sa.CheckConstraint(
            "anomaly IS NULL OR anomaly IN ('low-volume','high-volume')",
            name="job_state_anomaly_check",
        ),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE job_state ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.drop_table("job_state")
