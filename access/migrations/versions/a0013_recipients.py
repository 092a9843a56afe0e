"""Recipients (issue 20, privacy policy §3(1)): what kind of party a principal is, who,
where, under which agreement.

Revision ID: a0013
Revises: a0012
"""

import sqlalchemy as sa
from alembic import op

revision = "a0013"
down_revision = "a0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("recipient", sa.String(200), nullable=True))
        batch.add_column(sa.Column("recipient_country", sa.String(16), nullable=True))
        batch.add_column(sa.Column("agreement", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("agreement")
        batch.drop_column("recipient_country")
        batch.drop_column("recipient")
        batch.drop_column("kind")
