"""Server-side console sessions (issue 12): the browser keeps a random id, the table its hash.

Revision ID: a0004
Revises: a0003
"""

import sqlalchemy as sa
from alembic import op

revision = "a0004"
down_revision = "a0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("principal", sa.String(128), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        op.f("ix_console_sessions_principal"), "console_sessions", ["principal"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_sessions_principal"), table_name="console_sessions")
    op.drop_table("console_sessions")
