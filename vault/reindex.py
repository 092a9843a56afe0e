"""Re-key the blind index, so digests in old copies of the database stop identifying anyone.

A blind-index digest is a deterministic MAC: whoever can still compute the MAC
under the same key version can confirm a guess against a digest found in a
backup — including the guesses about a subject who has since been shredded.
``reindex`` rotates the index key, recomputes every live digest (searchable
fields and external ids of active subjects) under the new version, then
retires every older version (Vault: minimum versions raised and the old ones
trimmed, i.e. deleted). After it, no one — the service token included — can
compute a digest of the old versions, so a backup's digests are inert.

Run it with a privileged Vault token (the service's may not rotate or trim),
from cron after shreds, e.g. daily: the time between a shred and the next
reindex is the window in which a pre-shred backup's digests can be confirmed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from keys.provider import IndexKeyAdmin
from vault.crypto import encrypt_field
from vault.models import STATUS_ACTIVE, BlindIndex, IndexState, Subject
from vault.new_subjects import EXTERNAL_ID, external_id_form
from vault.service import VaultService
from vault.transactions import translating


@dataclass(frozen=True)
class ReindexReport:
    version: int  # the index-key version every live digest is now under
    subjects: int
    digests: int


def reindex(vault: VaultService, admin: IndexKeyAdmin) -> ReindexReport:
    with translating():
        version = admin.rotate_index_key()
    with vault.tx.begin() as session:  # lookups try the retiring version meanwhile
        session.execute(update(IndexState).where(IndexState.id == 1).values(retiring=version - 1))
    with vault.tx.begin(read_only=True) as session:
        ids = list(session.scalars(select(Subject.id).where(Subject.status == STATUS_ACTIVE)))
    digests = subjects = 0
    for subject_id in ids:
        with vault.keyed() as session:  # the subject row is locked: writes wait
            subject = vault.store.subject(session, subject_id, lock="update")
            if subject.status != STATUS_ACTIVE:
                continue
            searchable = [n for n, spec in vault.schema.fields.items() if spec.searchable]
            plain = vault.store.plain_fields(session, subject, searchable)
            external = vault.store.external_id(session, subject)
            forms = [vault.schema[name].index_form(value) for name, (_, value) in plain.items()]
            if external is not None:
                forms.append(external_id_form(external))
            new = vault.store.index.blind_index(forms, version=version) if forms else []
            if external is not None:
                subject.external_id_digest = new.pop()
                if subject.external_id_ct is None:  # a legacy clear-text row: encrypt it now
                    record, dek = vault.datakeys.for_encryption(session, subject.id, 1)
                    subject.external_id_ct = encrypt_field(
                        dek,
                        uuid.UUID(record.id),
                        uuid.UUID(subject.id),
                        EXTERNAL_ID,
                        external.encode("utf-8"),
                    )
                    subject.external_id = None
            for name, digest in zip(plain, new, strict=True):
                session.merge(BlindIndex(subject_id=subject.id, field=name, digest=digest))
            digests += len(forms)
            subjects += 1
    with vault.tx.begin() as session:  # nothing of a non-active subject stays indexed
        inactive = select(Subject.id).where(Subject.status != STATUS_ACTIVE)
        session.execute(delete(BlindIndex).where(BlindIndex.subject_id.in_(inactive)))
    with translating():
        admin.retire_index_keys_before(version)
    with vault.tx.begin() as session:
        session.execute(update(IndexState).where(IndexState.id == 1).values(retiring=None))
    vault.tx.compact()
    return ReindexReport(version, subjects, digests)
