"""Grant-key tags on consent and restriction rows (issue 19): a row forged or edited with
SQL counts for nothing (a consent is not in force, a restriction holds).

Revision ID: a0009
Revises: a0008
"""

import sqlalchemy as sa
from alembic import op

revision = "a0009"
down_revision = "a0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("tag", sa.String(80), nullable=True))
    with op.batch_alter_table("restrictions") as batch:
        batch.add_column(sa.Column("tag", sa.String(80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("restrictions") as batch:
        batch.drop_column("tag")
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("tag")
