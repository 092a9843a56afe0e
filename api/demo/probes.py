"""Raw-storage probes for the demo: what an insider with the files or a dump would see.

They read the database around the service on purpose (raw SQL, file bytes), so
they live here, apart from anything the service runs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, text

from vault.db import make_engine, migrate
from vault.models import Base


def sqlite_backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API), as a backup job makes."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def files_hold(paths: list[Path], values: list[bytes]) -> int:
    blob = b"".join(p.read_bytes() for p in paths if p.exists())
    return sum(1 for v in values if v in blob)


VAULT_TABLES = ("subjects", "data_keys", "field_values", "tokens", "blind_index")


def rows_hold(engine: Engine, values: list[bytes]) -> int:
    with engine.connect() as conn:
        blob = b"\n".join(
            repr(row).encode()
            for table in VAULT_TABLES
            for row in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
        )
    return sum(1 for v in values if v in blob or v.hex().encode() in blob)


def copy_rows(engine: Engine, target: Path) -> None:
    """A backup of the vault tables into SQLite, as of now."""
    backup = make_engine(f"sqlite:///{target}")
    migrate(backup)
    with engine.connect() as src, backup.begin() as dst:
        for name in VAULT_TABLES:
            table = Base.metadata.tables[name]
            rows = [dict(r._mapping) for r in src.execute(table.select())]
            if rows:
                dst.execute(table.insert(), rows)
    backup.dispose()
