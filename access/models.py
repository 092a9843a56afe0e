"""Access-control tables: policy, principals, consents and the audit log.

They share the vault's database but have their own Alembic history
(``access/migrations``, version table ``alembic_version_access``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vault.models import NAMING


class AccessBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PolicyRule(AccessBase):
    """One Casbin line (p or g); seeded from access/policy.csv by ``pii-vault init``."""

    __tablename__ = "policy_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str] = mapped_column(String(4))
    v0: Mapped[str] = mapped_column(String(128))
    v1: Mapped[str] = mapped_column(String(128))
    v2: Mapped[str] = mapped_column(String(64), default="")
    v3: Mapped[str] = mapped_column(String(64), default="")
    v4: Mapped[str] = mapped_column(String(16), default="")
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)  # access/grants.py


class AccessState(AccessBase):
    """A revision bumped on every policy or principal change: every process reloads on it."""

    __tablename__ = "access_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    # The sealed grant state (access/grant_state.py): which principal rows and rule set count.
    grant_state: Mapped[str | None] = mapped_column(Text, nullable=True)


class Principal(AccessBase):
    __tablename__ = "principals"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(80))  # keyed digest (access/grants.py)
    roles: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)  # access/grants.py
    # A person's display name and email from the ID token, sealed (never in clear, never
    # grant material): what the console shows beside the stable id (issue 18).
    profile: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Where the principal works from (policy §7); None: the deployment's region. Grant
    # material: part of the row's tag when set.
    region: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Who receives what this principal reads (policy §3(1), issue 20): None kind = internal.
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    recipient: Mapped[str | None] = mapped_column(String(200), nullable=True)
    recipient_country: Mapped[str | None] = mapped_column(String(16), nullable=True)
    agreement: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Issue 22: the key may expire, and a rotated key keeps working until ``old_key_until``
    # (the overlap), then never. Grant material when set.
    key_expires_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    old_key_id: Mapped[str | None] = mapped_column(String(32), unique=True, nullable=True)
    old_key_hash: Mapped[str | None] = mapped_column(String(80), nullable=True)
    old_key_until: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class Consent(AccessBase):
    """Consent history, append-only: the newest row per (subject, purpose) is in force."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key: the shred deletes consents itself (the subject row stays as a tombstone).
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    granted: Mapped[bool] = mapped_column(Boolean)
    given_by: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # A guardian's consent (policy §6): who (a reference, not their data) and how verified.
    guardian_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verification: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)  # under the grant key
    # Evidence (issue 20): how it was given, which text, who recorded it.
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    text_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    recorded_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ConsentLedgerEntry(AccessBase):
    """Proof of a consent that outlives the subject's shred (access/consents.py): keyed by
    a pseudonym (a MAC of the subject id under the grant key), no personal data; kept
    until ``keep_until`` (set at the shred: the limitation period), then deleted."""

    __tablename__ = "consent_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(80), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    granted: Mapped[bool] = mapped_column(Boolean)
    given_by: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    text_sha256: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    keep_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditStreamCursor(AccessBase):
    """The last audit seq a sink has acknowledged, and the process holding its lease."""

    __tablename__ = "audit_stream_cursors"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float] = mapped_column(Float)


class AuditEvent(AccessBase):
    """One hash-chained audit event. Never holds a plaintext value."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(64))
    subject_ids: Mapped[str] = mapped_column(Text)
    fields: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(Text)
    justification_ticket: Mapped[str | None] = mapped_column(String(32), nullable=True)
    justification_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(AccessBase):
    """The chain's head (one row): appends lock it, so sequence numbers never race."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    log_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # anchors' namespace


class AuditCheckpoint(AccessBase):
    """The database's copy of an anchor (signed head); the anchor store holds the original."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    head_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))


class LookupFailures(AccessBase):
    """Failed token lookups per principal in the current window, shared by every worker."""

    __tablename__ = "lookup_failures"

    principal: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer)


class Restriction(AccessBase):
    """Restriction and objection history (access/restrictions.py), append-only."""

    __tablename__ = "restrictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    scope: Mapped[str] = mapped_column(String(64))  # a purpose, or "*" for every purpose
    kind: Mapped[str] = mapped_column(String(16))  # restriction, objection, lifted
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)  # under the grant key


class TransferBasis(AccessBase):
    """A recorded legal basis for cross-border transfers (access/transfers.py): of one
    subject's data or everyone's (``subject_id`` None), for a purpose (or ``*``), to a
    destination region, valid for a period unless revoked. Tagged under the grant key."""

    __tablename__ = "transfer_bases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    purpose: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(16), index=True)
    basis: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(128))
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[str] = mapped_column(String(128))
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)


class Disclosure(AccessBase):
    """A lawful disclosure to an authority (access/disclosures.py)."""

    __tablename__ = "disclosures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    authority: Mapped[str] = mapped_column(String(200))
    instrument: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(200))
    ticket: Mapped[str] = mapped_column(String(32))
    disclosed_by: Mapped[str] = mapped_column(String(128))
    disclosed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    withheld_until: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class BreakGlassGrant(AccessBase):
    """An emergency grant (access/break_glass.py): one person, a justification, a bounded
    time; closed by itself at ``expires_at`` (``closed_at`` set when that was audited)."""

    __tablename__ = "break_glass"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(128), index=True)
    ticket: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)


class UsageCounter(AccessBase):
    """How much of a budget (``kind``: reveals, searches) a key has used in its current
    window, shared by every worker (access/usage.py)."""

    __tablename__ = "usage_counters"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    spent: Mapped[int] = mapped_column(Integer)


class ConsoleSession(AccessBase):
    """A signed-in (or signing-in) console session, kept server-side.

    The browser holds only a random 256-bit id; the table holds its SHA-256, so a
    copy of the database does not give anyone a session to ride."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApprovalRequest(AccessBase):
    """A reveal waiting for, or given, a second person's approval (access/approvals.py):
    who asked, for which subject, fields and purpose, with which ticket and reason; who
    decided and when; when it was used (once). Tagged under the grant key: a row edited to
    ``approved`` with SQL approves nothing."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requester: Mapped[str] = mapped_column(String(128), index=True)
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    fields: Mapped[str] = mapped_column(Text)  # comma-separated, sorted
    purpose: Mapped[str] = mapped_column(String(64))
    ticket: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)


class LegalHoldRecord(AccessBase):
    """A legal hold placed on or lifted from a subject (access/holds.py): append-only, the
    newest record in force; tagged under the grant key (a forged lift lifts nothing)."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # hold | lifted
    reference: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    tag: Mapped[str | None] = mapped_column(String(80), nullable=True)
