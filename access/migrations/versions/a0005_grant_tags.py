"""Grant tags (issue 17): principal rows and policy rules carry a MAC under a key the
database does not hold, the rule set a set tag; API-key digests become keyed (longer);
the sealed grant state (``access/grant_state.py``) gets its column.

Revision ID: a0005
Revises: a0004

Existing rows get no tag here (the key is in Vault, not in a migration): `pii-vault init`
seals them once, with the operator's token, and prints what it sealed. On SQLite the
longer digest column means a table copy, which drops the revision triggers: they are
made again (as in a0003).
"""

import sqlalchemy as sa
from alembic import op

revision = "a0005"
down_revision = "a0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("principals", sa.Column("tag", sa.String(80), nullable=True))
    op.add_column("policy_rules", sa.Column("tag", sa.String(80), nullable=True))
    op.add_column("access_state", sa.Column("grant_state", sa.Text(), nullable=True))
    _key_hash(80)


def _key_hash(length: int) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("principals", "key_hash", type_=sa.String(length))
        return
    with op.batch_alter_table("principals", recreate="always") as batch:
        batch.alter_column("key_hash", type_=sa.String(length))
    for event in ("INSERT", "UPDATE", "DELETE"):
        op.execute(f"DROP TRIGGER IF EXISTS principals_bump_revision_{event.lower()}")
        op.execute(  # constants only: the three event names above
            f"CREATE TRIGGER principals_bump_revision_{event.lower()} AFTER {event} "  # noqa: S608
            "ON principals BEGIN UPDATE access_state SET revision = revision + 1 WHERE id = 1; END"
        )


def downgrade() -> None:
    _key_hash(64)
    op.drop_column("access_state", "grant_state")
    op.drop_column("policy_rules", "tag")
    op.drop_column("principals", "tag")
