"""The vault service: subjects, encrypted fields, tokens, lookup, export and crypto-shredding.

Every write validates all input first and then stores everything in one
database transaction, so a rejected field or an unreachable key provider
leaves nothing behind. Every read checks, inside its transaction, that the
subject is still ``active``; on PostgreSQL it holds a share lock on the subject
row while decrypting, so a shred's ``shredding`` mark waits for in-flight reads
and no read starts after it. Key-provider and database errors are translated
here into ``vault.errors``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keys.errors import (
    KeyDestroyed,
    KeyProviderConfigError,
    KeyProviderError,
    KeyUnavailable,
    UnwrapFailed,
)
from keys.provider import KeyProvider
from vault.cache import DataKeyCache
from vault.config import DEFAULT_MAX_DEK_ENCRYPTIONS, Settings
from vault.crypto import decrypt_field, encrypt_field
from vault.db import READ_ONLY
from vault.errors import (
    ConfigError,
    DatabaseUnavailable,
    DecryptionError,
    DuplicateExternalId,
    KeyProviderUnavailable,
    ShredPending,
    SubjectNotFound,
    SubjectShredded,
    ValidationError,
)
from vault.models import (
    STATUS_ACTIVE,
    STATUS_SHREDDED,
    STATUS_SHREDDING,
    BlindIndex,
    DataKeyRecord,
    FieldValue,
    Subject,
    Token,
    utcnow,
)
from vault.receipts import DeletionReceipt, receipt_payload
from vault.schema import FieldSpec, FieldValueError, Schema, Value
from vault.tokens import card_token, looks_like_token, random_token

_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
_REGION = re.compile(r"^[A-Za-z0-9-]{2,16}$")
ErrorCode = Literal["not_found", "shredded", "invalid"]


# -- results ---------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedSubject:
    subject_id: str
    tokens: dict[str, str]


@dataclass(frozen=True)
class TokenizeRecord:
    fields: Mapping[str, Value] = dc_field(repr=False)
    subject_id: str | None = None
    external_id: str | None = None
    region: str | None = None
    is_minor: bool = False


@dataclass(frozen=True)
class TokenizeResult:
    subject_id: str | None = None
    tokens: dict[str, str] | None = None
    error: str | None = None
    errors: dict[str, str] | None = None


@dataclass(frozen=True)
class DetokenizeResult:
    token: str
    field: str | None = None
    subject_id: str | None = None
    value: Value | None = dc_field(default=None, repr=False)
    error: str | None = None
    redaction: str | None = None  # "plain" or "masked" when a value is returned


@dataclass(frozen=True)
class TokenRef:
    """What a token points at, without decrypting anything (for access decisions)."""

    token: str
    subject_id: str | None = None
    field: str | None = None
    is_minor: bool = False
    error: ErrorCode | None = None


@dataclass(frozen=True)
class SubjectInfo:
    """Facts about a subject that access decisions need; no values."""

    subject_id: str
    external_id: str | None
    status: str
    is_minor: bool
    fields: list[str]


@dataclass(frozen=True)
class FieldView:
    category: str
    masked: str
    token: str | None


@dataclass(frozen=True)
class SubjectView:
    subject_id: str
    external_id: str | None
    region: str | None
    is_minor: bool
    status: str
    fields: dict[str, FieldView]


@dataclass(frozen=True)
class PendingShreds:
    completed: list[DeletionReceipt]
    pending: list[str]


def _iso(ts: dt.datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # SQLite returns naive datetimes; they were stored as UTC
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _canonical_subject_id(subject_id: str) -> str:
    try:
        return str(uuid.UUID(str(subject_id)))
    except ValueError:
        raise SubjectNotFound("unknown subject") from None


class VaultService:
    """The domain API. Thread-safe; one instance per process."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyProvider,
        schema: Schema | None = None,
        *,
        cache: DataKeyCache | None = None,
        max_dek_encryptions: int = DEFAULT_MAX_DEK_ENCRYPTIONS,
        default_region: str = "CN",
    ) -> None:
        self.engine = engine
        self.keys = keys
        # `is None`, not `or`: an empty cache is falsy (it has __len__) but is still the caller's.
        self.schema = schema if schema is not None else Schema.load()
        self.cache = cache if cache is not None else DataKeyCache()
        self.max_dek_encryptions = max_dek_encryptions
        self.default_region = default_region
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Called with the subject id whenever a shred completes (now, on retry, or pending),
        # so data kept outside these tables (e.g. consents) goes with it.
        self.shred_listeners: list[Callable[[str], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = False) -> VaultService:
        from keys.factory import build_key_provider
        from vault.db import make_engine
        from vault.db import migrate as run_migrations

        settings.home.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.effective_database_url)
        if migrate:
            run_migrations(engine)
        try:
            provider = build_key_provider(settings.keys)
        except KeyProviderConfigError as exc:
            raise ConfigError(str(exc)) from exc
        except KeyUnavailable as exc:
            raise KeyProviderUnavailable(str(exc)) from exc
        return cls(
            engine,
            provider,
            cache=DataKeyCache(settings.dek_cache_size, settings.dek_cache_ttl),
            max_dek_encryptions=settings.max_dek_encryptions,
            default_region=settings.default_region,
        )

    def close(self) -> None:
        self.cache.clear()
        self.keys.close()
        self.engine.dispose()

    # -- error translation and transactions ------------------------------------

    @contextlib.contextmanager
    def _translating(self) -> Iterator[None]:
        try:
            yield
        except KeyUnavailable as exc:
            raise KeyProviderUnavailable(str(exc)) from exc
        except KeyDestroyed as exc:
            raise SubjectShredded("subject key destroyed: the subject is shredded") from exc
        except UnwrapFailed as exc:
            raise DecryptionError() from exc
        except KeyProviderConfigError as exc:
            raise KeyProviderUnavailable(f"key provider misconfigured: {exc}") from exc
        except KeyProviderError as exc:
            raise KeyProviderUnavailable(f"key provider error: {exc}") from exc
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise DatabaseUnavailable("database unavailable") from exc

    @contextlib.contextmanager
    def _tx(self, *, read_only: bool = False) -> Iterator[Session]:
        with self._translating(), self._sessions.begin() as session:
            if read_only:
                session.connection(execution_options=READ_ONLY)
            yield session

    def check(self) -> None:
        """Readiness: raise ServiceUnavailable unless the database and key provider answer."""
        self.check_database()
        self.check_key_provider()

    def check_database(self) -> None:
        with self._tx(read_only=True) as session:
            session.execute(select(1))

    def check_key_provider(self) -> None:
        with self._translating():
            self.keys.check()

    # -- helpers ------------------------------------------------------------------

    def _subject(
        self, session: Session, subject_id: str, lock: Literal["share", "update"] | None = None
    ) -> Subject:
        stmt = select(Subject).where(Subject.id == _canonical_subject_id(subject_id))
        if lock == "update":
            stmt = stmt.with_for_update()
        elif lock == "share":
            stmt = stmt.with_for_update(read=True)
        subject = session.execute(stmt).scalar_one_or_none()
        if subject is None:
            raise SubjectNotFound("unknown subject")
        return subject

    @staticmethod
    def _require_active(subject: Subject) -> None:
        if subject.status != STATUS_ACTIVE:
            raise SubjectShredded(f"subject is {subject.status}")

    def _readable_subject(self, session: Session, subject_id: str) -> Subject:
        """The subject, share-locked against a concurrent shred, and only if active."""
        subject = self._subject(session, subject_id, lock="share")
        self._require_active(subject)
        return subject

    @staticmethod
    def _token_map(session: Session, subject_id: str) -> dict[str, str]:
        rows = session.scalars(select(Token).where(Token.subject_id == subject_id))
        return {t.field: t.token for t in rows}

    def _normalize(self, fields: Mapping[str, Value], *, allow_empty: bool) -> dict[str, bytes]:
        if not isinstance(fields, Mapping):
            raise ValidationError("fields must be an object", {"fields": "not_an_object"})
        if not fields and not allow_empty:
            raise ValidationError("no fields given", {"fields": "empty"})
        errors: dict[str, str] = {}
        values: dict[str, bytes] = {}
        for name, value in fields.items():
            if name not in self.schema:
                errors[str(name)[:64]] = "unknown_field"
                continue
            try:
                values[name] = self.schema[name].normalize(value)
            except FieldValueError as exc:
                errors[name] = exc.reason
        if errors:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
            raise ValidationError(f"invalid fields ({detail}); nothing was stored", errors)
        return values

    @staticmethod
    def _check_subject_attrs(external_id: str | None, region: str | None) -> None:
        errors = {}
        if external_id is not None and not _EXTERNAL_ID.match(str(external_id)):
            errors["external_id"] = "invalid_format"
        if region is not None and not _REGION.match(str(region)):
            errors["region"] = "invalid_format"
        if errors:
            raise ValidationError("invalid subject attributes; nothing was stored", errors)

    def _data_key(self, subject_id: str, record: DataKeyRecord) -> bytes:
        return self.cache.get(
            subject_id, record.id, lambda: self.keys.unwrap_data_key(subject_id, record.wrapped)
        )

    def _active_data_key(
        self, session: Session, subject: Subject, needed: int
    ) -> tuple[DataKeyRecord, bytes]:
        record = session.execute(
            select(DataKeyRecord)
            .where(DataKeyRecord.subject_id == subject.id, DataKeyRecord.active.is_(True))
            .with_for_update()
        ).scalar_one_or_none()
        if record is not None and record.encryptions + needed <= self.max_dek_encryptions:
            return record, self._data_key(subject.id, record)
        if record is not None:
            record.active = False  # nonce budget spent: rotate to a fresh data key
        fresh = self.keys.generate_data_key(subject.id)
        record = DataKeyRecord(
            id=str(uuid.uuid4()),
            subject_id=subject.id,
            wrapped=fresh.wrapped,
            active=True,
            encryptions=0,
            created_at=utcnow(),
        )
        session.add(record)
        session.flush()
        self.cache.put(subject.id, record.id, fresh.plaintext)
        return record, fresh.plaintext

    def _new_token(self, session: Session, spec: FieldSpec, plaintext: bytes) -> str:
        for _ in range(16):
            token = card_token(plaintext.decode()) if spec.token == "card" else random_token()
            if session.get(Token, token) is None:
                return token
        raise KeyProviderError("could not find a free token")  # pragma: no cover

    def _store(
        self, session: Session, subject: Subject, values: Mapping[str, bytes]
    ) -> dict[str, str]:
        """Encrypt and upsert values, re-issue their tokens and index entries."""
        if not values:
            return {}
        record, dek = self._active_data_key(session, subject, len(values))
        searchable = [name for name in values if self.schema[name].searchable]
        digests = self.keys.blind_index(
            [self.schema[name].index_form(values[name]) for name in searchable]
        )
        now = utcnow()
        sid, kid = uuid.UUID(subject.id), uuid.UUID(record.id)
        tokens: dict[str, str] = {}
        for name, plaintext in values.items():
            spec = self.schema[name]
            ciphertext = encrypt_field(dek, kid, sid, name, plaintext)
            row = session.get(FieldValue, (subject.id, name))
            if row is None:
                row = FieldValue(subject_id=subject.id, field=name, created_at=now)
                session.add(row)
            row.ciphertext = ciphertext
            row.dek_id = record.id
            row.updated_at = now
            row.retain_until = spec.retention.expires(now)
            session.execute(
                delete(Token).where(Token.subject_id == subject.id, Token.field == name)
            )
            token = self._new_token(session, spec, plaintext)
            session.add(Token(token=token, subject_id=subject.id, field=name, created_at=now))
            tokens[name] = token
        for name, digest in zip(searchable, digests, strict=True):
            session.merge(BlindIndex(subject_id=subject.id, field=name, digest=digest))
        record.encryptions = DataKeyRecord.encryptions + len(values)
        subject.updated_at = now
        session.flush()
        return tokens

    def _decrypt(self, session: Session, subject_id: str, row: FieldValue) -> bytes:
        record = session.get(DataKeyRecord, row.dek_id)
        if record is None:
            raise DecryptionError()
        dek = self._data_key(subject_id, record)
        return decrypt_field(dek, uuid.UUID(subject_id), row.field, row.ciphertext)

    def _discard_key(self, subject_id: str) -> None:
        """Best effort: a key created for a write that did not commit protects nothing."""
        with contextlib.suppress(KeyProviderError):
            self.keys.destroy_subject_key(subject_id)

    def _new_subject(self, external_id: str | None, region: str | None, is_minor: bool) -> Subject:
        now = utcnow()
        return Subject(
            id=str(uuid.uuid4()),
            external_id=external_id,
            region=(region or self.default_region).upper(),
            is_minor=bool(is_minor),
            status=STATUS_ACTIVE,
            created_at=now,
            updated_at=now,
        )

    # -- writes -------------------------------------------------------------------

    def validate(
        self,
        fields: Mapping[str, Value],
        *,
        external_id: str | None = None,
        region: str | None = None,
        allow_empty: bool = True,
    ) -> None:
        """Raise ValidationError exactly as a write would, without touching keys or storage."""
        self._normalize(fields, allow_empty=allow_empty)
        self._check_subject_attrs(external_id, region)

    def create_subject(
        self,
        fields: Mapping[str, Value] | None = None,
        *,
        external_id: str | None = None,
        region: str | None = None,
        is_minor: bool = False,
        subject_id: str | None = None,
    ) -> CreatedSubject:
        """Create a subject (with its own key in the provider) and store its fields atomically.

        ``subject_id`` lets a caller name the new subject up front (e.g. to audit it first).
        """
        values = self._normalize(fields or {}, allow_empty=True)
        self._check_subject_attrs(external_id, region)
        if external_id is not None:
            with self._tx() as session:
                if session.scalar(select(Subject.id).where(Subject.external_id == external_id)):
                    raise DuplicateExternalId("external_id already exists")
        subject = self._new_subject(external_id, region, is_minor)
        if subject_id is not None:
            subject.id = _canonical_subject_id(subject_id)
        with self._translating():
            self.keys.create_subject_key(subject.id)
        try:
            with self._tx() as session:
                session.add(subject)
                session.flush()
                tokens = self._store(session, subject, values)
        except IntegrityError as exc:
            self._discard_key(subject.id)
            raise DuplicateExternalId("external_id already exists") from exc
        except BaseException:
            self._discard_key(subject.id)
            raise
        return CreatedSubject(subject.id, tokens)

    def put_fields(self, subject_id: str, fields: Mapping[str, Value]) -> dict[str, str]:
        """Add or correct fields; each gets a new token (the old one stops resolving)."""
        values = self._normalize(fields, allow_empty=False)
        with self._tx() as session:
            subject = self._subject(session, subject_id, lock="update")
            self._require_active(subject)
            return self._store(session, subject, values)

    def tokenize(self, records: Sequence[TokenizeRecord]) -> list[TokenizeResult]:
        """Batch write, one transaction: per-item results in input order.

        Items with invalid input, unknown or shredded subjects are answered with an
        error and skipped; the rest commit together. If the key provider or the
        database fails, nothing of the batch is stored and the error is raised.
        """
        results: list[TokenizeResult | None] = [None] * len(records)
        prepared: list[tuple[int, TokenizeRecord, dict[str, bytes]]] = []
        for i, record in enumerate(records):
            try:
                values = self._normalize(record.fields, allow_empty=False)
                self._check_subject_attrs(record.external_id, record.region)
                if record.subject_id is None and record.external_id is None:
                    raise ValidationError(
                        "need subject_id or external_id", {"record": "no_subject"}
                    )
                if record.subject_id is not None:
                    _canonical_subject_id(record.subject_id)
            except ValidationError as exc:
                results[i] = TokenizeResult(error="invalid", errors=exc.errors)
                continue
            except SubjectNotFound:
                results[i] = TokenizeResult(error="not_found")
                continue
            prepared.append((i, record, values))

        created: list[str] = []
        try:
            with self._tx() as session:
                by_external: dict[str, Subject] = {}
                for i, record, values in prepared:
                    subject: Subject | None
                    if record.subject_id is not None:
                        try:
                            subject = self._subject(session, record.subject_id, lock="update")
                        except SubjectNotFound:
                            results[i] = TokenizeResult(error="not_found")
                            continue
                    else:
                        ext = str(record.external_id)
                        subject = (
                            by_external.get(ext)
                            or session.execute(
                                select(Subject).where(Subject.external_id == ext).with_for_update()
                            ).scalar_one_or_none()
                        )
                        if subject is None:
                            subject = self._new_subject(ext, record.region, record.is_minor)
                            self.keys.create_subject_key(subject.id)
                            created.append(subject.id)
                            session.add(subject)
                            session.flush()
                        by_external[ext] = subject
                    if subject.status != STATUS_ACTIVE:
                        results[i] = TokenizeResult(subject_id=subject.id, error="shredded")
                        continue
                    tokens = self._store(session, subject, values)
                    results[i] = TokenizeResult(subject_id=subject.id, tokens=tokens)
        except IntegrityError as exc:
            for subject_id in created:
                self._discard_key(subject_id)
            raise DuplicateExternalId("external_id was created concurrently; retry") from exc
        except BaseException:
            for subject_id in created:
                self._discard_key(subject_id)
            raise
        return [r if r is not None else TokenizeResult(error="invalid") for r in results]

    # -- reads --------------------------------------------------------------------

    def detokenize(
        self, tokens: Sequence[str], *, masked: Collection[str] = ()
    ) -> list[DetokenizeResult]:
        """Per token, in input order: the current value (masked for tokens in ``masked``)."""
        with self._tx(read_only=True) as session:
            out: list[DetokenizeResult] = []
            for token, row, _, error in self._token_targets(session, tokens, share_lock=True):
                if error is not None or row is None:
                    field = row.field if row is not None else None
                    out.append(DetokenizeResult(token=token, field=field, error=error))
                    continue
                value_row = session.get(FieldValue, (row.subject_id, row.field))
                if value_row is None:
                    out.append(DetokenizeResult(token=token, field=row.field, error="not_found"))
                    continue
                plaintext = self._decrypt(session, row.subject_id, value_row)
                spec = self.schema[row.field]
                hide = token in masked
                out.append(
                    DetokenizeResult(
                        token=token,
                        field=row.field,
                        subject_id=row.subject_id,
                        value=spec.masked(plaintext) if hide else spec.decode(plaintext),
                        redaction="masked" if hide else "plain",
                    )
                )
            return out

    def _plain_fields(
        self, session: Session, subject: Subject, names: Sequence[str] | None = None
    ) -> dict[str, tuple[FieldValue, bytes]]:
        stmt = select(FieldValue).where(FieldValue.subject_id == subject.id)
        if names is not None:
            stmt = stmt.where(FieldValue.field.in_(list(names)))
        rows = session.scalars(stmt.order_by(FieldValue.field)).all()
        return {row.field: (row, self._decrypt(session, subject.id, row)) for row in rows}

    def masked_view(self, subject_id: str, fields: Sequence[str] | None = None) -> SubjectView:
        """Masked values (and tokens) of the subject's fields, or of ``fields`` only."""
        with self._tx(read_only=True) as session:
            subject = self._readable_subject(session, subject_id)
            tokens = self._token_map(session, subject.id)
            views = {
                name: FieldView(
                    category=self.schema[name].category,
                    masked=self.schema[name].masked(plaintext),
                    token=tokens.get(name),
                )
                for name, (_, plaintext) in self._plain_fields(session, subject, fields).items()
            }
            return SubjectView(
                subject.id,
                subject.external_id,
                subject.region,
                subject.is_minor,
                subject.status,
                views,
            )

    def reveal(self, subject_id: str, fields: Sequence[str]) -> dict[str, Value]:
        """Plaintext of the named fields that are set (unknown names are an error)."""
        unknown = [name for name in fields if name not in self.schema]
        if unknown or not fields:
            errors = {str(n)[:64]: "unknown_field" for n in unknown} or {"fields": "empty"}
            raise ValidationError("invalid field list", errors)
        with self._tx(read_only=True) as session:
            subject = self._readable_subject(session, subject_id)
            return {
                name: self.schema[name].decode(plaintext)
                for name, (_, plaintext) in self._plain_fields(session, subject, fields).items()
            }

    def lookup(self, field_name: str, value: Value) -> list[str]:
        """Active subjects whose searchable field equals ``value`` (via the blind index)."""
        if field_name not in self.schema or not self.schema[field_name].searchable:
            raise ValidationError("field is not searchable", {field_name[:64]: "not_searchable"})
        spec = self.schema[field_name]
        try:
            normalized = spec.normalize(value)
        except FieldValueError as exc:
            raise ValidationError("invalid lookup value", {field_name: exc.reason}) from exc
        with self._translating():
            (digest,) = self.keys.blind_index([spec.index_form(normalized)])
        with self._tx(read_only=True) as session:
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

    def export(self, subject_id: str) -> dict[str, Any]:
        """Everything held about the subject (policy §5 access right), binary as base64."""
        with self._tx(read_only=True) as session:
            subject = self._readable_subject(session, subject_id)
            tokens = self._token_map(session, subject.id)
            fields: dict[str, Any] = {}
            for name, (row, plaintext) in self._plain_fields(session, subject).items():
                spec = self.schema[name]
                fields[name] = {
                    "category": spec.category,
                    "value": base64.b64encode(plaintext).decode()
                    if spec.type == "binary"
                    else plaintext.decode(),
                    "encoding": "base64" if spec.type == "binary" else "utf-8",
                    "token": tokens.get(name),
                    "created_at": _iso(row.created_at),
                    "updated_at": _iso(row.updated_at),
                    "retain_until": _iso(row.retain_until),
                }
            return {
                "subject_id": subject.id,
                "external_id": subject.external_id,
                "region": subject.region,
                "is_minor": subject.is_minor,
                "status": subject.status,
                "created_at": _iso(subject.created_at),
                "updated_at": _iso(subject.updated_at),
                "fields": fields,
            }

    def status(self, subject_id: str) -> str:
        with self._tx(read_only=True) as session:
            return self._subject(session, subject_id).status

    def describe(
        self, subject_id: str | None = None, *, external_id: str | None = None
    ) -> SubjectInfo:
        """Status, minor flag and field names of a subject (by id or external id); no values."""
        with self._tx(read_only=True) as session:
            if subject_id is not None:
                subject = self._subject(session, subject_id)
            else:
                found = session.scalar(select(Subject).where(Subject.external_id == external_id))
                if found is None:
                    raise SubjectNotFound("unknown subject")
                subject = found
            names = session.scalars(
                select(FieldValue.field)
                .where(FieldValue.subject_id == subject.id)
                .order_by(FieldValue.field)
            ).all()
            return SubjectInfo(
                subject.id, subject.external_id, subject.status, subject.is_minor, list(names)
            )

    def resolve_tokens(self, tokens: Sequence[str]) -> list[TokenRef]:
        """Subject and field of each token, in input order, without decrypting anything."""
        with self._tx(read_only=True) as session:
            targets = self._token_targets(session, tokens, share_lock=False)
        return [
            TokenRef(
                token=token,
                subject_id=row.subject_id if row is not None else None,
                field=row.field if row is not None else None,
                is_minor=bool(subject.is_minor) if subject is not None else False,
                error=error,
            )
            for token, row, subject, error in targets
        ]

    def _token_targets(
        self, session: Session, tokens: Sequence[str], *, share_lock: bool
    ) -> list[tuple[str, Token | None, Subject | None, ErrorCode | None]]:
        """Per token: its row and subject, or why there is none (invalid, not_found, shredded)."""
        wanted = list(
            dict.fromkeys(t for t in tokens if isinstance(t, str) and looks_like_token(t))
        )
        rows = (
            {r.token: r for r in session.scalars(select(Token).where(Token.token.in_(wanted)))}
            if wanted
            else {}
        )
        ids = sorted({r.subject_id for r in rows.values()})
        stmt = select(Subject).where(Subject.id.in_(ids))
        if share_lock:  # a concurrent shred waits until this read is done
            stmt = stmt.with_for_update(read=True)
        subjects = {x.id: x for x in session.scalars(stmt)} if ids else {}
        out: list[tuple[str, Token | None, Subject | None, ErrorCode | None]] = []
        for token in tokens:
            if not isinstance(token, str) or not looks_like_token(token):
                out.append((str(token)[:64], None, None, "invalid"))
                continue
            row = rows.get(token)
            if row is None:
                out.append((token, None, None, "not_found"))
                continue
            subject = subjects[row.subject_id]
            out.append(
                (token, row, subject, None if subject.status == STATUS_ACTIVE else "shredded")
            )
        return out

    # -- keys -----------------------------------------------------------------

    def rotate_subject_key(self, subject_id: str) -> None:
        """New subject-key version; every wrapped data key is re-wrapped under it.

        The active data key is retired too, so new writes use a data key born
        under the new version. Existing ciphertext stays readable.
        """
        with self._tx() as session:
            subject = self._subject(session, subject_id, lock="update")
            self._require_active(subject)
            records = list(
                session.scalars(select(DataKeyRecord).where(DataKeyRecord.subject_id == subject.id))
            )
            self.keys.rotate_subject_key(subject.id)
            rewrapped = self.keys.rewrap_data_keys(subject.id, [r.wrapped for r in records])
            for record, wrapped in zip(records, rewrapped, strict=True):
                record.wrapped = wrapped
                record.active = False

    # -- crypto-shredding ---------------------------------------------------------

    def shred(self, subject_id: str) -> DeletionReceipt:
        """Crypto-shred a subject (DESIGN.md protocol). Idempotent: a repeat returns the receipt.

        1. mark ``shredding`` and commit: from now on no read returns plaintext;
        2. hard-delete the subject key in the provider (ShredPending if unreachable);
        3. delete ciphertext, wrapped keys, tokens and index entries; keep a tombstone;
        4. return a signed receipt.
        """
        with self._tx() as session:
            subject = self._subject(session, subject_id, lock="update")
            if subject.status == STATUS_ACTIVE:
                subject.status = STATUS_SHREDDING
                subject.shred_requested_at = utcnow()
            status, sid = subject.status, subject.id
        self.cache.evict_subject(sid)
        if status == STATUS_SHREDDED:
            self._notify_shredded(sid)  # a retry also finishes what a failed listener left
            with self._tx() as session:
                return self._receipt(self._subject(session, sid))
        return self._finish_shred(sid)

    def _notify_shredded(self, subject_id: str) -> None:
        for listener in self.shred_listeners:
            listener(subject_id)

    def _finish_shred(self, subject_id: str) -> DeletionReceipt:
        try:
            with self._translating():
                self.keys.destroy_subject_key(subject_id)
        except KeyProviderUnavailable as exc:
            raise ShredPending(
                f"subject {subject_id} is marked shredding and blocked, but the key provider is "
                "unavailable; the shred completes on retry or with `pii-vault shred --pending`"
            ) from exc
        with self._tx() as session:
            subject = self._subject(session, subject_id, lock="update")
            for model in (BlindIndex, Token, FieldValue, DataKeyRecord):
                session.execute(delete(model).where(model.subject_id == subject_id))
            subject.status = STATUS_SHREDDED
            subject.shredded_at = utcnow()
            subject.external_id = None
            subject.region = None
            subject.is_minor = False
            subject.updated_at = subject.shredded_at
        self.cache.evict_subject(subject_id)
        self._notify_shredded(subject_id)
        return self._receipt(subject)

    def _receipt(self, subject: Subject) -> DeletionReceipt:
        requested, shredded = _iso(subject.shred_requested_at), _iso(subject.shredded_at)
        if requested is None or shredded is None:
            raise SubjectShredded("subject is not shredded")
        payload = receipt_payload(subject.id, requested, shredded, self.keys.name)
        with self._translating():
            signature = self.keys.sign(payload)
            public_key = self.keys.signing_public_key()
        return DeletionReceipt(
            subject_id=subject.id,
            requested_at=requested,
            shredded_at=shredded,
            key_provider=self.keys.name,
            signature=base64.b64encode(signature).decode(),
            public_key=base64.b64encode(public_key).decode(),
        )

    def pending_shreds(self) -> list[str]:
        with self._tx(read_only=True) as session:
            return list(
                session.scalars(
                    select(Subject.id)
                    .where(Subject.status == STATUS_SHREDDING)
                    .order_by(Subject.shred_requested_at)
                )
            )

    def complete_pending_shreds(self) -> PendingShreds:
        """Finish every shred left in ``shredding`` (e.g. Vault was down). Safe to run any time."""
        completed: list[DeletionReceipt] = []
        pending: list[str] = []
        for subject_id in self.pending_shreds():
            self.cache.evict_subject(subject_id)
            try:
                completed.append(self._finish_shred(subject_id))
            except ShredPending:
                pending.append(subject_id)
        return PendingShreds(completed, pending)

    # -- retention ------------------------------------------------------------------

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Delete field values past their retention period (policy §4); returns how many."""
        now = now or utcnow()
        with self._tx() as session:
            rows = session.execute(
                select(FieldValue.subject_id, FieldValue.field).where(
                    FieldValue.retain_until.is_not(None), FieldValue.retain_until < now
                )
            ).all()
            for subject_id, name in rows:
                for model in (BlindIndex, Token, FieldValue):
                    session.execute(
                        delete(model).where(
                            model.subject_id == subject_id,
                            model.field == name,
                        )
                    )
            return len(rows)


__all__ = [
    "STATUS_ACTIVE",
    "STATUS_SHREDDED",
    "STATUS_SHREDDING",
    "CreatedSubject",
    "DetokenizeResult",
    "FieldView",
    "PendingShreds",
    "SubjectInfo",
    "SubjectView",
    "TokenRef",
    "TokenizeRecord",
    "TokenizeResult",
    "VaultService",
]
