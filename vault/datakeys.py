"""The data-key lifecycle: which data key encrypts, how often it may, and unwrapping with a cache.

Like aws-encryption-sdk's caching materials manager, this sits in front of the
key provider and enforces usage limits itself: a data key encrypts at most
``max_encryptions`` values (a nonce budget far below AES-GCM's 2^32 bound),
then a fresh one is generated; unwraps go through the bounded cache, so a warm
read makes no key-provider call.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from keys.errors import KeyDestroyed, KeyUnavailable
from keys.provider import DataKey, SubjectKeys
from vault.cache import DataKeyCache
from vault.config import DEFAULT_MAX_DEK_ENCRYPTIONS
from vault.models import DataKeyRecord, ShredLogEntry, utcnow

_SHREDS_SINCE = select(ShredLogEntry.seq, ShredLogEntry.subject_id).where(
    ShredLogEntry.seq > bindparam("since")
)  # read at the start of every transaction that uses data keys


class DataKeyManager:
    def __init__(
        self,
        keys: SubjectKeys,
        cache: DataKeyCache | None = None,
        *,
        max_encryptions: int = DEFAULT_MAX_DEK_ENCRYPTIONS,
    ) -> None:
        self.keys = keys
        # `is None`, not `or`: an empty cache is falsy (it has __len__) but is still the caller's.
        self.cache = cache if cache is not None else DataKeyCache()
        self.max_encryptions = max_encryptions
        self._seen_shreds: int | None = None  # the shred log is read from here on

    def for_decryption(self, subject_id: str, record: DataKeyRecord) -> bytes:
        return self.cache.get(
            subject_id,
            record.id,
            lambda: self.keys.unwrap_data_key(subject_id, record.wrapped),
        )

    def first_data_key(self, subject_id: str) -> DataKey:
        """The data key of a subject being created. Its key was made moments ago, so "not
        found" here means Vault could not confirm the new key (a lagging standby, issue
        24), never that the subject was shredded: 503, with the reason, not 410."""
        try:
            return self.keys.generate_data_key(subject_id)
        except KeyDestroyed as exc:
            raise KeyUnavailable(
                "key provider unavailable: the new subject key is not visible in Vault yet"
            ) from exc

    def for_encryption(
        self,
        session: Session,
        subject_id: str,
        needed: int,
        fresh: DataKey | None = None,
        *,
        new_subject: bool = False,
    ) -> tuple[DataKeyRecord, bytes]:
        """The active data key with room for ``needed`` encryptions, counted; else a fresh one
        (``fresh`` if the caller generated it before its transaction: no Vault call inside).
        ``new_subject``: created in this transaction, so it has no data key to look for."""
        record = (
            None
            if new_subject
            else session.execute(
                select(DataKeyRecord)
                .where(DataKeyRecord.subject_id == subject_id, DataKeyRecord.active.is_(True))
                .with_for_update()
            ).scalar_one_or_none()
        )
        if record is not None and record.encryptions + needed <= self.max_encryptions:
            key = self.for_decryption(subject_id, record)
            record.encryptions = DataKeyRecord.encryptions + needed
            return record, key
        if record is not None:
            record.active = False  # nonce budget spent: rotate to a fresh data key
        fresh = fresh or (
            self.first_data_key(subject_id)
            if new_subject
            else self.keys.generate_data_key(subject_id)
        )
        record = DataKeyRecord(
            id=str(uuid.uuid4()),
            subject_id=subject_id,
            wrapped=fresh.wrapped,
            active=True,
            encryptions=needed,
            created_at=utcnow(),
        )
        if not new_subject:  # else the caller adds it once the subject's row is in
            session.add(record)
            session.flush()
        self.cache.put(subject_id, record.id, fresh.plaintext)
        return record, fresh.plaintext

    def sync(self, session: Session) -> None:
        """Evict the keys of every subject shredded (by any process) since the last sync.

        Called at the start of every transaction that uses data keys, and by the
        periodic maintenance: a shred elsewhere reaches this process's cache at
        its next request or within the maintenance interval, whichever is first.
        """
        if self._seen_shreds is None:  # nothing is cached before the first sync
            latest = session.scalar(select(func.max(ShredLogEntry.seq)))
            self._seen_shreds = int(latest or 0)
            return
        rows = session.execute(_SHREDS_SINCE, {"since": self._seen_shreds}).all()
        for seq, subject_id in rows:
            self.cache.evict_subject(subject_id)
            self._seen_shreds = max(self._seen_shreds, int(seq))

    @staticmethod
    def records(session: Session, subject_id: str) -> list[DataKeyRecord]:
        return list(
            session.scalars(select(DataKeyRecord).where(DataKeyRecord.subject_id == subject_id))
        )

    def evict_subject(self, subject_id: str) -> None:
        self.cache.evict_subject(subject_id)

    def clear(self) -> None:
        self.cache.clear()
