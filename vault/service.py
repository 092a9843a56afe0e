"""The vault's domain API: subjects, encrypted fields, tokens, lookup and export.

Every write takes input validated once (``prepare``) and stores everything in
one database transaction, so a rejected field or an unreachable key provider
leaves nothing behind. Every read checks, inside its transaction, that the
subject is still ``active``; on PostgreSQL it holds a share lock on the subject
row while decrypting, so a shred's ``shredding`` mark waits for in-flight reads
and no read starts after it. Storage details live in ``storage``, the data-key
lifecycle in ``datakeys``, shredding in ``shredding``, retention in ``retention``.

About 550 lines, past 400 lines: it is the domain API and nothing else;
each method is a transaction around ``storage`` calls, plus the handling of a
write whose commit failed (which keys to keep). Splitting reads from writes
would scatter the one subject-state rule (active, share-locked) they share; the
write-failure handling (``_after_failed_write``, ``_premade_subjects``) is the
next candidate to move out, next to ``intents``.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, cast

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keys.bounded import in_context
from keys.provider import BlindIndexer, DataKey, SubjectIdIssuer, SubjectKeys
from vault.biometrics import DEFAULT_THRESHOLD, matches
from vault.cache import DataKeyCache
from vault.config import DEFAULT_MAX_DEK_ENCRYPTIONS
from vault.datakeys import DataKeyManager
from vault.errors import (
    ConfigError,
    DecryptionError,
    DuplicateExternalId,
    MinorFlagConflicts,
    ServiceUnavailable,
    SubjectKeyMissing,
    SubjectNotFound,
    ValidationError,
    VaultError,
)
from vault.intents import KeyIntents
from vault.key_pool import KeyPool
from vault.minors import DATE_OF_BIRTH, Majority
from vault.models import (
    STATUS_ACTIVE,
    STATUS_DAMAGED,
    STATUS_HELD,
    BlindIndex,
    FieldValue,
    Subject,
    iso,
    mark_damaged,
)
from vault.new_subjects import NewSubject, Ready
from vault.results import (
    CreatedSubject,
    DetokenizeResult,
    FieldView,
    ItemError,
    PreparedWrite,
    SubjectInfo,
    SubjectStatus,
    SubjectView,
    TokenizeResult,
    TokenRef,
)
from vault.schema import Schema, Value
from vault.storage import FieldStore
from vault.transactions import Transactions, translating
from vault.validation import Validator


class VaultService:
    """Thread-safe; one instance per process."""

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

    def check_database(self) -> None:
        with self.tx.begin(read_only=True) as session:
            session.execute(select(1))

    # -- writes -------------------------------------------------------------------

    def _discard_keys(self, subject_ids: Sequence[str]) -> None:
        """Best effort: keys created for a write that did not commit protect nothing."""
        for subject_id in subject_ids:
            self.datakeys.evict_subject(subject_id)
        self.intents.discard(subject_ids)

    def _stored(self, subject_ids: Sequence[str]) -> bool | None:
        """After a failed commit: did it happen? True, False, or None when nobody can tell."""
        try:
            with self.tx.begin(read_only=True) as session:
                found = session.scalars(select(Subject.id).where(Subject.id.in_(subject_ids)))
                return len(set(found)) == len(set(subject_ids))
        except ServiceUnavailable:
            return None

    def _after_failed_write(self, created: Sequence[str], committing: bool) -> bool:
        """Decide the fate of the subject keys a failed write created; True if it committed.

        Before the commit was sent nothing can have been stored: the keys go. If the commit
        itself failed, its outcome is unknown: the keys go only if their rows are known to be
        absent; committed rows keep them (the write succeeded after all), and when nobody can
        tell the keys stay, with their intents, for the sweep to settle. A key is never
        destroyed while a committed row may need it.
        """
        if not created:
            return False
        outcome = self._stored(created) if committing else False
        if outcome is False:
            self._discard_keys(created)
        return outcome is True

    def create_subject(
        self,
        fields: Mapping[str, Value] | PreparedWrite | None = None,
        *,
        external_id: str | None = None,
        region: str | None = None,
        is_minor: bool | None = None,
        subject_id: str | None = None,
        also: Callable[[Session, str], None] | None = None,
    ) -> CreatedSubject:
        """Create a subject (with its own key in the provider) and store its fields atomically.

        ``subject_id`` names the new subject up front (so the guard can audit it first);
        ``also`` stores more rows about it in the same transaction (e.g. the consents given
        with a minor's registration): all of it or nothing.
        """
        write = (
            fields
            if isinstance(fields, PreparedWrite)
            else self.validator.prepare(
                fields or {},
                subject_id=subject_id,
                external_id=external_id,
                region=region,
                is_minor=is_minor,
            )
        )
        subject = self.store.new_subject(
            write.region or self.default_region,
            write.is_minor,
            write.subject_id or self.new_subject_id(write.region),
        )
        # Vault round trips overlap and stay outside the write transaction: the duplicate
        # check and the index digests run while the key is created; then the data key.
        forms = self.store.index_forms(write.values, write.external_id)
        digests = self._calls.submit(in_context(self.store.index.blind_index), forms)
        taken = (
            self._calls.submit(in_context(self._external_id_taken), write.external_id)
            if write.external_id is not None
            else None
        )
        pending: list[Future[Any]] = [digests] + ([taken] if taken is not None else [])
        try:
            self.intents.create_key(subject.id)
        except BaseException:
            wait(pending)  # nothing of this call outlives it
            raise
        try:
            with translating():
                if taken is not None and taken.result():
                    raise DuplicateExternalId("external_id already exists")
                ready = Ready(self.datakeys.first_data_key(subject.id), digests.result())
        except BaseException:
            wait(pending)
            self._discard_keys([subject.id])
            raise
        committing = False
        try:
            with self.keyed() as session:
                self.intents.claim(session, [subject.id])
                tokens = self.store.store(
                    session,
                    subject,
                    write.values,
                    external_id=write.external_id,
                    ready=ready,
                    new_subject=True,
                )
                if also is not None:
                    also(session, subject.id)
                committing = True  # leaving the block commits
        except IntegrityError as exc:
            self._after_failed_write([subject.id], committing=False)  # refused: not stored
            raise DuplicateExternalId("external_id already exists") from exc
        except BaseException:
            if not self._after_failed_write([subject.id], committing):
                raise
        return CreatedSubject(subject.id, tokens)

    def _check_minor(self, subject: Subject, values: Mapping[str, bytes]) -> None:
        """A date of birth written later must agree with the subject's minor status, which
        changes only by the privacy office's audited attribute change (policy §6)."""
        if DATE_OF_BIRTH in values and self.validator.majority.minor(values[DATE_OF_BIRTH]) != bool(
            subject.is_minor
        ):
            raise MinorFlagConflicts(
                "the date of birth contradicts the subject's minor status; a change of "
                "status is the privacy office's (nothing was stored)",
                {"date_of_birth": "conflicts_with_minor_status"},
            )

    def _external_id_taken(self, external_id: str) -> bool:
        with self.tx.begin(read_only=True) as session:
            return bool(self.store.by_external_ids(session, [external_id]))

    def put_fields(
        self, subject_id: str, fields: Mapping[str, Value] | PreparedWrite
    ) -> dict[str, str]:
        """Add fields or correct them. A changed value gets a new token (the old one stops
        resolving); a value stored again unchanged keeps its token (retries are harmless)."""
        write = (
            fields
            if isinstance(fields, PreparedWrite)
            else self.validator.prepare(fields, allow_empty=False)
        )
        with self.keyed() as session:
            subject = self.store.subject(session, subject_id, lock="update")
            self.store.require_active(subject)
            self._check_minor(subject, write.values)
            same, _ = self.store.unchanged(session, subject, write.values)
            fresh = {k: v for k, v in write.values.items() if k not in same}
            return {**same, **self.store.store(session, subject, fresh)}

    def tokenize(self, writes: Sequence[PreparedWrite]) -> list[TokenizeResult]:
        """Batch write of prepared items, one transaction: one result per item, in order.

        Items naming an unknown or shredded subject are answered with that error, items
        that would change a stored value with ``conflict`` (use a correction); the rest
        commit together. If the key provider or the database fails,
        nothing of the batch is stored and the error is raised.
        """
        results: list[TokenizeResult] = []
        created: list[str] = []
        named = [w.external_id for w in writes if w.subject_id is None and w.external_id]
        made, ready = self._premade_subjects(writes, named)
        premade = {s.id for s in made.values()}
        committing = False
        try:
            with self.keyed() as session:
                by_external = self.store.by_external_ids(session, named, lock=True)
                # New subjects' rows go in together (vault/new_subjects): by subject id,
                # each one's result slot, filled when the batch is inserted.
                waiting: dict[str, tuple[int, NewSubject]] = {}
                for write in writes:
                    subject: Subject | None
                    if write.subject_id is not None:
                        try:
                            subject = self.store.subject(session, write.subject_id, lock="update")
                        except SubjectNotFound:
                            results.append(TokenizeResult(error="not_found"))
                            continue
                    else:
                        ext = str(write.external_id)
                        subject = by_external.get(ext)
                        if subject is not None and subject.id in waiting:
                            # the batch names a subject it creates again: insert it first
                            self._insert_waiting(session, waiting, results)
                            subject = self.store.subject(session, subject.id, lock="update")
                        if subject is None:
                            subject = made.pop(ext, None)
                            if subject is None:  # appeared free since the pre-pass: rare
                                subject = self.store.new_subject(
                                    write.region or self.default_region,
                                    write.is_minor,
                                    self.new_subject_id(write.region),
                                )
                                self.keys.create_subject_key(subject.id)
                            created.append(subject.id)
                            by_external[ext] = subject
                            item = NewSubject(subject, write.values, ext, ready.get(subject.id))
                            waiting[subject.id] = (len(results), item)
                            results.append(TokenizeResult(subject_id=subject.id))
                            continue
                    if subject.status != STATUS_ACTIVE:
                        results.append(TokenizeResult(subject_id=subject.id, error="shredded"))
                        continue
                    try:
                        self._check_minor(subject, write.values)
                    except MinorFlagConflicts as exc:
                        results.append(
                            TokenizeResult(
                                subject_id=subject.id,
                                error="minor_flag_conflicts",
                                errors=exc.errors,
                            )
                        )
                        continue
                    # Tokenize never changes a stored value (that is a correction, its own
                    # action); the same value again returns the token it already has.
                    same, changed = self.store.unchanged(session, subject, write.values)
                    if write.readable is not None:  # an unreadable stored value: no oracle
                        changed = [*changed, *(f for f in same if f not in write.readable)]
                    if changed:
                        results.append(
                            TokenizeResult(
                                subject_id=subject.id,
                                error="conflict",
                                errors=dict.fromkeys(changed, "already_set"),
                            )
                        )
                        continue
                    fresh = {k: v for k, v in write.values.items() if k not in same}
                    tokens = {**same, **self.store.store(session, subject, fresh)}
                    results.append(TokenizeResult(subject_id=subject.id, tokens=tokens))
                self._insert_waiting(session, waiting, results)
                self.intents.claim(session, [s for s in created if s in premade])
                committing = True  # leaving the block commits
        except IntegrityError as exc:
            self._after_failed_write(created, committing=False)  # refused: nothing stored
            self._discard_keys([s.id for s in made.values()])
            raise DuplicateExternalId("external_id was created concurrently; retry") from exc
        except BaseException:
            self._discard_keys([s.id for s in made.values()])  # made but never used
            if not self._after_failed_write(created, committing):
                raise
        self._discard_keys([s.id for s in made.values()])  # taken by a concurrent writer
        assert len(results) == len(writes)  # one result per item, never a placeholder
        return results

    def _insert_waiting(
        self,
        session: Session,
        waiting: dict[str, tuple[int, NewSubject]],
        results: list[TokenizeResult],
    ) -> None:
        stored = self.store.store_new(session, [item for _, item in waiting.values()])
        for (at, item), tokens in zip(waiting.values(), stored, strict=True):
            results[at] = TokenizeResult(subject_id=item.subject.id, tokens=tokens)
        waiting.clear()

    def _premade_subjects(
        self, writes: Sequence[PreparedWrite], named: Sequence[str]
    ) -> tuple[dict[str, Subject], dict[str, Ready]]:
        """New subjects for the batch's unknown external ids with their keys and first data
        keys (from the key pool: made ahead while the previous batch was written, or now,
        in parallel, outside the write transaction, intents recorded first) and their
        blind-index digests (one call for the batch), so the write transaction makes no
        Vault call for them (as ``create_subject``)."""
        if not named:
            return {}, {}
        with self.tx.begin(read_only=True) as session, translating():
            known = self.store.by_external_ids(session, named)
        new: dict[str, PreparedWrite] = {}
        for write in writes:
            ext = write.external_id
            if write.subject_id is None and ext and ext not in known and ext not in new:
                new[ext] = write
        regions: dict[str, list[str]] = {}
        for ext, write in new.items():
            regions.setdefault((write.region or self.default_region).upper(), []).append(ext)
        made: dict[str, Subject] = {}
        ready: dict[str, Ready] = {}
        keys: dict[str, DataKey] = {}
        try:
            for region, exts in regions.items():  # keys made ahead where the pool has them
                for ext, entry in zip(exts, self.key_pool.take(region, len(exts)), strict=True):
                    write = new[ext]
                    made[ext] = self.store.new_subject(
                        write.region or self.default_region, write.is_minor, entry.subject_id
                    )
                    keys[ext] = entry.data_key
            with translating():
                forms = [
                    self.store.index_forms(new[ext].values, ext) for ext in made
                ]  # the external id's form last, as ``store`` expects
                flat = self.store.index.blind_index([f for group in forms for f in group])
        except BaseException:
            self._discard_keys([s.id for s in made.values()])
            raise
        at = 0
        for (ext, subject), group in zip(made.items(), forms, strict=True):
            ready[subject.id] = Ready(keys[ext], list(flat[at : at + len(group)]))
            at += len(group)
        return made, ready

    def rotate_subject_key(self, subject_id: str) -> None:
        """New subject-key version; every wrapped data key is re-wrapped under it.

        The active data key is retired too, so new writes use a data key born
        under the new version. Existing ciphertext stays readable.
        """
        with self.keyed() as session:
            subject = self.store.subject(session, subject_id, lock="update")
            self.store.require_active(subject)
            records = self.datakeys.records(session, subject.id)
            self.keys.rotate_subject_key(subject.id)
            rewrapped = self.keys.rewrap_data_keys(subject.id, [r.wrapped for r in records])
            for record, wrapped in zip(records, rewrapped, strict=True):
                record.wrapped = wrapped
                record.active = False

    # -- reads --------------------------------------------------------------------

    def detokenize(
        self, tokens: Sequence[str], *, masked: Collection[str] = ()
    ) -> list[DetokenizeResult]:
        """Per token, in input order: the current value (masked for tokens in ``masked``)."""
        with self.keyed(read_only=True) as session:
            refs = self.resolve_tokens(tokens, session, share_lock=True)
            return self.read_tokens(session, refs, masked=masked)

    def read_tokens(
        self, session: Session, refs: Sequence[TokenRef], *, masked: Collection[str] = ()
    ) -> list[DetokenizeResult]:
        """The values of tokens already resolved in ``session`` (a ``keyed`` transaction,
        the one that resolved them): no second lookup of the tokens."""
        values, _records = self.store.prefetch(
            session, {r.names for r in refs if r.names is not None}
        )
        missing = {r.names for r in refs if r.names is not None and r.names not in values}
        expired = self.store.expired_among(session, missing)  # past retention: not returned
        out: list[DetokenizeResult] = []
        for ref in refs:
            if ref.names is None:
                out.append(DetokenizeResult(token=ref.token, field=ref.field, error=ref.error))
                continue
            subject_id, field = ref.names
            value_row = values.get(ref.names)
            if value_row is None:
                error: ItemError = "expired" if ref.names in expired else "not_found"
                out.append(DetokenizeResult(token=ref.token, field=field, error=error))
                continue
            plaintext = self.store.decrypt(session, subject_id, value_row)
            spec = self.schema[field]
            hide = ref.token in masked
            out.append(
                DetokenizeResult(
                    token=ref.token,
                    field=field,
                    subject_id=subject_id,
                    value=spec.masked(plaintext) if hide else spec.decode(plaintext),
                    redaction="masked" if hide else "plain",
                )
            )
        return out

    def masked_view(self, subject_id: str, fields: Sequence[str] | None = None) -> SubjectView:
        """Masked values (and tokens) of the subject's fields, or of ``fields`` only."""
        with self.keyed(read_only=True) as session:
            subject = self.store.readable_subject(session, subject_id)
            tokens = self.store.token_map(session, subject.id)
            views = {
                name: FieldView(
                    category=self.schema[name].category,
                    masked=self.schema[name].masked(plaintext),
                    token=tokens.get(name),
                )
                for name, (_, plaintext) in self.store.plain_fields(
                    session, subject, fields
                ).items()
            }
            return SubjectView(
                subject.id,
                self.store.external_id(session, subject),
                subject.region,
                subject.is_minor,
                cast(SubjectStatus, subject.status),
                views,
            )

    def reveal(self, subject_id: str, fields: Sequence[str]) -> dict[str, Value]:
        """Plaintext of the named fields that are set (unknown names are an error)."""
        unknown = [name for name in fields if name not in self.schema]
        if unknown or not fields:
            errors = {str(n)[:64]: "unknown_field" for n in unknown} or {"fields": "empty"}
            raise ValidationError("invalid field list", errors)
        with self.keyed(read_only=True) as session:
            subject = self.store.readable_subject(session, subject_id)
            return {
                name: self.schema[name].decode(plaintext)
                for name, (_, plaintext) in self.store.plain_fields(
                    session, subject, fields
                ).items()
            }

    def match(self, subject_id: str, field_name: str, presented: bytes) -> bool:
        """Whether ``presented`` matches the stored biometric template (vault/biometrics.py):
        the stored value is compared here and never returned."""
        spec = self.schema.fields.get(field_name)
        if spec is None or spec.category != "biometric":
            raise ValidationError("invalid field", {"field": "not_biometric"})
        with self.keyed(read_only=True) as session:
            subject = self.store.readable_subject(session, subject_id)
            stored = self.store.plain_fields(session, subject, [field_name])
        if field_name not in stored:
            raise ValidationError("no such template", {field_name: "not_stored"})
        _, plaintext = stored[field_name]
        return matches(plaintext, presented, self.biometric_threshold)

    def lookup(self, field_name: str, value: Value) -> list[str]:
        """Active subjects whose searchable field equals ``value`` (via the blind index)."""
        if field_name not in self.schema or not self.schema[field_name].searchable:
            raise ValidationError("field is not searchable", {field_name[:64]: "not_searchable"})
        spec = self.schema[field_name]
        normalized = self.validator.prepare({field_name: value}).values[field_name]
        with translating():
            (digest,) = self.store.index.blind_index([spec.index_form(normalized)])
        with self.tx.begin(read_only=True) as session:
            return list(
                session.scalars(
                    select(BlindIndex.subject_id)
                    .join(Subject, Subject.id == BlindIndex.subject_id)
                    .where(
                        BlindIndex.field == field_name,
                        BlindIndex.digest == digest,
                        Subject.status == STATUS_ACTIVE,
                    )
                    .order_by(BlindIndex.subject_id)
                )
            )

    def export(
        self, subject_id: str, *, prior_versions: bool = False, allow_held: bool = False
    ) -> dict[str, Any]:
        """Everything held about the subject (policy §5 access right), binary as base64.
        ``prior_versions``: also the values corrections replaced while their legal floor
        runs (§4; for ``legal_compliance`` only, which the guard decides); ``allow_held``:
        a held subject too (vault/floors.py; likewise)."""
        with self.keyed(read_only=True) as session:
            subject = self.store.subject(session, subject_id, lock="share")
            if not (allow_held and subject.status == STATUS_HELD):
                self.store.require_active(subject)
            tokens = self.store.token_map(session, subject.id)
            fields: dict[str, Any] = {}
            for name, (row, plaintext) in self.store.plain_fields(session, subject).items():
                spec = self.schema[name]
                binary = spec.type == "binary"
                fields[name] = {
                    "category": spec.category,
                    "value": base64.b64encode(plaintext).decode() if binary else plaintext.decode(),
                    "encoding": "base64" if binary else "utf-8",
                    "token": tokens.get(name),
                    "created_at": iso(row.created_at),
                    "updated_at": iso(row.updated_at),
                    "retain_until": iso(row.retain_until),
                }
            out: dict[str, Any] = {
                "subject_id": subject.id,
                "external_id": self.store.external_id(session, subject),
                "region": subject.region,
                "is_minor": subject.is_minor,
                "status": subject.status,
                "created_at": iso(subject.created_at),
                "updated_at": iso(subject.updated_at),
                "fields": fields,
            }
            if prior_versions:
                out["prior_versions"] = [
                    {
                        "field": row.field,
                        "value": self._exported(row.field, plaintext),
                        "written_at": iso(row.written_at),
                        "superseded_at": iso(row.superseded_at),
                        "kept_until": iso(row.keep_until),
                    }
                    for row, plaintext in self.store.prior_versions(session, subject)
                ]
            return out

    def _exported(self, name: str, plaintext: bytes) -> str:
        binary = self.schema[name].type == "binary"
        return base64.b64encode(plaintext).decode() if binary else plaintext.decode()

    def describe_external(self, external_ids: Sequence[str]) -> dict[str, SubjectInfo]:
        """``describe`` for many external ids at once (one blind-index call, one query for
        their field names): the ones held by a subject, by external id."""
        if not external_ids:
            return {}
        with self.tx.begin(read_only=True) as session, translating():
            found = self.store.by_external_ids(session, external_ids)
            names: dict[str, list[str]] = {}
            ids = [subject.id for subject in found.values()]
            if ids:
                for sid, name in session.execute(
                    select(FieldValue.subject_id, FieldValue.field)
                    .where(FieldValue.subject_id.in_(ids))
                    .order_by(FieldValue.field)
                ).all():
                    names.setdefault(sid, []).append(name)
            return {
                ext: SubjectInfo(
                    subject.id,
                    cast(SubjectStatus, subject.status),
                    subject.is_minor,
                    names.get(subject.id, []),
                    subject.region,
                )
                for ext, subject in found.items()
            }

    def status(self, subject_id: str) -> str:
        with self.tx.begin(read_only=True) as session:
            return self.store.subject(session, subject_id).status

    def describe(
        self, subject_id: str | None = None, *, external_id: str | None = None
    ) -> SubjectInfo:
        """Status, minor flag and field names of a subject (by id or external id); no values."""
        with self.tx.begin(read_only=True) as session, translating():
            if subject_id is not None:
                subject = self.store.subject(session, subject_id)
            else:
                found = self.store.by_external_ids(session, [str(external_id)])
                if not found:
                    raise SubjectNotFound("unknown subject")
                (subject,) = found.values()
            names = session.scalars(
                select(FieldValue.field)
                .where(FieldValue.subject_id == subject.id)
                .order_by(FieldValue.field)
            ).all()
            return SubjectInfo(
                subject.id,
                cast(SubjectStatus, subject.status),
                subject.is_minor,
                list(names),
                subject.region,
            )

    def resolve_tokens(
        self, tokens: Sequence[str], session: Session | None = None, *, share_lock: bool = False
    ) -> list[TokenRef]:
        """Subject and field of each token, in input order, without decrypting anything
        (in ``session`` when the caller reads more in the same snapshot). ``share_lock``:
        a concurrent shred of these subjects waits until ``session`` ends (PostgreSQL)."""
        with self.tx.reading(session) as read:
            targets = self.store.token_targets(read, tokens, share_lock=share_lock)
        return [
            TokenRef(
                token=token,
                subject_id=row.subject_id if row is not None else None,
                field=row.field if row is not None else None,
                is_minor=row.is_minor if row is not None else False,
                error=error,
                region=row.region if row is not None else None,
            )
            for token, row, error in targets
        ]
