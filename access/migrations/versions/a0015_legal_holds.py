"""Legal holds (issue 20, privacy policy §4).

Revision ID: a0015
Revises: a0014
"""

import sqlalchemy as sa
from alembic import op

revision = "a0015"
down_revision = "a0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tag", sa.String(80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_subject_id"), "legal_holds", ["subject_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_legal_holds_subject_id"), table_name="legal_holds")
    op.drop_table("legal_holds")
