"""Guardians named on consents, principals' regions, the transfer-basis registry (issue 19,
privacy policy §6 and §7).

Revision ID: a0008
Revises: a0007
"""

import sqlalchemy as sa
from alembic import op

revision = "a0008"
down_revision = "a0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("guardian_ref", sa.String(64), nullable=True))
        batch.add_column(sa.Column("verification", sa.String(32), nullable=True))
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("region", sa.String(16), nullable=True))
    op.create_table(
        "transfer_bases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("tag", sa.String(80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_bases")),
    )
    op.create_index(op.f("ix_transfer_bases_destination"), "transfer_bases", ["destination"])


def downgrade() -> None:
    op.drop_index(op.f("ix_transfer_bases_destination"), table_name="transfer_bases")
    op.drop_table("transfer_bases")
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("region")
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("verification")
        batch.drop_column("guardian_ref")
