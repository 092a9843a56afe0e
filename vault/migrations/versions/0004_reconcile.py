"""Reliability: subject keys whose rows may not exist yet (key intents), shreds whose
completion is not yet in the audit log, subjects whose key was found missing (damaged).

Revision ID: 0004
Revises: 0003

``key_intents`` records a subject key before it is created in the key provider;
the row goes in the same transaction as the subject it was made for. An intent
left behind (a worker killed mid-request, an ambiguous commit) names exactly the
key the maintenance sweep must settle, without listing the key provider.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_intents",
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", name="pk_key_intents"),
    )
    op.create_index("ix_key_intents_created_at", "key_intents", ["created_at"])
    with op.batch_alter_table("subjects") as batch:
        batch.add_column(
            sa.Column(
                "completion_audited",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
        batch.add_column(sa.Column("damaged_at", sa.DateTime(timezone=True), nullable=True))
    # Shreds finished before this version were audited by the code of their day.
    op.execute("UPDATE subjects SET completion_audited = TRUE WHERE status = 'shredded'")


def downgrade() -> None:
    with op.batch_alter_table("subjects") as batch:
        batch.drop_column("damaged_at")
        batch.drop_column("completion_audited")
    op.drop_index("ix_key_intents_created_at", "key_intents")
    op.drop_table("key_intents")
