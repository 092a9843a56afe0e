"""External ids as a keyed digest (lookup) and ciphertext (returned), not in clear; the
index-key version being retired while `pii-vault reindex` runs.

Revision ID: 0003
Revises: 0002

The clear-text ``external_id`` column stays for rows written before this
version; nothing writes it any more and ``pii-vault reindex`` (which has the
keys this migration has not) moves what it holds into the two new columns.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "index_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retiring", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_index_state"),
    )
    op.bulk_insert(sa.table("index_state", sa.column("id"), sa.column("retiring")), [{"id": 1}])
    with op.batch_alter_table("subjects") as batch:
        batch.add_column(sa.Column("external_id_digest", sa.String(128), nullable=True))
        batch.add_column(sa.Column("external_id_ct", sa.LargeBinary(), nullable=True))
        batch.create_unique_constraint("uq_subjects_external_id_digest", ["external_id_digest"])


def downgrade() -> None:
    op.drop_table("index_state")
    with op.batch_alter_table("subjects") as batch:
        batch.drop_constraint("uq_subjects_external_id_digest", type_="unique")
        batch.drop_column("external_id_ct")
        batch.drop_column("external_id_digest")
