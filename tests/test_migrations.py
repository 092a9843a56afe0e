"""The Alembic migration and the models describe the same schema, on every database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from access.models import AccessBase
from tests.conftest import Database
from vault.db import migrate
from vault.models import Base


def test_migrations_match_models(database: Database) -> None:
    """Both histories (vault, access) together describe exactly the models."""
    with database.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and name == "alembic_version_access")
                )
            },
        )
        assert compare_metadata(context, [Base.metadata, AccessBase.metadata]) == []


def test_migrate_is_idempotent(database: Database) -> None:
    migrate(database.engine)
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0006"
        assert set(inspect(conn).get_table_names()) >= {
            "subjects",
            "data_keys",
            "field_values",
            "tokens",
            "blind_index",
        }


def test_connection_settings(database: Database) -> None:
    """SQLite: WAL, foreign keys, secure_delete. PostgreSQL: the engine stays in its schema."""
    if database.kind == "postgresql":
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT current_schema()")).scalar_one() == database.schema
            tables = set(inspect(conn).get_table_names())
        assert {"subjects", "audit_events", "principals"} <= tables
        return
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
