"""Initial schema: subjects, data keys, field values, tokens, blind index.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subjects",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("region", sa.String(16), nullable=True),
        sa.Column("is_minor", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("shred_requested_at", TS, nullable=True),
        sa.Column("shredded_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subjects"),
        sa.UniqueConstraint("external_id", name="uq_subjects_external_id"),
    )
    op.create_index("ix_subjects_status", "subjects", ["status"])
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("encryptions", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name="fk_data_keys_subject_id_subjects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_data_keys"),
    )
    op.create_index("ix_data_keys_subject_id", "data_keys", ["subject_id"])
    op.create_table(
        "field_values",
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("dek_id", sa.String(36), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("retain_until", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["dek_id"], ["data_keys.id"], name="fk_field_values_dek_id_data_keys"
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name="fk_field_values_subject_id_subjects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subject_id", "field", name="pk_field_values"),
    )
    op.create_index("ix_field_values_dek_id", "field_values", ["dek_id"])
    op.create_index("ix_field_values_retain_until", "field_values", ["retain_until"])
    op.create_table(
        "tokens",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name="fk_tokens_subject_id_subjects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token", name="pk_tokens"),
        sa.UniqueConstraint("subject_id", "field", name="uq_tokens_subject_id_field"),
    )
    op.create_index("ix_tokens_subject_id", "tokens", ["subject_id"])
    op.create_table(
        "blind_index",
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name="fk_blind_index_subject_id_subjects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subject_id", "field", name="pk_blind_index"),
    )
    op.create_index("ix_blind_index_field_digest", "blind_index", ["field", "digest"])


def downgrade() -> None:
    op.drop_table("blind_index")
    op.drop_table("tokens")
    op.drop_table("field_values")
    op.drop_table("data_keys")
    op.drop_table("subjects")
