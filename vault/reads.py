"""The vault's reads: tokens, masked views, reveals, matches, lookups, exports.

Every read checks, inside its transaction, that the subject is still ``active``; on
PostgreSQL it holds a share lock on the subject row while decrypting, so a shred's
``shredding`` mark waits for in-flight reads and no read starts after it."""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.biometrics import matches
from vault.errors import (
    SubjectNotFound,
    ValidationError,
)
from vault.models import (
    STATUS_ACTIVE,
    STATUS_HELD,
    BlindIndex,
    FieldValue,
    Subject,
    iso,
)
from vault.results import (
    DetokenizeResult,
    FieldView,
    ItemError,
    SubjectInfo,
    SubjectStatus,
    SubjectView,
    TokenRef,
)
from vault.schema import Value
from vault.service_core import ServiceCore
from vault.transactions import translating


class SubjectReads(ServiceCore):
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
