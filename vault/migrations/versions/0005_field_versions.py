"""Retention floors (issue 20, privacy policy §4): values replaced by a correction while
their field's legal minimum still runs.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "field_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("dek_id", sa.String(36), nullable=False),
        sa.Column("written_at", TS, nullable=False),
        sa.Column("superseded_at", TS, nullable=False),
        sa.Column("keep_until", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["dek_id"], ["data_keys.id"], name="fk_field_versions_dek_id_data_keys"
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name="fk_field_versions_subject_id_subjects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_field_versions"),
    )
    op.create_index("ix_field_versions_subject_id", "field_versions", ["subject_id"])
    op.create_index("ix_field_versions_dek_id", "field_versions", ["dek_id"])
    op.create_index("ix_field_versions_keep_until", "field_versions", ["keep_until"])


def downgrade() -> None:
    op.drop_table("field_versions")
