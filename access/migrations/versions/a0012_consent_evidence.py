"""Consent evidence and the consent ledger (issue 20): channel, policy text hash and who
recorded each consent; a ledger keyed by a pseudonym that outlives the shred for the
limitation period.

Revision ID: a0012
Revises: a0011
"""

import sqlalchemy as sa
from alembic import op

revision = "a0012"
down_revision = "a0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("channel", sa.String(16), nullable=True))
        batch.add_column(sa.Column("text_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("recorded_by", sa.String(128), nullable=True))
    op.create_table(
        "consent_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pseudonym", sa.String(80), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("given_by", sa.String(16), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keep_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_ledger")),
    )
    op.create_index(op.f("ix_consent_ledger_pseudonym"), "consent_ledger", ["pseudonym"])


def downgrade() -> None:
    op.drop_index(op.f("ix_consent_ledger_pseudonym"), table_name="consent_ledger")
    op.drop_table("consent_ledger")
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("recorded_by")
        batch.drop_column("text_sha256")
        batch.drop_column("channel")
