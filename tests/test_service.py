"""The vault service over every database x every key provider."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from access.runtime import Runtime, open_runtime
from keys.counting import CallCounter
from keys.provider import KeyBackend
from tests.conftest import Database
from tests.helpers import ALICE, leaked, raw_storage, row_counts
from vault.cache import DataKeyCache
from vault.config import Settings
from vault.errors import (
    DecryptionError,
    DuplicateExternalId,
    SubjectNotFound,
    ValidationError,
)
from vault.models import DataKeyRecord, FieldValue
from vault.results import TokenizeRecord
from vault.retention import purge_expired
from vault.service import VaultService


def test_round_trip_every_field_kind(service: VaultService) -> None:
    created = service.create_subject(ALICE, external_id="alice-1", region="cn")
    assert set(created.tokens) == set(ALICE)
    results = service.detokenize(list(created.tokens.values()))
    assert {r.field: r.value for r in results} == ALICE
    assert all(r.subject_id == created.subject_id and r.error is None for r in results)
    assert service.reveal(created.subject_id, ["face_template"]) == {
        "face_template": ALICE["face_template"]
    }
    card_token = created.tokens["card_number"]
    assert (
        card_token[-4:] == "1111" and len(card_token) == 16 and card_token != ALICE["card_number"]
    )


def test_masked_view_shows_no_plaintext(service: VaultService) -> None:
    created = service.create_subject(ALICE)
    view = service.masked_view(created.subject_id)
    assert view.status == "active" and view.region == "CN"
    assert view.fields["email"].masked == "z***@example.org"
    assert view.fields["card_number"].masked == "************1111"
    assert view.fields["face_template"].masked == "[redacted]"
    assert view.fields["passport_number"].category == "identity"
    shown = repr(view)
    for value in ALICE.values():
        assert not leaked(shown.encode(), value)


def test_batch_detokenize_answers_per_item_in_order(service: VaultService) -> None:
    created = service.create_subject({"email": "a@example.com", "phone": "+14155550100"})
    tokens = [created.tokens["phone"], "tok_" + "x" * 32, "bogus", created.tokens["email"]]
    results = service.detokenize(tokens)
    assert [r.token for r in results] == tokens
    assert [r.error for r in results] == [None, "not_found", "invalid", None]
    assert results[0].value == "+14155550100" and results[3].value == "a@example.com"


def test_lookup_through_blind_index(service: VaultService) -> None:
    a = service.create_subject({"email": "Same@Example.com"}).subject_id
    b = service.create_subject({"email": "same@example.com"}).subject_id
    service.create_subject({"email": "other@example.com"})
    assert sorted(service.lookup("email", "SAME@example.COM")) == sorted([a, b])
    assert service.lookup("email", "nobody@example.com") == []
    with pytest.raises(ValidationError):
        service.lookup("full_name", "Jane")


def test_correction_reissues_tokens_and_index(service: VaultService) -> None:
    created = service.create_subject({"email": "old@example.com"})
    new = service.put_fields(created.subject_id, {"email": "new@example.com"})
    assert new["email"] != created.tokens["email"]
    old_result, new_result = service.detokenize([created.tokens["email"], new["email"]])
    assert old_result.error == "not_found"
    assert new_result.value == "new@example.com"
    assert service.lookup("email", "old@example.com") == []
    assert service.lookup("email", "new@example.com") == [created.subject_id]


def test_export_holds_everything(service: VaultService) -> None:
    created = service.create_subject(ALICE, external_id="alice-export")
    exported = service.export(created.subject_id)
    assert exported["external_id"] == "alice-export"
    assert exported["fields"]["email"]["value"] == ALICE["email"]
    assert exported["fields"]["face_template"]["encoding"] == "base64"
    assert exported["fields"]["transaction_record"]["retain_until"] is not None
    assert exported["fields"]["passport_number"]["retain_until"] is None
    assert exported["fields"]["card_number"]["token"] == created.tokens["card_number"]


def test_unknown_subject(service: VaultService) -> None:
    for bad in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(SubjectNotFound):
            service.masked_view(bad)
        with pytest.raises(SubjectNotFound):
            service.put_fields(bad, {"email": "a@example.com"})


def test_duplicate_external_id(service: VaultService, database: Database) -> None:
    service.create_subject({"email": "a@example.com"}, external_id="dup")
    before = row_counts(database.engine)
    with pytest.raises(DuplicateExternalId):
        service.create_subject({"email": "b@example.com"}, external_id="dup")
    assert row_counts(database.engine) == before


# -- atomicity ---------------------------------------------------------------------


def test_one_invalid_field_stores_nothing(
    service: VaultService, runtime: Runtime, database: Database
) -> None:
    before = row_counts(database.engine)
    calls = runtime.key_calls.count
    bad = dict(ALICE, card_number="4111111111111112")  # fails Luhn
    with pytest.raises(ValidationError) as info:
        service.create_subject(bad, external_id="bad")
    assert info.value.errors == {"card_number": "luhn_check_failed"}
    assert "4111111111111112" not in str(info.value)
    assert row_counts(database.engine) == before
    assert runtime.key_calls.count == calls  # rejected before any key was made

    created = service.create_subject({"email": "keep@example.com"})
    before = row_counts(database.engine)
    with pytest.raises(ValidationError):
        service.put_fields(created.subject_id, {"email": "new@example.com", "unknown": "x"})
    assert row_counts(database.engine) == before
    assert service.detokenize([created.tokens["email"]])[0].value == "keep@example.com"


def test_tokenize_batch_per_item(service: VaultService, database: Database) -> None:
    existing = service.create_subject({"email": "e@example.com"}, external_id="ext-1")
    with pytest.raises(ValidationError) as bad:
        service.validator.prepare_record(
            TokenizeRecord(fields={"card_number": "4111111111111112"}, external_id="ext-2")
        )
    assert bad.value.errors == {"card_number": "luhn_check_failed"}
    with pytest.raises(ValidationError) as nobody:
        service.validator.prepare_record(TokenizeRecord(fields={"email": "x@example.com"}))
    assert nobody.value.errors == {"record": "no_subject"}
    results = service.tokenize(
        [
            service.validator.prepare_record(r)
            for r in (
                TokenizeRecord(fields={"phone": "+14155550101"}, external_id="ext-1"),
                TokenizeRecord(fields={"email": "n@example.com"}, external_id="ext-3"),
                TokenizeRecord(fields={"email": "x@example.com"}, subject_id=str(uuid.uuid4())),
                TokenizeRecord(fields={"phone": "+14155550102"}, external_id="ext-3"),
            )
        ]
    )
    assert results[0].subject_id == existing.subject_id and results[0].tokens
    assert results[1].tokens and results[3].subject_id == results[1].subject_id
    assert results[2].error == "not_found"
    assert len(service.lookup("email", "n@example.com")) == 1
    view = service.masked_view(str(results[1].subject_id))
    assert set(view.fields) == {"email", "phone"}


# -- tampering at rest -------------------------------------------------------------------


def test_ciphertext_moved_to_other_subject_or_field_fails(
    service: VaultService, database: Database
) -> None:
    alice = service.create_subject({"email": "alice@example.com", "phone": "+14155550100"})
    bob = service.create_subject({"email": "bob@example.com"})
    with database.engine.begin() as conn:
        a_email = conn.execute(
            select(FieldValue.ciphertext).where(
                FieldValue.subject_id == alice.subject_id, FieldValue.field == "email"
            )
        ).scalar_one()
        conn.execute(
            update(FieldValue)
            .where(FieldValue.subject_id == bob.subject_id, FieldValue.field == "email")
            .values(ciphertext=a_email)
        )
        conn.execute(
            update(FieldValue)
            .where(FieldValue.subject_id == alice.subject_id, FieldValue.field == "phone")
            .values(ciphertext=a_email)
        )
    with pytest.raises(DecryptionError):
        service.detokenize([bob.tokens["email"]])
    with pytest.raises(DecryptionError):
        service.detokenize([alice.tokens["phone"]])
    assert service.detokenize([alice.tokens["email"]])[0].value == "alice@example.com"


def test_flipping_any_stored_byte_fails_generically(
    service: VaultService, database: Database
) -> None:
    created = service.create_subject({"email": "flip@example.com"})
    key = (FieldValue.subject_id == created.subject_id, FieldValue.field == "email")
    with database.engine.connect() as conn:
        original = conn.execute(select(FieldValue.ciphertext).where(*key)).scalar_one()
    messages = set()
    for i in range(len(original)):
        tampered = bytearray(original)
        tampered[i] ^= 0x04
        with database.engine.begin() as conn:
            conn.execute(update(FieldValue).where(*key).values(ciphertext=bytes(tampered)))
        with pytest.raises(DecryptionError) as info:
            service.detokenize([created.tokens["email"]])
        messages.add(str(info.value))
    assert messages == {"stored value could not be decrypted"}
    with database.engine.begin() as conn:
        conn.execute(update(FieldValue).where(*key).values(ciphertext=original))
    assert service.detokenize([created.tokens["email"]])[0].value == "flip@example.com"


# -- keys ---------------------------------------------------------------------------------


def test_rotation_keeps_old_data_readable(service: VaultService, database: Database) -> None:
    created = service.create_subject({"email": "rot@example.com"})
    with database.engine.connect() as conn:
        before = conn.execute(select(DataKeyRecord.wrapped)).scalars().all()
    service.rotate_subject_key(created.subject_id)
    service.cache.clear()
    with database.engine.connect() as conn:
        after = conn.execute(select(DataKeyRecord.wrapped)).scalars().all()
    assert before != after
    assert service.detokenize([created.tokens["email"]])[0].value == "rot@example.com"
    new = service.put_fields(created.subject_id, {"phone": "+14155550100"})
    service.cache.clear()
    assert service.detokenize([new["phone"]])[0].value == "+14155550100"
    assert service.reveal(created.subject_id, ["email"]) == {"email": "rot@example.com"}


def test_data_key_rotates_before_its_nonce_budget(database: Database, provider: KeyBackend) -> None:
    service = VaultService(database.engine, provider, max_dek_encryptions=3)
    created = service.create_subject({"email": "a@example.com", "phone": "+14155550100"})
    tokens = dict(created.tokens)
    tokens.update(service.put_fields(created.subject_id, {"full_name": "A B", "gender": "f"}))
    with database.engine.connect() as conn:
        keys = conn.execute(select(DataKeyRecord)).all()
    assert len(keys) == 2
    assert all(k.encryptions <= 3 for k in keys)
    service.cache.clear()
    values = {r.field: r.value for r in service.detokenize(list(tokens.values()))}
    assert values == {
        "email": "a@example.com",
        "phone": "+14155550100",
        "full_name": "A B",
        "gender": "f",
    }


def test_configured_cache_is_used_and_ttl_honoured(
    database: Database, provider: KeyBackend, tmp_path: Path
) -> None:
    cache = DataKeyCache(max_entries=7, ttl_seconds=1e-6)
    counter = CallCounter()
    service = VaultService(database.engine, counter.wrap(provider), cache=cache)
    assert service.cache is cache
    created = service.create_subject({"email": "ttl@example.com"})
    calls = counter.count
    for _ in range(3):
        assert service.detokenize([created.tokens["email"]])[0].value == "ttl@example.com"
    assert counter.count - calls == 3  # expired every time: one unwrap per read
    settings = Settings(home=tmp_path / "home", dek_cache_size=5, dek_cache_ttl=9.0)
    built = open_runtime(settings, migrate=True)
    assert (built.vault.cache.max_entries, built.vault.cache.ttl) == (5, 9.0)
    built.close()


def test_cache_saves_key_provider_calls(service: VaultService, runtime: Runtime) -> None:
    created = service.create_subject({"email": "c@example.com"})
    service.cache.clear()
    service.detokenize([created.tokens["email"]])
    calls = runtime.key_calls.count
    for _ in range(20):
        service.detokenize([created.tokens["email"]])
        service.masked_view(created.subject_id)
    assert runtime.key_calls.count == calls
    assert service.cache.stats.hits >= 40


# -- no plaintext at rest ----------------------------------------------------------------


def test_no_plaintext_or_key_material_at_rest(
    service: VaultService, provider: KeyBackend, database: Database
) -> None:
    created = service.create_subject(ALICE, external_id="at-rest")
    service.put_fields(created.subject_id, {"recipient_name": "Quentin Zarathustra"})
    storage = raw_storage(database)
    assert len(storage) > 1000
    for value in [*ALICE.values(), "Quentin Zarathustra"]:
        assert not leaked(storage, value), value
    with database.engine.connect() as conn:
        wrapped = conn.execute(select(DataKeyRecord.wrapped)).scalars().all()
    for w in wrapped:
        assert not leaked(storage, provider.unwrap_data_key(created.subject_id, w))


# -- Hypothesis round trips ----------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=500
).filter(lambda s: s.strip() != "")


def test_round_trip_arbitrary_unicode_and_binary(service: VaultService) -> None:
    subject = service.create_subject().subject_id

    @settings(max_examples=25, deadline=None)
    @given(text=TEXT, blob=st.binary(min_size=1, max_size=4096))
    def check(text: str, blob: bytes) -> None:
        tokens = service.put_fields(subject, {"transaction_record": text, "voiceprint": blob})
        by_field = {r.field: r.value for r in service.detokenize(list(tokens.values()))}
        assert by_field == {"transaction_record": text, "voiceprint": blob}

    check()


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_writers_and_readers(service: VaultService, database: Database) -> None:
    shared = service.create_subject({"email": "shared@example.com"})
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            mine = service.create_subject({"phone": f"+1415555{n:04d}"}, external_id=f"w-{n}")
            for i in range(5):
                service.put_fields(shared.subject_id, {"transaction_record": f"w{n}-{i}"})
                assert service.detokenize([mine.tokens["phone"]])[0].value == f"+1415555{n:04d}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with database.engine.connect() as conn:
        used = conn.execute(
            select(DataKeyRecord.encryptions).where(DataKeyRecord.subject_id == shared.subject_id)
        ).scalar_one()
    assert used == 1 + 8 * 5  # every encryption counted against the nonce budget
    value = service.reveal(shared.subject_id, ["transaction_record"])["transaction_record"]
    assert isinstance(value, str) and value.startswith("w")


def test_retention_purge_deletes_only_expired_values(service: VaultService) -> None:
    """Policy §4: e-commerce records go after 3 years; account data stays until deletion."""
    import datetime as dt

    created = service.create_subject(
        {"email": "keep@example.com", "transaction_record": "order 1: umbrella"}
    )
    assert purge_expired(service.tx) == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3 * 366)
    assert purge_expired(service.tx, now=later) == [(created.subject_id, "transaction_record")]
    results = service.detokenize(list(created.tokens.values()))
    by_token = {r.token: r for r in results}
    assert by_token[created.tokens["email"]].value == "keep@example.com"
    assert by_token[created.tokens["transaction_record"]].error == "not_found"
    assert set(service.export(created.subject_id)["fields"]) == {"email"}


def test_a_drawn_card_token_already_taken_is_drawn_again(
    service: VaultService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Card tokens are low-entropy: a draw that collides with a stored token (or with one
    drawn for another field of the same write) is replaced, never stored twice."""
    import vault.new_subjects

    first = service.create_subject({"card_number": "4111111111111111"})
    taken = first.tokens["card_number"]
    free = ("6" if taken[0] == "5" else "5") + taken[1:]
    draws = iter([taken, taken, free])
    monkeypatch.setattr(vault.new_subjects, "card_token", lambda _digits: next(draws))
    second = service.create_subject({"card_number": "4111111111111111"})
    assert second.tokens["card_number"] == free
    by_token = {r.token: r.subject_id for r in service.detokenize([taken, free])}
    assert by_token == {taken: first.subject_id, free: second.subject_id}
