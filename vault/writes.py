"""The vault's writes: creating subjects, new and corrected fields, tokenizing batches, and
rotating a subject key.

Every write takes input validated once (``prepare``) and stores everything in one
database transaction, so a rejected field or an unreachable key provider leaves nothing
behind; a write whose commit failed keeps exactly the keys a committed row may need
(``_after_failed_write``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keys.bounded import in_context
from keys.provider import DataKey
from vault.errors import (
    DuplicateExternalId,
    MinorFlagConflicts,
    ServiceUnavailable,
    SubjectNotFound,
)
from vault.minors import DATE_OF_BIRTH
from vault.models import (
    STATUS_ACTIVE,
    Subject,
)
from vault.new_subjects import NewSubject, Ready
from vault.results import (
    CreatedSubject,
    PreparedWrite,
    TokenizeResult,
)
from vault.schema import Value
from vault.service_core import ServiceCore
from vault.transactions import translating


class SubjectWrites(ServiceCore):
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
