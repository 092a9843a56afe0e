"""How values, tokens and blind-index entries are stored and read back, inside a transaction.

Past 400 lines (about 465): ``FieldStore`` is the one place value rows are written and
read — current values and the prior versions a retention floor keeps — so every query
carries the same retention filter (``live_values``) and the same data-key handling;
split, a reader could miss either.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Literal, NamedTuple

from sqlalchemy import ColumnElement, bindparam, delete, or_, select
from sqlalchemy.orm import Session

from keys.errors import KeyDestroyed
from keys.provider import BlindIndexer
from vault.crypto import ciphertext_dek_id, decrypt_field, encrypt_field
from vault.datakeys import DataKeyManager
from vault.errors import (
    DecryptionError,
    SubjectDamaged,
    SubjectKeyMissing,
    SubjectNotFound,
    SubjectShredded,
)
from vault.models import (
    STATUS_ACTIVE,
    STATUS_DAMAGED,
    BlindIndex,
    DataKeyRecord,
    FieldValue,
    FieldVersion,
    IndexState,
    Subject,
    Token,
    utcnow,
)
from vault.new_subjects import (
    EXTERNAL_ID,
    NewSubject,
    Ready,
    external_id_form,
    index_forms,
    new_tokens,
    store_new,
)
from vault.results import VaultItemError
from vault.retention import live_values
from vault.schema import Schema
from vault.tokens import looks_like_token
from vault.validation import canonical_subject_id

# The hot reads, built once (issue 21: building a statement per request cost more than
# running it); the values are bound parameters.
_PREFETCH = (
    select(FieldValue, DataKeyRecord)
    .outerjoin(DataKeyRecord, DataKeyRecord.id == FieldValue.dek_id)
    .where(
        FieldValue.subject_id.in_(bindparam("p_subjects", expanding=True)),
        FieldValue.field.in_(bindparam("p_fields", expanding=True)),
        live_values(bindparam("p_now")),
    )
)
_TARGETS = (
    select(
        Token.token, Token.subject_id, Token.field, Subject.status, Subject.is_minor, Subject.region
    )
    .join(Subject, Subject.id == Token.subject_id)
    .where(Token.token.in_(bindparam("t_tokens", expanding=True)))
)
_TARGETS_SHARED = _TARGETS.with_for_update(read=True, of=Subject)  # a shred waits for the read


class TokenRow(NamedTuple):
    """What a token names, read as plain columns (no ORM objects on the hot path)."""

    subject_id: str
    field: str
    status: str
    is_minor: bool
    region: str | None


TokenTarget = tuple[str, TokenRow | None, VaultItemError | None]


def _item_error(status: str) -> VaultItemError | None:
    if status == STATUS_ACTIVE:
        return None
    return "subject_damaged" if status == STATUS_DAMAGED else "shredded"


class Version(NamedTuple):
    """A prior value as a held subject keeps it (vault/floors.py)."""

    field: str
    plaintext: bytes
    written_at: dt.datetime
    superseded_at: dt.datetime
    keep_until: dt.datetime


class FieldStore:
    def __init__(self, schema: Schema, datakeys: DataKeyManager, index: BlindIndexer) -> None:
        self.schema = schema
        self.datakeys = datakeys
        self.index = index

    # -- subjects -----------------------------------------------------------------

    @staticmethod
    def subject(
        session: Session, subject_id: str, lock: Literal["share", "update"] | None = None
    ) -> Subject:
        stmt = select(Subject).where(Subject.id == canonical_subject_id(subject_id))
        if lock == "update":
            stmt = stmt.with_for_update()
        elif lock == "share":
            stmt = stmt.with_for_update(read=True)
        subject = session.execute(stmt).scalar_one_or_none()
        if subject is None:
            raise SubjectNotFound("unknown subject")
        return subject

    @staticmethod
    def require_active(subject: Subject) -> None:
        if subject.status == STATUS_DAMAGED:
            raise SubjectDamaged(
                "subject data lost: its key is missing (see `pii-vault reconcile`)"
            )
        if subject.status != STATUS_ACTIVE:
            raise SubjectShredded(f"subject is {subject.status}")

    def readable_subject(self, session: Session, subject_id: str) -> Subject:
        """The subject, share-locked against a concurrent shred, and only if active."""
        subject = self.subject(session, subject_id, lock="share")
        self.require_active(subject)
        return subject

    @staticmethod
    def new_subject(region: str, is_minor: bool, subject_id: str) -> Subject:
        """A new active subject; its external id (if any) is written by ``store``."""
        now = utcnow()
        return Subject(
            id=subject_id,
            region=region.upper(),
            is_minor=bool(is_minor),
            status=STATUS_ACTIVE,
            created_at=now,
            updated_at=now,
        )

    def by_external_ids(
        self, session: Session, external_ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, Subject]:
        """The subjects holding these external ids, by external id (one index call for all)."""
        wanted = list(dict.fromkeys(external_ids))
        if not wanted:
            return {}
        candidates = self.candidates(session, [external_id_form(e) for e in wanted])
        owner = {d: e for e, digests in zip(wanted, candidates, strict=True) for d in digests}
        stmt = select(Subject).where(
            or_(Subject.external_id_digest.in_(list(owner)), Subject.external_id.in_(wanted))
        )
        if lock:
            stmt = stmt.with_for_update()
        found: dict[str, Subject] = {}
        for subject in session.scalars(stmt):
            key = owner.get(subject.external_id_digest or "") or subject.external_id
            if key is not None:
                found[key] = subject
        return found

    # -- values and tokens ----------------------------------------------------------

    @staticmethod
    def token_map(session: Session, subject_id: str) -> dict[str, str]:
        rows = session.scalars(select(Token).where(Token.subject_id == subject_id))
        return {t.field: t.token for t in rows}

    def store(
        self,
        session: Session,
        subject: Subject,
        values: Mapping[str, bytes],
        *,
        external_id: str | None = None,
        ready: Ready | None = None,
        new_subject: bool = False,
    ) -> dict[str, str]:
        """Encrypt and upsert values (and the external id), re-issue tokens and index entries.

        ``ready``: the data key and digests computed before the transaction (``prepare``),
        so a new subject's write transaction makes no Vault call. ``new_subject``: a subject
        not in the session yet, added here with its external id (one INSERT, no UPDATE); it
        has no values, tokens or index entries to replace, so none are looked for."""
        if new_subject:
            return self.store_new(session, [NewSubject(subject, values, external_id, ready)])[0]
        if not values and external_id is None:
            return {}
        needed = len(values) + (external_id is not None)
        fresh = ready.data_key if ready is not None else None
        record, dek = self.datakeys.for_encryption(session, subject.id, needed, fresh)
        searchable = [name for name in values if self.schema[name].searchable]
        if ready is not None:
            digests = list(ready.digests)
        else:
            digests = self.index.blind_index(self.index_forms(values, external_id))
        now = utcnow()
        sid, kid = uuid.UUID(subject.id), uuid.UUID(record.id)
        if external_id is not None:
            subject.external_id_digest = digests.pop()
            subject.external_id_ct = encrypt_field(
                dek, kid, sid, EXTERNAL_ID, external_id.encode("utf-8")
            )
        subject.updated_at = now
        if values:
            session.execute(
                delete(Token).where(Token.subject_id == subject.id, Token.field.in_(list(values)))
            )
        tokens = new_tokens(
            session, {name: (self.schema[name], plaintext) for name, plaintext in values.items()}
        )
        for name, plaintext in values.items():
            spec = self.schema[name]
            row = session.get(FieldValue, (subject.id, name))
            if row is None:
                row = FieldValue(subject_id=subject.id, field=name, created_at=now)
                row.retain_until = spec.retention.expires(now)  # from the first write only
                session.add(row)
            elif spec.floor is not None:  # a correction keeps the old value to its floor
                written = row.updated_at
                session.add(
                    FieldVersion(
                        subject_id=subject.id,
                        field=name,
                        ciphertext=row.ciphertext,
                        dek_id=row.dek_id,
                        written_at=written,
                        superseded_at=now,
                        keep_until=spec.floor.expires(written),
                    )
                )
            row.ciphertext = encrypt_field(dek, kid, sid, name, plaintext)
            row.dek_id = record.id
            row.updated_at = now
            session.add(
                Token(token=tokens[name], subject_id=subject.id, field=name, created_at=now)
            )
        for name, digest in zip(searchable, digests, strict=True):
            session.merge(BlindIndex(subject_id=subject.id, field=name, digest=digest))
        session.flush()
        return tokens

    def store_new(self, session: Session, batch: Sequence[NewSubject]) -> list[dict[str, str]]:
        """New subjects with their values, tokens and index entries: one INSERT per table."""
        return store_new(session, batch, self.schema, self.datakeys, self.index)

    def index_forms(self, values: Mapping[str, bytes], external_id: str | None) -> list[bytes]:
        """What ``store`` MACs: each searchable field's index form, then the external id."""
        return index_forms(self.schema, values, external_id)

    def external_id(self, session: Session, subject: Subject) -> str | None:
        """The subject's external id, decrypted (or from the legacy clear column)."""
        if subject.external_id_ct is None:
            return subject.external_id
        record = session.get(DataKeyRecord, str(ciphertext_dek_id(subject.external_id_ct)))
        if record is None:
            raise DecryptionError()
        dek = self.datakeys.for_decryption(subject.id, record)
        plain = decrypt_field(dek, uuid.UUID(subject.id), EXTERNAL_ID, subject.external_id_ct)
        return plain.decode("utf-8")

    def candidates(self, session: Session, forms: Sequence[bytes]) -> list[list[str]]:
        """Per form, every digest it may be stored under: the newest index-key version's,
        and while `pii-vault reindex` runs, the version being retired."""
        out = [[d] for d in self.index.blind_index(list(forms))]
        retiring = session.scalar(select(IndexState.retiring).where(IndexState.id == 1))
        if retiring is not None and forms:
            for digests, old in zip(
                out, self.index.blind_index(list(forms), version=retiring), strict=True
            ):
                digests.append(old)
        return out

    def decrypt(self, session: Session, subject_id: str, row: FieldValue | FieldVersion) -> bytes:
        record = session.get(DataKeyRecord, row.dek_id)
        if record is None:
            raise DecryptionError()
        try:
            dek = self.datakeys.for_decryption(subject_id, record)
        except KeyDestroyed as exc:
            raise SubjectKeyMissing(subject_id) from exc
        return decrypt_field(dek, uuid.UUID(subject_id), row.field, row.ciphertext)

    def unchanged(
        self, session: Session, subject: Subject, values: Mapping[str, bytes]
    ) -> tuple[dict[str, str], list[str]]:
        """Of ``values``: the tokens of those already stored with the same value, and the
        names of those stored with a different one. Fields not stored yet are in neither."""
        tokens = self.token_map(session, subject.id)
        same: dict[str, str] = {}
        changed: list[str] = []
        for name, (_, plaintext) in self.plain_fields(session, subject, list(values)).items():
            if plaintext == values[name] and name in tokens:
                same[name] = tokens[name]
            else:
                changed.append(name)
        return same, changed

    def plain_fields(
        self, session: Session, subject: Subject, names: Sequence[str] | None = None
    ) -> dict[str, tuple[FieldValue, bytes]]:
        where = [FieldValue.subject_id == subject.id]
        if names is not None:
            where.append(FieldValue.field.in_(list(names)))
        found = self._with_keys(session, *where)  # the keys stay referenced while decrypting
        return {
            row.field: (row, self.decrypt(session, subject.id, row))
            for row, _ in sorted(found, key=lambda pair: pair[0].field)
        }

    @staticmethod
    def expired_among(session: Session, pairs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (subject, field) pairs hold a value past its retention."""
        if not pairs:
            return set()
        rows = session.execute(
            select(FieldValue.subject_id, FieldValue.field).where(
                FieldValue.subject_id.in_(sorted({p for p, _ in pairs})),
                FieldValue.field.in_(sorted({f for _, f in pairs})),
                ~live_values(utcnow()),
            )
        ).all()
        return {(r[0], r[1]) for r in rows if (r[0], r[1]) in pairs}

    def keep_versions(
        self, session: Session, subject: Subject, versions: Sequence[Version]
    ) -> None:
        """Prior versions re-encrypted under ``subject``'s data key (a held subject's)."""
        if not versions:
            return
        record, dek = self.datakeys.for_encryption(session, subject.id, len(versions))
        sid, kid = uuid.UUID(subject.id), uuid.UUID(record.id)
        for v in versions:
            session.add(
                FieldVersion(
                    subject_id=subject.id,
                    field=v.field,
                    ciphertext=encrypt_field(dek, kid, sid, v.field, v.plaintext),
                    dek_id=record.id,
                    written_at=v.written_at,
                    superseded_at=v.superseded_at,
                    keep_until=v.keep_until,
                )
            )

    def prior_versions(
        self, session: Session, subject: Subject
    ) -> list[tuple[FieldVersion, bytes]]:
        """Values replaced while under their legal floor, oldest first, decrypted (for
        ``legal_compliance`` only: the caller decides)."""
        rows = session.scalars(
            select(FieldVersion)
            .where(FieldVersion.subject_id == subject.id, FieldVersion.keep_until > utcnow())
            .order_by(FieldVersion.field, FieldVersion.id)
        ).all()
        return [(row, self.decrypt(session, subject.id, row)) for row in rows]

    def prefetch(
        self, session: Session, pairs: Collection[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], FieldValue], list[DataKeyRecord | None]]:
        """The values of (subject, field) pairs and their data-key records, in one query
        (not two per item). Callers keep the records: the session's identity map holds
        them only weakly, and ``decrypt`` finds them there while they are referenced."""
        if not pairs:
            return {}, []
        found = [
            (value, record)
            for value, record in session.execute(
                _PREFETCH,
                {
                    "p_subjects": sorted({s for s, _ in pairs}),
                    "p_fields": sorted({f for _, f in pairs}),
                    "p_now": utcnow(),
                },
            )
        ]
        values = {(v.subject_id, v.field): v for v, _ in found if (v.subject_id, v.field) in pairs}
        return values, [k for _, k in found]

    @staticmethod
    def _with_keys(
        session: Session, *where: ColumnElement[bool]
    ) -> list[tuple[FieldValue, DataKeyRecord | None]]:
        """Values with their data-key records in one query. An outer join: a value whose
        record is missing still comes back, and ``decrypt`` reports it as undecryptable.
        A value past its retention is never among them (policy §4): no read returns it,
        whether or not the purge has run yet."""
        rows = session.execute(
            select(FieldValue, DataKeyRecord)
            .outerjoin(DataKeyRecord, DataKeyRecord.id == FieldValue.dek_id)
            .where(*where, live_values(utcnow()))
        ).all()
        return [(value, record) for value, record in rows]

    @staticmethod
    def token_targets(
        session: Session, tokens: Sequence[str], *, share_lock: bool
    ) -> list[TokenTarget]:
        """Per token: what it names, with its subject's status, or why nothing (invalid,
        not_found, shredded, subject_damaged)."""
        wanted = list(
            dict.fromkeys(t for t in tokens if isinstance(t, str) and looks_like_token(t))
        )
        rows: dict[str, TokenRow] = {}
        if wanted:
            stmt = _TARGETS_SHARED if share_lock else _TARGETS
            rows = {
                r.token: TokenRow(r.subject_id, r.field, r.status, bool(r.is_minor), r.region)
                for r in session.execute(stmt, {"t_tokens": wanted})
            }
        out: list[TokenTarget] = []
        for token in tokens:
            if not isinstance(token, str) or not looks_like_token(token):
                out.append((str(token)[:64], None, "invalid"))
                continue
            row = rows.get(token)
            if row is None:
                out.append((token, None, "not_found"))
                continue
            out.append((token, row, _item_error(row.status)))
        return out
