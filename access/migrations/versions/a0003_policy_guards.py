"""Any change to policy rules or principals bumps the policy revision, even one made with SQL;
and the shared budget of failed token lookups per principal.

Revision ID: a0003
Revises: a0002

Every process rebuilds its policy engine when the revision moves. Before this,
a rule deleted straight in the database stayed in force in every running worker
until something bumped the revision; the triggers make the database itself do it.
"""

import sqlalchemy as sa
from alembic import op

revision = "a0003"
down_revision = "a0002"
branch_labels = None
depends_on = None

TABLES = ("policy_rules", "principals")
BUMP = "UPDATE access_state SET revision = revision + 1 WHERE id = 1"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION pii_vault_bump_policy_revision() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_bump_revision AFTER INSERT OR UPDATE OR DELETE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION pii_vault_bump_policy_revision()"
            )
    else:
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_bump_revision_{event.lower()} AFTER {event} "
                    f"ON {table} BEGIN {BUMP}; END"
                )
    op.create_table(
        "lookup_failures",
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("principal", name=op.f("pk_lookup_failures")),
    )


def downgrade() -> None:
    op.drop_table("lookup_failures")
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_bump_revision ON {table}")
        op.execute("DROP FUNCTION IF EXISTS pii_vault_bump_policy_revision()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_bump_revision_{event}")
