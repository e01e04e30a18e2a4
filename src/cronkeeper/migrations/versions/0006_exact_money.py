"""Exact money on SQLite: ``spend``, ``conversions`` and ``leads`` become decimal text.

SQLite stored ``NUMERIC(18,4)`` amounts as floats (REAL), so ``0.1 + 0.2`` read back as
``0.30000000000000004`` and large KRW amounts lost digits; PostgreSQL's ``NUMERIC`` held
them exactly. Existing SQLite values are rewritten as text rounded to 4 places
(``printf('%.4f')`` of the stored float, which recovers every amount that had at most 4
decimals and fits a float's 15–17 significant digits) into TEXT columns, which SQLite's
type affinity leaves alone. The conversion reads the floats directly: ``CAST(… AS TEXT)``
would keep only 15 significant digits. PostgreSQL already stores ``NUMERIC``: nothing to do.

Revision ID: 0006
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"  # after the leads column (0005), which it converts too
branch_labels = None
depends_on = None

TABLE = "meta_daily_insights"
COLUMNS = {"spend": None, "conversions": None, "leads": "0"}
"""Each money column and its server default."""


def _swap(new_type: sa.types.TypeEngine[Any], expression: str) -> None:
    """Replace each money column by a ``new_type`` copy holding ``expression`` of it."""
    with op.batch_alter_table(TABLE) as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(f"{name}_new", new_type))
    op.execute(
        f"UPDATE {TABLE} SET "
        + ", ".join(f"{name}_new = {expression.format(name)}" for name in COLUMNS)
    )
    with op.batch_alter_table(TABLE, recreate="always") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
            batch.alter_column(
                f"{name}_new",
                new_column_name=name,
                nullable=False,
                server_default=COLUMNS[name],
            )


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    _swap(sa.Text(), "printf('%.4f', {})")


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    _swap(sa.Numeric(18, 4), "CAST({} AS REAL)")
