"""Break-glass emergency grants (issue 20, privacy policy §2(2)).

Revision ID: a0011
Revises: a0010
"""

import sqlalchemy as sa
from alembic import op

revision = "a0011"
down_revision = "a0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "break_glass",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("ticket", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tag", sa.String(80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass")),
    )
    op.create_index(op.f("ix_break_glass_principal"), "break_glass", ["principal"])


def downgrade() -> None:
    op.drop_index(op.f("ix_break_glass_principal"), table_name="break_glass")
    op.drop_table("break_glass")
