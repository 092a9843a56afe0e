"""No plaintext, key material or secrets in reprs, exception messages or log records."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from keys.provider import DataKey
from tests.conftest import Database
from tests.helpers import ALICE
from vault.config import Settings
from vault.models import Subject, utcnow
from vault.results import DetokenizeResult, TokenizeRecord
from vault.service import VaultService
from vault.shredding import Shredder


def test_reprs_hide_values() -> None:
    assert "secret@example.com" not in repr(
        TokenizeRecord(fields={"email": "secret@example.com"}, external_id="e")
    )
    assert "secret@example.com" not in repr(
        DetokenizeResult(token="tok_x", field="email", value="secret@example.com")
    )
    key = bytes(range(32))
    assert repr(key) not in repr(DataKey(plaintext=key, wrapped="vault:v1:x"))
    settings = Settings.from_env(
        {"PII_VAULT_DATABASE_URL": "postgresql://u:hunter2@db/x", "VAULT_TOKEN": "s.tok3n"}
    )
    assert "hunter2" not in repr(settings) and "s.tok3n" not in repr(settings)


def test_database_errors_carry_no_parameters(database: Database) -> None:
    row = {
        "id": "x",
        "external_id": "zelda.quartermaine@example.org",
        "is_minor": False,
        "status": "active",
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    with database.engine.begin() as conn:
        conn.execute(insert(Subject).values(**row))
    with pytest.raises(IntegrityError) as info, database.engine.begin() as conn:
        conn.execute(insert(Subject).values(**row))
    assert "zelda.quartermaine" not in str(info.value)


def test_logs_hold_no_plaintext(
    service: VaultService, shredder: Shredder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = service.create_subject(ALICE, external_id="logs")
    service.detokenize(list(created.tokens.values()))
    service.masked_view(created.subject_id)
    service.export(created.subject_id)
    shredder.shred(created.subject_id)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for value in ALICE.values():
        needle = value if isinstance(value, str) else value.decode("latin-1")
        assert needle not in text
