"""Usage budgets shared by every worker (issue 18): reveals per person per purpose per
day, console searches per person per minute; people's sealed profiles (display name
and email from the ID token) on their principal rows.

Revision ID: a0006
Revises: a0005
"""

import sqlalchemy as sa
from alembic import op

revision = "a0006"
down_revision = "a0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_counters",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("spent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_usage_counters")),
    )
    op.add_column("principals", sa.Column("profile", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("profile")
    op.drop_table("usage_counters")
