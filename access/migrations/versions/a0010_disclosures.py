"""Lawful disclosures to authorities (issue 20, privacy policy §2(2), §3(3)).

Revision ID: a0010
Revises: a0009
"""

import sqlalchemy as sa
from alembic import op

revision = "a0010"
down_revision = "a0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("authority", sa.String(200), nullable=False),
        sa.Column("instrument", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("ticket", sa.String(32), nullable=False),
        sa.Column("disclosed_by", sa.String(128), nullable=False),
        sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withheld_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
    )
    op.create_index(op.f("ix_disclosures_subject_id"), "disclosures", ["subject_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_disclosures_subject_id"), table_name="disclosures")
    op.drop_table("disclosures")
