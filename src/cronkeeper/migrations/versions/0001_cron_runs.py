"""cron_runs: the run ledger.

On PostgreSQL the table is created exactly as the design document writes it (uuid default
``gen_random_uuid()``, ``TIMESTAMPTZ``, the ``(cron_name, started_at DESC)`` index, row-level
security), plus CHECK constraints on ``status`` and ``records_count``.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

POSTGRES_DDL = """
CREATE TABLE cron_runs (
  id UUID DEFAULT gen_random_uuid() PRIMARY KEY,
  cron_name TEXT NOT NULL,
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  finished_at TIMESTAMPTZ,
  status TEXT NOT NULL DEFAULT 'running',
  records_count INT DEFAULT 0,
  error_message TEXT,
  created_at TIMESTAMPTZ DEFAULT now(),
  CONSTRAINT cron_runs_status_check CHECK (status IN ('running','success','error','partial')),
  CONSTRAINT cron_runs_records_count_check CHECK (records_count >= 0)
);
CREATE INDEX idx_cron_runs_name_started ON cron_runs(cron_name, started_at DESC);
ALTER TABLE cron_runs ENABLE ROW LEVEL SECURITY;
"""


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for statement in POSTGRES_DDL.split(";"):
            if statement.strip():
                op.execute(statement)
        return
    op.create_table(
        "cron_runs",
        sa.Column("id", sa.CHAR(32), primary_key=True),
        sa.Column("cron_name", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("status", sa.Text, nullable=False, server_default="running"),
        sa.Column("records_count", sa.Integer, server_default="0"),
        sa.Column("error_message", sa.Text),
        sa.Column("created_at", sa.DateTime, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('running','success','error','partial')", name="cron_runs_status_check"
        ),
        sa.CheckConstraint("records_count >= 0", name="cron_runs_records_count_check"),
    )
    op.create_index(
        "idx_cron_runs_name_started", "cron_runs", ["cron_name", sa.text("started_at DESC")]
    )


def downgrade() -> None:
    op.drop_table("cron_runs")
