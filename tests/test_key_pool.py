"""Issue 21: subject keys made ahead for batches of new subjects (vault/key_pool).

The pool must buy speed only: every pooled key has a committed intent before it exists,
is claimed by the insert that uses it, is destroyed when it is not used, and a key the
sweep settled is never used for a stored subject. Real OpenBao, a transit mount per test
(the tests count every key), SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from access.runtime import compose
from keys.transit import TransitKeyProvider
from tests.conftest import Database, OpenBaoServer
from vault.errors import ServiceUnavailable
from vault.models import KeyIntent, Subject
from vault.results import TokenizeRecord, TokenizeResult
from vault.service import VaultService


@pytest.fixture
def keys(openbao: OpenBaoServer) -> Iterator[TransitKeyProvider]:
    provider = openbao.isolated_provider()
    yield provider
    provider.close()


def pooled_service(database: Database, keys: TransitKeyProvider, **kw: float) -> VaultService:
    return VaultService(
        database.engine, keys, key_pool=int(kw.get("limit", 20)), key_pool_age=kw.get("age", 300.0)
    )


def batch(service: VaultService, prefix: str, n: int) -> list[TokenizeResult]:
    records = [
        TokenizeRecord(fields={"email": f"{prefix}{i}@example.com"}, external_id=f"{prefix}-{i}")
        for i in range(n)
    ]
    return service.tokenize([service.validator.prepare_record(r) for r in records])


def pooled_ids(service: VaultService) -> list[str]:
    """The ids of the keys the pool holds, once they are made."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        futures = [f for q in service.key_pool._ready.values() for f in q]
        if all(f.done() for f in futures):
            return [f.result().subject_id for f in futures if f.exception() is None]
        time.sleep(0.05)
    raise AssertionError("the pool did not finish making its keys")


def intents(database: Database) -> set[str]:
    with database.engine.connect() as conn:
        return set(conn.execute(select(KeyIntent.subject_id)).scalars())


def subjects(database: Database) -> set[str]:
    with database.engine.connect() as conn:
        return set(conn.execute(select(Subject.id)).scalars())


def test_the_next_batch_takes_the_keys_made_while_the_last_was_written(
    database: Database, keys: TransitKeyProvider
) -> None:
    service = pooled_service(database, keys)
    first = batch(service, "a", 5)
    ahead = pooled_ids(service)
    assert len(ahead) == 5 and not set(ahead) & subjects(database)
    # Each pooled key exists with its intent committed: accounted for before it is used.
    assert set(ahead) <= set(keys.subject_key_ids()) and set(ahead) <= intents(database)
    second = batch(service, "b", 5)
    assert [r.subject_id for r in second] == ahead  # claimed by the insert
    assert not set(ahead) & intents(database)  # the claim took their intents
    tokens = [r.tokens["email"] for r in first + second if r.tokens]
    assert [v.value for v in service.detokenize(tokens)] == [
        *(f"a{i}@example.com" for i in range(5)),
        *(f"b{i}@example.com" for i in range(5)),
    ]
    service.close()


def test_keys_left_in_the_pool_are_destroyed_at_close_and_reconcile_finds_nothing(
    database: Database, keys: TransitKeyProvider
) -> None:
    service = pooled_service(database, keys)
    stored = {str(r.subject_id) for r in batch(service, "c", 4)}
    ahead = pooled_ids(service)
    service.close()
    assert set(keys.subject_key_ids()) == stored  # the pooled ones are gone
    assert not intents(database)
    runtime = compose(database.new_engine(), keys)
    report = runtime.reconciler().run(dry_run=True)
    assert not report.orphan_keys and not report.young_keys and not report.broken
    assert not set(ahead) & set(keys.subject_key_ids())


def test_a_pooled_key_past_its_age_is_destroyed_not_handed_out(
    database: Database, keys: TransitKeyProvider
) -> None:
    service = pooled_service(database, keys, age=0.3)
    batch(service, "d", 3)
    ahead = pooled_ids(service)
    time.sleep(0.4)
    taken = [r.subject_id for r in batch(service, "e", 3)]
    assert not set(ahead) & set(taken)
    assert not any(keys.subject_key_exists(s) for s in ahead)
    assert not set(ahead) & intents(database)
    service.key_pool.ahead = False
    service.close()


def test_a_key_the_sweep_settled_stores_nothing(
    database: Database, keys: TransitKeyProvider
) -> None:
    """A pooled key whose intent the sweep settled (destroyed) must never key a stored
    subject: the insert's claim finds the intent gone and the whole batch fails."""
    service = pooled_service(database, keys)
    before = subjects(database)
    first = batch(service, "f", 3)
    ahead = pooled_ids(service)
    assert set(service.intents.settle(0.0)) == set(ahead)  # as if the grace had passed
    service.key_pool.ahead = False
    with pytest.raises(ServiceUnavailable):
        batch(service, "g", 3)
    assert subjects(database) == before | {str(r.subject_id) for r in first}
    assert not set(ahead) & subjects(database)  # nothing stored under a destroyed key
    retry = batch(service, "g", 3)  # the pool is empty now: keys made for the retry
    assert all(r.subject_id and keys.subject_key_exists(r.subject_id) for r in retry)
    service.close()


def test_a_batch_naming_a_new_external_id_twice_stores_both_items(
    database: Database, keys: TransitKeyProvider
) -> None:
    """New subjects' rows go in together at the end; an item naming one created earlier in
    the same batch still sees it (and adds its field, or gets the same token again)."""
    service = pooled_service(database, keys)
    items = [
        TokenizeRecord(fields={"email": "h@example.com"}, external_id="h-1"),
        TokenizeRecord(fields={"email": "i@example.com"}, external_id="i-1"),
        TokenizeRecord(fields={"email": "h@example.com"}, external_id="h-1"),
        TokenizeRecord(fields={"phone": "+14155550100"}, external_id="h-1"),
    ]
    results = service.tokenize([service.validator.prepare_record(r) for r in items])
    assert [r.error for r in results] == [None] * 4
    assert results[0].subject_id == results[2].subject_id == results[3].subject_id
    assert results[0].tokens == results[2].tokens
    assert results[3].tokens is not None
    values = service.detokenize([results[0].tokens["email"], results[3].tokens["phone"]])
    assert [v.value for v in values] == ["h@example.com", "+14155550100"]
    service.key_pool.ahead = False
    service.close()
