"""A shredded subject's blind-index digests, in a backup, stop identifying them.

Attack (reported): from a dump taken before the shred, anyone holding the
service token confirms guesses (a phone number, an email, a passport number,
an external id) by computing the same keyed MAC. After shred + `reindex` the
old index-key versions no longer exist anywhere, so nothing can.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from access.runtime import Runtime, compose
from keys.errors import KeyProviderError
from keys.provider import IndexKeyAdmin, KeyBackend
from keys.sharding import ShardedKeys
from keys.transit import TransitKeyProvider
from tests.conftest import Database, OpenBaoServer, migrate_all
from tests.helpers import ALICE, copy_database, leaked, raw_storage
from vault.db import make_engine
from vault.models import BlindIndex, Subject
from vault.new_subjects import external_id_form
from vault.reindex import reindex

EXTERNAL = "shop-user-zelda-7731"


@pytest.fixture
def admin(provider: KeyBackend, request: pytest.FixtureRequest) -> Iterator[IndexKeyAdmin]:
    if isinstance(provider, TransitKeyProvider | ShardedKeys):  # the service token may not
        bao: OpenBaoServer = request.getfixturevalue("openbao")
        privileged = TransitKeyProvider(bao.addr, bao.server.root_token)
        yield privileged
        privileged.close()
    else:
        assert isinstance(provider, IndexKeyAdmin)
        yield provider


def _guesses(rt: Runtime) -> dict[str, bytes]:
    schema = rt.vault.schema
    forms = {
        name: schema[name].index_form(schema[name].normalize(ALICE[name]))
        for name in ("email", "phone", "passport_number")
    }
    forms["external_id"] = external_id_form(EXTERNAL)
    return forms


def _backup_digests(backup: Database, subject_id: str) -> dict[str, str]:
    with backup.engine.connect() as conn:
        rows = conn.execute(select(BlindIndex).where(BlindIndex.subject_id == subject_id)).all()
        ext = conn.execute(
            select(Subject.external_id_digest).where(Subject.id == subject_id)
        ).scalar_one()
    return {**{r.field: r.digest for r in rows}, "external_id": ext}


def test_backup_digests_cannot_be_confirmed_after_shred_and_reindex(
    runtime: Runtime,
    database: Database,
    provider: KeyBackend,
    admin: IndexKeyAdmin,
    tmp_path: Path,
) -> None:
    vault = runtime.vault
    alice = vault.create_subject(
        {k: ALICE[k] for k in ("full_name", "email", "phone", "passport_number")},
        external_id=EXTERNAL,
    )
    bob = vault.create_subject({"email": "bob@example.org"}, external_id="shop-user-bob")
    backup = copy_database(database, tmp_path)
    try:
        stolen = _backup_digests(backup, alice.subject_id)
    finally:
        backup.engine.dispose()
    guesses = _guesses(runtime)
    assert set(stolen) == set(guesses)
    # Before: the service token confirms every guess against the stolen digests.
    for name, form in guesses.items():
        assert provider.blind_index([form]) == [stolen[name]], name

    runtime.shredder.shred(alice.subject_id)
    report = reindex(vault, admin)
    assert report.subjects == 1 and report.digests == 2  # bob: email + external id

    # After: under every version the service token can still use, nothing matches,
    # and the versions that made the stolen digests are gone.
    for name, form in guesses.items():
        assert provider.blind_index([form]) != [stolen[name]], name
        old = int(stolen[name].split(":", 1)[0][1:])
        with pytest.raises(KeyProviderError):
            provider.blind_index([form], version=old)
    # Live lookups still work, for the subjects that are still there.
    assert vault.lookup("email", "bob@example.org") == [bob.subject_id]
    assert vault.describe(external_id="shop-user-bob").subject_id == bob.subject_id
    with pytest.raises(Exception, match="unknown subject"):
        vault.describe(external_id=EXTERNAL)


def test_external_id_is_never_stored_in_clear(runtime: Runtime, database: Database) -> None:
    vault = runtime.vault
    created = vault.create_subject({"email": ALICE["email"]}, external_id=EXTERNAL)
    assert not leaked(raw_storage(database), EXTERNAL)
    assert vault.masked_view(created.subject_id).external_id == EXTERNAL
    assert vault.export(created.subject_id)["external_id"] == EXTERNAL
    assert vault.describe(external_id=EXTERNAL).subject_id == created.subject_id


def test_nothing_of_a_shredded_subject_stays_in_the_sqlite_files(
    provider: KeyBackend, tmp_path: Path
) -> None:
    """SQLite only (PostgreSQL keeps dead tuples until VACUUM: README, threat model)."""
    path = tmp_path / "vault.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate_all(engine)
    runtime = compose(engine, provider)
    database = Database("sqlite", f"sqlite:///{path}", engine, path=path)
    vault = runtime.vault
    alice = vault.create_subject(
        {k: ALICE[k] for k in ("email", "phone", "passport_number")}, external_id=EXTERNAL
    )
    with engine.connect() as conn:
        kept = [
            *conn.execute(text("SELECT ciphertext FROM field_values")).scalars(),
            *conn.execute(text("SELECT token FROM tokens")).scalars(),
            *conn.execute(text("SELECT digest FROM blind_index")).scalars(),
            *conn.execute(text("SELECT wrapped FROM data_keys")).scalars(),
            *conn.execute(text("SELECT external_id_digest FROM subjects")).scalars(),
            *conn.execute(text("SELECT external_id_ct FROM subjects")).scalars(),
        ]
    assert len(kept) >= 10
    runtime.shredder.shred(alice.subject_id)
    storage = raw_storage(database)
    for value in kept:
        assert not leaked(storage, value), value
    engine.dispose()
