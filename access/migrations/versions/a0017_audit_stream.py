"""Audit stream cursors (issue 22): how far each sink has been delivered, and who delivers.

Revision ID: a0017
Revises: a0016
"""

import sqlalchemy as sa
from alembic import op

revision = "a0017"
down_revision = "a0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_stream_cursors",
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sink", name=op.f("pk_audit_stream_cursors")),
    )


def downgrade() -> None:
    op.drop_table("audit_stream_cursors")
