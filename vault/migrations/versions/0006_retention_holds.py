"""Records kept past their subject's shred for a legal floor (issue 20, policy §4).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "retention_holds",
        sa.Column("hold_id", sa.String(36), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("until", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["subjects.id"], name="fk_retention_holds_hold_id_subjects"
        ),
        sa.PrimaryKeyConstraint("hold_id", name="pk_retention_holds"),
    )
    op.create_index("ix_retention_holds_subject_id", "retention_holds", ["subject_id"])
    op.create_index("ix_retention_holds_until", "retention_holds", ["until"])


def downgrade() -> None:
    op.drop_table("retention_holds")
