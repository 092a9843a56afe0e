"""Test helpers that look at what is really stored."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, inspect, select, text

from tests.conftest import Database
from vault.db import make_engine, migrate
from vault.models import BlindIndex, DataKeyRecord, FieldValue, ShredLogEntry, Subject, Token

ALL_ROLES = [
    "registration-service",
    "checkout-service",
    "recommendation-service",
    "fraud-service",
    "support-agent",
    "privacy-officer",
    "approver",
    "auditor",
    "admin",
]
TABLES = ["subjects", "data_keys", "field_values", "tokens", "blind_index"]

# Distinctive values, so a match in raw storage can only be a leak.
ALICE = {
    "full_name": "Zelda Quartermaine",
    "email": "zelda.quartermaine@example.org",
    "phone": "+442079460958",
    "passport_number": "ZQ9876543",
    "card_number": "4111111111111111",
    "transaction_record": "order 77-ALPHA: one umbrella, crimson",
    "face_template": b"FACE-TEMPLATE-\x00\x01\x02-ZELDA-MARKER",
}


def consents_for(*categories: str, **given: str) -> list[dict[str, Any]]:
    """The separate consents (``sensitive:<category>``) a write of sensitive data needs,
    as given with a new subject; ``given``: given_by, guardian_ref, verification."""
    return [
        {"purpose": f"sensitive:{c}", "granted": True, "given_by": "subject"} | given
        for c in categories
    ]


# What registration collects for ALICE's identity document, face template and card.
SENSITIVE_CONSENTS = consents_for("identity", "biometric", "financial")
# A verified guardian (policy §6): named by a reference, with how they were verified.
GUARDIAN = {"given_by": "guardian", "guardian_ref": "guardian-77", "verification": "id_document"}
EVERY_CATEGORY = (
    "basic",
    "identity",
    "biometric",
    "online",
    "financial",
    "browsing",
    "device",
    "third_party",
)
# What a minor's registration collects from the guardian: use of the service and the
# separate consent for each category (everything of a minor is sensitive).
GUARDIAN_CONSENTS = [
    {"purpose": "service_use", "granted": True, **GUARDIAN},
    *consents_for(*EVERY_CATEGORY, **GUARDIAN),
]


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def raw_storage(database: Database) -> bytes:
    """Every byte the database holds: SQLite file + WAL, or every PostgreSQL row as text."""
    if database.kind == "sqlite":
        assert database.path is not None
        out = b""
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = Path(str(database.path) + suffix)
            if path.exists():
                out += path.read_bytes()
        return out
    chunks = []
    with database.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for (row,) in conn.execute(text(f'SELECT t::text FROM "{table}" t')):
                chunks.append(row)
    return "\n".join(chunks).encode("utf-8")


def leaked(storage: bytes, value: str | bytes) -> bool:
    """Whether ``value`` appears raw, or hex-encoded as PostgreSQL prints bytea."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return raw in storage or raw.hex().encode() in storage


def copy_database(database: Database, tmp: Path) -> Database:
    """A consistent copy, as a backup would be: SQLite backup API, or a new schema."""
    if database.kind == "sqlite":
        assert database.path is not None
        target = tmp / "backup.db"
        src, dst = sqlite3.connect(database.path), sqlite3.connect(target)
        src.backup(dst)
        src.close()
        dst.close()
        url = f"sqlite:///{target}"
        return Database("sqlite", url, make_engine(url), path=target)
    schema = f"{database.schema}_copy"
    with database.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(database.url, schema=schema)
    migrate(engine)
    with database.engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f'INSERT INTO "{schema}".{table} SELECT * FROM {table}'))
    return Database("postgresql", database.url, engine, schema=schema)


SUBJECT_TABLES = (DataKeyRecord, FieldValue, Token, BlindIndex)


def backup_subject(engine: Engine, subject_id: str) -> dict[Any, list[dict[str, Any]]]:
    """A subject's rows as a backup holds them (issue 17's restore attacks)."""
    with engine.connect() as conn:
        rows: dict[Any, list[dict[str, Any]]] = {
            Subject: [
                dict(r._mapping)
                for r in conn.execute(select(Subject.__table__).where(Subject.id == subject_id))
            ]
        }
        for model in SUBJECT_TABLES:
            table = model.__table__
            rows[model] = [
                dict(r._mapping)
                for r in conn.execute(select(table).where(table.c.subject_id == subject_id))
            ]
    return rows


def restore_subject(
    engine: Engine, subject_id: str, backup: dict[Any, list[dict[str, Any]]]
) -> None:
    """The backup's rows for the subject back in the live database, its shred log row gone."""
    with engine.begin() as conn:
        for model in SUBJECT_TABLES:
            conn.execute(delete(model.__table__).where(model.__table__.c.subject_id == subject_id))
        conn.execute(delete(Subject.__table__).where(Subject.id == subject_id))
        conn.execute(delete(ShredLogEntry.__table__).where(ShredLogEntry.subject_id == subject_id))
        conn.execute(insert(Subject.__table__), backup[Subject])
        for model in SUBJECT_TABLES:
            if backup[model]:
                conn.execute(insert(model.__table__), backup[model])


def approve_reveal(
    runtime: Any, caller: Any, subject_id: str, fields: list[str], justification: Any
) -> None:
    """Four-eyes (issue 20): file ``caller``'s reveal request and have a second person
    (``user:second-pair``, role approver) approve it, so the next reveal goes through."""
    from access.errors import ApprovalRequired, PrincipalExists
    from access.events import Caller

    with contextlib.suppress(PrincipalExists):
        runtime.principals.create("user:second-pair", ["approver"])
    try:
        runtime.guard.reveal(caller, subject_id, "customer_support", fields, justification)
    except ApprovalRequired as exc:
        assert exc.approval_id is not None
        runtime.guard.approvals.settle(Caller("user:second-pair"), exc.approval_id, approve=True)
        return
    raise AssertionError("the reveal did not wait for an approval")
