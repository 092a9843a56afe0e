"""What every vault operation stands on: the engine, the key provider, storage, data
keys, key intents and the pool, and the transaction that uses data keys (``keyed``)
with its one rule for a subject key found missing. ``vault/writes.py`` and
``vault/reads.py`` build the domain API on it; ``vault/service.py`` joins them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from keys.provider import BlindIndexer, SubjectIdIssuer, SubjectKeys
from vault.biometrics import DEFAULT_THRESHOLD
from vault.cache import DataKeyCache
from vault.config import DEFAULT_MAX_DEK_ENCRYPTIONS
from vault.datakeys import DataKeyManager
from vault.errors import (
    ConfigError,
    DecryptionError,
    ServiceUnavailable,
    SubjectKeyMissing,
    VaultError,
)
from vault.intents import KeyIntents
from vault.key_pool import KeyPool
from vault.minors import Majority
from vault.models import (
    STATUS_ACTIVE,
    STATUS_DAMAGED,
    FieldValue,
    FieldVersion,
    Subject,
    mark_damaged,
)
from vault.schema import Schema
from vault.storage import FieldStore
from vault.transactions import Transactions, translating
from vault.validation import Validator


class ServiceCore:
    """Thread-safe; one instance per process (as ``VaultService``)."""

    def __init__(
        self,
        engine: Engine,
        keys: SubjectKeys,
        index: BlindIndexer | None = None,
        schema: Schema | None = None,
        *,
        cache: DataKeyCache | None = None,
        max_dek_encryptions: int = DEFAULT_MAX_DEK_ENCRYPTIONS,
        default_region: str = "CN",
        majority: Majority | None = None,
        key_pool: int = 0,
        key_pool_age: float = 300.0,
    ) -> None:
        """``index`` defaults to ``keys`` when that backend also computes blind indexes;
        ``key_pool`` keys per region are made ahead for batches of new subjects (0: none),
        each handed out only while younger than ``key_pool_age`` seconds."""
        if index is None:
            if not isinstance(keys, BlindIndexer):
                raise ConfigError("the vault needs a blind indexer")
            index = keys
        self.engine = engine
        self.keys = keys
        self.schema = schema if schema is not None else Schema.load()
        self.default_region = default_region
        self.biometric_threshold = DEFAULT_THRESHOLD
        self.tx = Transactions(engine)
        self.datakeys = DataKeyManager(keys, cache, max_encryptions=max_dek_encryptions)
        self.store = FieldStore(self.schema, self.datakeys, index)
        self.validator = Validator(self.schema, majority)
        self.intents = KeyIntents(self.tx, keys)
        self.key_pool = KeyPool(
            self.intents,
            self.new_subject_id,
            self.datakeys.first_data_key,
            limit=key_pool,
            max_age=key_pool_age,
        )
        # Vault calls of one request that do not depend on each other run side by side.
        self._calls = ThreadPoolExecutor(8, thread_name_prefix="pii-vault-calls")

    @contextlib.contextmanager
    def keyed(self, *, read_only: bool = False) -> Iterator[Session]:
        """A transaction that uses data keys: first drop those of subjects shredded elsewhere.

        A subject key found missing is reported as a shred in progress or as damage, never
        guessed: ``_key_missing`` decides under the subject's write lock."""
        try:
            with self.tx.begin(read_only=read_only) as session:
                self.datakeys.sync(session)
                yield session
        except SubjectKeyMissing as exc:
            raise self._key_missing(exc.subject_id) from exc

    def _key_missing(self, subject_id: str) -> VaultError:
        """An active subject whose key is gone is ``damaged`` (logged, counted, 500
        ``subject_damaged``); one being shredded is what it is (410)."""
        self.datakeys.evict_subject(subject_id)
        with self.tx.begin() as session:
            subject = self.store.subject(session, subject_id, lock="update")
            if subject.status == STATUS_ACTIVE and not self.keys.subject_key_exists(subject.id):
                mark_damaged(subject)
        try:
            self.store.require_active(subject)
        except VaultError as exc:
            return exc
        return DecryptionError()  # the key is back (it never went): say nothing more

    def new_subject_id(self, region: str | None = None) -> str:
        """A fresh subject id for a subject of ``region`` (None: the default region): the
        key backend's choice where it has one (a sharded backend names the shard in the
        id, one of the region's own if shards are bound to it), else a random UUID v4."""
        if isinstance(self.keys, SubjectIdIssuer):
            with translating():
                return self.keys.new_subject_id((region or self.default_region).upper())
        return str(uuid.uuid4())

    def key_fits_region(self, subject_id: str, region: str) -> bool:
        """Whether ``subject_id``'s key sits where a subject of ``region`` may be keyed
        (always, unless key shards are bound to regions: keys never move)."""
        fits = getattr(self.keys, "region_fits", None)
        return True if fits is None else bool(fits(subject_id, region.upper()))

    @property
    def cache(self) -> DataKeyCache:
        return self.datakeys.cache

    def close(self) -> None:
        self.key_pool.close()
        self._calls.shutdown(wait=False)
        self.datakeys.clear()
        self.engine.dispose()

    def maintain(self) -> None:
        """Periodic: drop expired keys, and the keys of subjects shredded by other processes.

        If the shred log cannot be read, every cached key is dropped: a process
        that cannot learn about shreds must not keep keys (fail closed).
        """
        self.datakeys.cache.sweep()
        self.key_pool.sweep()
        try:
            with self.tx.begin(read_only=True) as session:
                self.datakeys.sync(session)
        except ServiceUnavailable:
            self.datakeys.clear()
            raise

    def damaged_count(self) -> int:
        """Subjects whose key was found missing (the ``pii_vault_damaged_subjects`` gauge)."""
        with self.tx.begin(read_only=True) as session:
            count = session.scalar(
                select(func.count()).select_from(Subject).where(Subject.status == STATUS_DAMAGED)
            )
            return int(count or 0)

    def fields_without_schema(self) -> list[str]:
        """Fields with stored values (current or prior) that the schema no longer names: a
        custom schema must not drop a field while values exist (they would be unreadable,
        unexportable and never purged)."""
        with self.tx.begin(read_only=True) as session:
            stored = set(session.scalars(select(FieldValue.field).distinct()))
            stored |= set(session.scalars(select(FieldVersion.field).distinct()))
        return sorted(stored - set(self.schema.fields))

    def check_database(self) -> None:
        with self.tx.begin(read_only=True) as session:
            session.execute(select(1))
