"""Audit anchors: each log gets an id (its anchors' namespace outside the database), and
checkpoints record which anchor came before the one they copy.

Revision ID: a0002
Revises: a0001
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "a0002"
down_revision = "a0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.add_column(sa.Column("prev_seq", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("log_id", sa.String(length=36), nullable=True))
    head = sa.table("audit_head", sa.column("id"), sa.column("log_id"))
    op.execute(head.update().where(head.c.id == 1).values(log_id=str(uuid.uuid4())))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("log_id")
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.drop_column("prev_seq")
