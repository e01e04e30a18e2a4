"""alert_outbox: each alert message, written in the transaction of the state change that owes
it, delivered at least once (issue 20.3).

One row per message and webhook (``channel``: a digest of the webhook's URL, never the URL),
so a webhook that is down never makes another one hear a message twice. A sender claims a
due message with one conditional UPDATE (``claimed_until`` past, checked
by its row count), so one replica sends it; a failed delivery is tried again after a
back-off (``next_attempt_at``) until the webhook accepts it, across restarts. The partial
index holds only the messages not delivered yet: the sender's query reads nothing else.

Revision ID: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"  # after main's 0010_no_delivery
branch_labels = None
depends_on = None

PENDING = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("cron_name", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", stamp, nullable=False),
        sa.Column("claimed_by", sa.Text),
        sa.Column("claimed_until", stamp),
        sa.Column("delivered_at", stamp),
        sa.Column("last_error", sa.Text),
    )
    op.create_index(
        "idx_alert_outbox_pending",
        "alert_outbox",
        ["next_attempt_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE alert_outbox ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.drop_index("idx_alert_outbox_pending", table_name="alert_outbox")
    op.drop_table("alert_outbox")
