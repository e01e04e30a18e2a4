"""scheduler_heartbeats: which schedulers are alive; job_state.paused_by: who paused a job;
cron_runs.retry_counts and idx_cron_runs_ok: metrics that are right whichever process ran a job.

Every scheduler (``serve --scheduler``, ``scheduler``) writes one row, keyed by its own id
(host, pid and a random suffix), and moves ``last_beat_at`` each watch interval; a clean
stop sets ``stopped_at``. Health, the status page and ``/metrics`` read the newest beat: "next
run" is only shown when a scheduler is alive (issue 22). ``paused_by`` says whether a pause
came from the API or the CLI. ``retry_counts`` (JSON ``{reason: n}``) is what a run retried,
written when it ends, so ``/metrics`` counts the retries of ``cronkeeper run`` processes too;
``idx_cron_runs_ok`` holds only ``success`` and ``partial`` rows, so each job's last ok run is
its first entry at any history size (like 0008's index of successes).

Revision ID: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = (
    "0011"  # renumbered after main's 0009 (agency scale), 0010 (no delivery), 0011 (alert outbox)
)
branch_labels = None
depends_on = None

OK = sa.text("status IN ('success', 'partial')")


def upgrade() -> None:
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "scheduler_heartbeats",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", stamp, nullable=False),
        sa.Column("last_beat_at", stamp, nullable=False),
        sa.Column("stopped_at", stamp),
    )
    op.create_index("idx_scheduler_heartbeats_beat", "scheduler_heartbeats", ["last_beat_at"])
    with op.batch_alter_table("job_state") as batch:
        batch.add_column(sa.Column("paused_by", sa.Text))
    op.add_column("cron_runs", sa.Column("retry_counts", sa.Text))
    op.create_index(
        "idx_cron_runs_ok",
        "cron_runs",
        ["cron_name", sa.text("started_at DESC")],
        postgresql_where=OK,
        sqlite_where=OK,
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduler_heartbeats ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.drop_index("idx_cron_runs_ok", table_name="cron_runs")
    with op.batch_alter_table("cron_runs") as batch:
        batch.drop_column("retry_counts")
    with op.batch_alter_table("job_state") as batch:
        batch.drop_column("paused_by")
    op.drop_index("idx_scheduler_heartbeats_beat", table_name="scheduler_heartbeats")
    op.drop_table("scheduler_heartbeats")
