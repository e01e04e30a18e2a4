"""cron_leases: one row per job while a run holds it, so only one run happens at a time.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    uuid = sa.Uuid(as_uuid=False)
    op.create_table(
        "cron_leases",
        sa.Column("job_name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("run_id", uuid),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE cron_leases ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.drop_table("cron_leases")
