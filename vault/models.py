"""SQLAlchemy 2 models. The database holds ciphertext, wrapped keys, tokens and MACs only."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Final

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vault.results import SubjectStatus

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUS_ACTIVE: Final[SubjectStatus] = "active"
STATUS_SHREDDING: Final[SubjectStatus] = "shredding"
STATUS_SHREDDED: Final[SubjectStatus] = "shredded"
# The subject key is gone but the subject was never shredded (found by `pii-vault
# reconcile` or by a read): its data is lost, which is reported, never passed off as erasure.
STATUS_DAMAGED: Final[SubjectStatus] = "damaged"
# Records a legal floor keeps after their subject's shred, under a key of their own
# (vault/floors.py): readable for legal_compliance only, shredded when the floor passes.
STATUS_HELD: Final[SubjectStatus] = "held"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(ts: dt.datetime) -> dt.datetime:
    """A stored time as aware UTC: SQLite hands back naive datetimes, stored as UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def iso(ts: dt.datetime | None) -> str | None:
    """UTC ISO-8601 with ``Z``; SQLite returns naive datetimes, which were stored as UTC."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Subject(Base):
    """A data subject. After a shred only this tombstone remains (id, status, times)."""

    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Legacy clear-text column, never written since migration 0003 (`pii-vault reindex`
    # converts what an older version left in it).
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    # The external id is personal data: a keyed digest for lookup, ciphertext to return it.
    external_id_digest: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    external_id_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    region: Mapped[str | None] = mapped_column(String(16), nullable=True)
    is_minor: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=STATUS_ACTIVE, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    shred_requested_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    shredded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The shred's "completed" audit event is recorded (a retry or `shred --pending` adds it).
    completion_audited: Mapped[bool] = mapped_column(Boolean, default=False)
    damaged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def mark_damaged(subject: Subject) -> None:
    """The subject's key is missing though it was never shredded (logged: ops must know)."""
    subject.status = STATUS_DAMAGED
    subject.damaged_at = utcnow()
    logging.getLogger("vault.damage").error(
        "subject %s is damaged: its key is missing though it was never shredded; its data "
        "cannot be read (see `pii-vault reconcile`)",
        subject.id,
    )


class KeyIntent(Base):
    """A subject key about to be created; deleted with the subject row's insert."""

    __tablename__ = "key_intents"

    subject_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class DataKeyRecord(Base):
    """A data key, stored only wrapped under the subject key."""

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_id: Mapped[str] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )
    wrapped: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    encryptions: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class RetentionHold(Base):
    """The records a shred could not yet destroy (policy §4 floors): kept as the held
    subject ``hold_id`` (own key, status ``held``) until ``until``, then shredded."""

    __tablename__ = "retention_holds"

    hold_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(36), index=True)  # the shredded subject
    fields: Mapped[str] = mapped_column(Text)  # comma-separated, sorted
    until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FieldVersion(Base):
    """A value replaced by a correction while its field's legal floor still runs (policy
    §4): the old ciphertext under its own data key, kept until ``keep_until``."""

    __tablename__ = "field_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )
    field: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    dek_id: Mapped[str] = mapped_column(ForeignKey("data_keys.id"), index=True)
    written_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    superseded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    keep_until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class FieldValue(Base):
    """One encrypted field value (format in vault/crypto.py)."""

    __tablename__ = "field_values"

    subject_id: Mapped[str] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True
    )
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    dek_id: Mapped[str] = mapped_column(ForeignKey("data_keys.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    retain_until: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )


class Token(Base):
    """A token resolves to the current value of one subject's field."""

    __tablename__ = "tokens"
    __table_args__ = (UniqueConstraint("subject_id", "field"),)

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True
    )
    field: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class BlindIndex(Base):
    """Keyed MAC of a searchable field's canonical value, for exact-match lookup."""

    __tablename__ = "blind_index"
    __table_args__ = (Index("ix_blind_index_field_digest", "field", "digest"),)

    subject_id: Mapped[str] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True
    )
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(128))


class ShredLogEntry(Base):
    """One row per shred, in shred order: how every process learns which cached keys to drop."""

    __tablename__ = "shred_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(36))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class IndexState(Base):
    """One row: the index-key version `pii-vault reindex` is retiring, while it runs."""

    __tablename__ = "index_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    retiring: Mapped[int | None] = mapped_column(Integer, nullable=True)
