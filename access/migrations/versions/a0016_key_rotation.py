"""Principal API keys that expire, and a rotated key's overlap (issue 22).

Revision ID: a0016
Revises: a0015
"""

import sqlalchemy as sa
from alembic import op

revision = "a0016"
down_revision = "a0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("key_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("old_key_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("old_key_hash", sa.String(80), nullable=True))
        batch.add_column(sa.Column("old_key_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint("uq_principals_old_key_id", ["old_key_id"])


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_constraint("uq_principals_old_key_id", type_="unique")
        for column in ("old_key_until", "old_key_hash", "old_key_id", "key_expires_at"):
            batch.drop_column(column)
