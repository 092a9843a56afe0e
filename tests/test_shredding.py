"""Crypto-shredding, as DESIGN.md's protocol, and atomicity when OpenBao fails mid-operation."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import select

from access.runtime import compose
from keys.errors import KeyUnavailable
from keys.provider import DataKey, KeyBackend
from keys.transit import TransitKeyProvider
from tests.conftest import Database, OpenBaoServer, shredder_of
from tests.helpers import ALICE, copy_database, row_counts
from vault.errors import (
    KeyProviderUnavailable,
    ShredPending,
    SubjectDamaged,
    SubjectKeyMissing,
    SubjectShredded,
)
from vault.models import FieldValue, Subject
from vault.receipts import verify_receipt
from vault.service import VaultService
from vault.shredding import Shredder


def test_shred_destroys_key_data_and_tokens(
    service: VaultService, shredder: Shredder, provider: KeyBackend, database: Database
) -> None:
    alice = service.create_subject(ALICE, external_id="alice")
    bob = service.create_subject({"email": "bob@example.com"}, external_id="bob")
    receipt = shredder.shred(alice.subject_id)

    assert not provider.subject_key_exists(alice.subject_id)
    assert service.status(alice.subject_id) == "shredded"
    results = service.detokenize(list(alice.tokens.values()))
    assert {r.error for r in results} == {"not_found"}
    assert all(r.value is None for r in results)
    for read in (service.masked_view, service.export):
        with pytest.raises(SubjectShredded):
            read(alice.subject_id)
    with pytest.raises(SubjectShredded):
        service.reveal(alice.subject_id, ["email"])
    with pytest.raises(SubjectShredded):
        service.put_fields(alice.subject_id, {"email": "again@example.com"})
    assert service.lookup("email", ALICE["email"]) == []

    # Only a tombstone is left: id, status, timestamps — and, apart, the transaction record
    # e-commerce law keeps 3 years (policy §4 floor), under a held subject with its own key
    # and no token, named by the receipt.
    assert receipt.held is not None and receipt.held["fields"] == ["transaction_record"]
    counts = row_counts(database.engine)
    assert counts == {
        "subjects": 3,
        "data_keys": 2,
        "field_values": 2,
        "tokens": 1,
        "blind_index": 1,
    }
    assert service.status(receipt.held["hold_id"]) == "held"
    with database.engine.connect() as conn:
        tomb = conn.execute(select(Subject).where(Subject.id == alice.subject_id)).one()
    assert tomb.external_id is None and tomb.region is None and tomb.shredded_at is not None

    # Other subjects are untouched.
    assert service.detokenize([bob.tokens["email"]])[0].value == "bob@example.com"

    # The receipt is signed by the provider's key and tamper-evident.
    data = receipt.to_dict()
    assert verify_receipt(data, provider.signing_public_key())
    assert not verify_receipt(dict(data, subject_id=bob.subject_id), provider.signing_public_key())
    forged = dict(data, signature=base64.b64encode(bytes(64)).decode())
    assert not verify_receipt(forged, provider.signing_public_key())
    # Idempotent: shredding again returns the same receipt.
    assert shredder.shred(alice.subject_id) == receipt


def test_backup_taken_before_shred_decrypts_nothing(
    service: VaultService,
    shredder: Shredder,
    database: Database,
    provider: KeyBackend,
    tmp_path: Path,
) -> None:
    alice = service.create_subject(ALICE)
    service.detokenize(list(alice.tokens.values()))  # warm the cache, as production would be
    backup = copy_database(database, tmp_path)
    try:
        shredder.shred(alice.subject_id)
        restored = VaultService(backup.engine, provider)  # fresh process: empty cache
        assert restored.status(alice.subject_id) == "active"  # the backup predates the shred
        # The restored rows' key is gone: the subject is reported damaged, never readable.
        first, *rest = alice.tokens.values()
        with pytest.raises(SubjectDamaged):  # the read that finds the key missing
            restored.detokenize([first])
        for result in restored.detokenize(rest):  # then: per item, as for any unreadable one
            assert result.value is None and result.error == "subject_damaged"
        for read in (restored.masked_view, restored.export):
            with pytest.raises(SubjectDamaged):
                read(alice.subject_id)
        assert restored.status(alice.subject_id) == "damaged"
        # Going around the service: every stored ciphertext fails to decrypt.
        with backup.engine.connect() as conn:
            rows = conn.execute(select(FieldValue)).all()
        assert len(rows) == len(ALICE)
        with restored.tx.begin(read_only=True) as session:
            for row in rows:
                value = session.get(FieldValue, (row.subject_id, row.field))
                assert value is not None
                with pytest.raises(SubjectKeyMissing):  # the key is gone, so is the data
                    restored.store.decrypt(session, row.subject_id, value)
    finally:
        backup.engine.dispose()


def test_shred_blocks_reads_in_other_processes_at_once(
    service: VaultService, shredder: Shredder, database: Database, provider: KeyBackend
) -> None:
    alice = service.create_subject({"email": "a@example.com"})
    other = VaultService(database.new_engine(), provider)  # another worker, warm cache
    assert other.detokenize([alice.tokens["email"]])[0].value == "a@example.com"
    shredder.shred(alice.subject_id)
    assert other.detokenize([alice.tokens["email"]])[0].error == "not_found"
    with pytest.raises(SubjectShredded):
        other.masked_view(alice.subject_id)
    other.engine.dispose()


# -- OpenBao unavailable -------------------------------------------------------------


@pytest.mark.slow
def test_shred_with_vault_down_stays_shredding_then_completes(
    database: Database, own_openbao: OpenBaoServer
) -> None:
    provider = own_openbao.provider()
    service = VaultService(database.engine, provider)
    shredder = shredder_of(service, provider)
    other = VaultService(database.new_engine(), own_openbao.provider())
    alice = service.create_subject(ALICE)
    bob = service.create_subject({"email": "bob@example.com"})
    assert other.detokenize([alice.tokens["email"]])[0].value == ALICE["email"]  # warm

    own_openbao.server.stop()
    with pytest.raises(ShredPending, match="key provider is unavailable") as info:
        shredder.shred(alice.subject_id)
    assert isinstance(info.value, KeyProviderUnavailable)  # -> 503 in the API
    assert service.status(alice.subject_id) == "shredding"
    # Reads are blocked at once, everywhere, even from a warm cache.
    result = other.detokenize([alice.tokens["email"]])[0]
    assert result.error == "shredded" and result.value is None
    with pytest.raises(SubjectShredded):
        other.masked_view(alice.subject_id)
    assert shredder.pending() == [alice.subject_id]
    outcome = shredder.complete_pending()
    assert outcome.completed == [] and outcome.pending == [alice.subject_id]

    own_openbao.server.start()
    outcome = shredder.complete_pending()
    assert [r.subject_id for r in outcome.completed] == [alice.subject_id]
    assert outcome.pending == []
    assert service.status(alice.subject_id) == "shredded"
    assert not provider.subject_key_exists(alice.subject_id)
    assert verify_receipt(outcome.completed[0].to_dict(), provider.signing_public_key())
    assert other.detokenize([bob.tokens["email"]])[0].value == "bob@example.com"
    other.engine.dispose()


class StopsVaultMidway(TransitKeyProvider):
    """A real transit provider whose OpenBao is stopped just before a chosen call."""

    def __init__(self, bao: OpenBaoServer, before: str) -> None:
        super().__init__(bao.addr, bao.service_token)
        self._bao, self._before = bao, before

    def _maybe_stop(self, name: str) -> None:
        if name == self._before:
            self._bao.server.stop()

    def generate_data_key(self, subject_id: str) -> DataKey:
        self._maybe_stop("generate_data_key")
        return super().generate_data_key(subject_id)

    def blind_index(self, messages: list[bytes]) -> list[str]:  # type: ignore[override]
        self._maybe_stop("blind_index")
        return super().blind_index(messages)


@pytest.mark.slow
@pytest.mark.parametrize("before", ["generate_data_key", "blind_index"])
def test_vault_stopped_mid_create_leaves_no_half_written_subject(
    database: Database, own_openbao: OpenBaoServer, before: str
) -> None:
    service = VaultService(database.engine, StopsVaultMidway(own_openbao, before))
    before_counts = row_counts(database.engine)
    with pytest.raises(KeyProviderUnavailable, match="key provider unavailable") as info:
        service.create_subject(ALICE, external_id="half")
    assert ALICE["email"] not in str(info.value)
    assert row_counts(database.engine) == before_counts
    own_openbao.server.start()
    # The same record can be stored once Vault is back: nothing stale blocks it.
    healthy = VaultService(database.engine, own_openbao.provider())
    created = healthy.create_subject(ALICE, external_id="half")
    assert healthy.detokenize([created.tokens["email"]])[0].value == ALICE["email"]


@pytest.mark.slow
def test_vault_stopped_mid_correction_keeps_old_values(
    database: Database, own_openbao: OpenBaoServer
) -> None:
    healthy = VaultService(database.engine, own_openbao.provider())
    created = healthy.create_subject({"email": "keep@example.com", "phone": "+14155550100"})
    service = VaultService(database.engine, StopsVaultMidway(own_openbao, "blind_index"))
    before = row_counts(database.engine)
    with pytest.raises(KeyProviderUnavailable):
        service.put_fields(created.subject_id, {"email": "new@example.com"})
    assert row_counts(database.engine) == before
    own_openbao.server.start()
    assert healthy.detokenize([created.tokens["email"]])[0].value == "keep@example.com"


def test_unreachable_provider_fails_closed_on_reads(
    database: Database, openbao: OpenBaoServer
) -> None:
    service = VaultService(database.engine, openbao.provider())
    created = service.create_subject({"email": "closed@example.com"})
    from api.demo.openbao import free_port

    backend = TransitKeyProvider(f"http://127.0.0.1:{free_port()}", "t", timeout=1)
    broken = compose(database.engine, backend)
    with pytest.raises(KeyProviderUnavailable, match="key provider unavailable"):
        broken.vault.detokenize([created.tokens["email"]])
    with pytest.raises(KeyProviderUnavailable):
        broken.check()
    with pytest.raises(KeyUnavailable):
        backend.check()


def test_receipt_signed_by_another_key_is_refused(
    service: VaultService, shredder: Shredder, provider: KeyBackend
) -> None:
    """Attack: forge a receipt with any key and put that key's public half inside it."""
    from nacl.signing import SigningKey

    from vault.receipts import receipt_payload

    alice = service.create_subject({"email": "forged@example.com"})
    real = shredder.shred(alice.subject_id).to_dict()
    forger = SigningKey.generate()
    payload = receipt_payload(
        real["subject_id"], real["requested_at"], real["shredded_at"], real["key_provider"]
    )
    forged = dict(
        real,
        signature=base64.b64encode(forger.sign(payload).signature).decode(),
        public_key=base64.b64encode(bytes(forger.verify_key)).decode(),
    )
    pinned = provider.signing_public_key()
    assert verify_receipt(real, pinned)
    assert not verify_receipt(forged, pinned)
    with pytest.raises(TypeError):
        verify_receipt(forged)  # type: ignore[call-arg]  # no pinned key: an error, never a pass


# -- a shred reaches every process's cache ------------------------------------------------------


def test_shred_evicts_the_key_in_other_processes_at_their_next_request(
    service: VaultService, shredder: Shredder, database: Database, provider: KeyBackend
) -> None:
    """Attack: another worker kept the shredded subject's data key in memory for minutes."""
    alice = service.create_subject({"email": "a@example.com"})
    bob = service.create_subject({"email": "b@example.com"})
    other = VaultService(database.new_engine(), provider)  # another worker, warm cache
    other.detokenize([alice.tokens["email"], bob.tokens["email"]])
    assert other.cache.holds(alice.subject_id)
    shredder.shred(alice.subject_id)
    other.detokenize([bob.tokens["email"]])  # its next request, about someone else
    assert not other.cache.holds(alice.subject_id)
    assert other.cache.holds(bob.subject_id)
    other.engine.dispose()


def test_idle_process_drops_shredded_and_expired_keys_by_itself(
    service: VaultService, shredder: Shredder, database: Database, provider: KeyBackend
) -> None:
    """No request needed: the maintenance thread sweeps expired keys and reads the shred log."""
    import time

    from vault.cache import DataKeyCache
    from vault.maintenance import Maintenance

    alice = service.create_subject({"email": "a@example.com"})
    bob = service.create_subject({"email": "b@example.com"})
    other = VaultService(database.new_engine(), provider, cache=DataKeyCache(ttl_seconds=3600))
    short = VaultService(database.new_engine(), provider, cache=DataKeyCache(ttl_seconds=0.2))
    for svc in (other, short):
        svc.detokenize([alice.tokens["email"], bob.tokens["email"]])
    assert len(short.cache) == 2 and other.cache.holds(alice.subject_id)
    shredder.shred(alice.subject_id)
    threads = [Maintenance(0.1, [("keys", svc.maintain)]).start() for svc in (other, short)]
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            len(short.cache) or other.cache.holds(alice.subject_id)
        ):
            time.sleep(0.05)
    finally:
        for thread in threads:
            thread.stop()
    assert len(short.cache) == 0  # expired, swept without any request for them
    assert not other.cache.holds(alice.subject_id)  # shredded elsewhere, no request needed
    assert other.cache.holds(bob.subject_id)
    for svc in (other, short):
        svc.engine.dispose()
