"""Fencing (issue 20.2): cron_leases.epoch, cron_runs.lease_epoch and cron_runs.heartbeat_at.

``epoch`` grows by one with every claim of a job's lease (a released lease keeps its row, so
the count never starts over); a run records the epoch it was started under in
``lease_epoch``, and its data writes and its closing of abandoned runs check in the same
transaction that the lease still carries that epoch and holder — a holder that lost its lease
(paused, cut off past the TTL) cannot overwrite or close the work of the run that took over.
``heartbeat_at`` is the last sign of life of a run that holds no lease (the database could not
be asked when it started): such a run is closed as ``abandoned`` only once its heartbeat is
stale, never while it is alive. Rows written before this migration have neither and are
judged by their start.

Revision ID: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cron_leases") as batch:
        batch.add_column(
            sa.Column("epoch", sa.BigInteger, nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("cron_runs") as batch:
        batch.add_column(sa.Column("lease_epoch", sa.BigInteger))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("cron_runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("lease_epoch")
    with op.batch_alter_table("cron_leases") as batch:
        batch.drop_column("epoch")
