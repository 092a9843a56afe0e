"""Alembic environment for the access tables (own history, own version table)."""

from __future__ import annotations

from alembic import context

from access.models import AccessBase

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=AccessBase.metadata,
    version_table="alembic_version_access",
    render_as_batch=True,
)
context.run_migrations()
