"""The tamper-evident audit log: append-only, hash-chained, with signed checkpoints.

Each event's hash covers its content and the previous event's hash, so a
modified, deleted, inserted or reordered event breaks the chain. Appends lock
the single head row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite writers
are serialised by ``BEGIN IMMEDIATE``), so sequence numbers stay gap-free with
many writer processes. Every ``checkpoint_every`` events the head (sequence,
hash) is signed with the key provider's Ed25519 key; verification pins the
provider's public key, so a forger with database access cannot re-sign.

Events never hold plaintext values: field names, decisions, rules and ids only.
Any failure to append is ``AuditUnavailable``: callers must then return no plaintext.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from access.decisions import Verdict
from access.errors import AuditUnavailable
from access.models import AuditCheckpoint, AuditEvent, AuditHead
from access.purposes import MAX_REASON, Justification
from keys.errors import KeyProviderError
from keys.provider import Signer
from keys.signing import verify_signature

GENESIS = "0" * 64
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditRecord:
    """What one event says; ``outcome`` maps field (or ``*``) -> decision details."""

    principal: str
    action: str
    purpose: str | None
    verdict: Verdict  # stored in the event's ``decision`` column
    request_id: str = "-"
    subject_ids: Sequence[str] = ()
    fields: Sequence[str] = ()
    outcome: Mapping[str, Any] = field(default_factory=dict)
    justification: Justification | None = None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    head: str
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None

    def summary(self) -> str:
        if self.ok:
            return (
                f"audit log intact: {self.events} events, {self.checkpoints} signed checkpoints, "
                f"head {self.head[:16]}"
            )
        return f"audit log TAMPERED at seq {self.first_bad_seq}: {self.problem}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(row: AuditEvent) -> str:
    """SHA-256 over the stored columns (exactly as stored) and the previous hash."""
    material = [
        row.seq,
        row.ts,
        row.request_id,
        row.principal,
        row.action,
        row.purpose,
        row.subject_ids,
        row.fields,
        row.decision,
        row.outcome,
        row.justification_ticket,
        row.justification_reason,
        row.prev_hash,
    ]
    return hashlib.sha256(_json(material).encode("utf-8")).hexdigest()


def _text(value: str | None, limit: int) -> str | None:
    """Free text as stored: NUL (which PostgreSQL text refuses) neutralised, length bounded."""
    return None if value is None else str(value).replace("\x00", "\ufffd")[:limit]


def checkpoint_payload(seq: int, head_hash: str) -> bytes:
    return f"pii-vault/audit-checkpoint/v1|{seq}|{head_hash}".encode()


class AuditLog:
    def __init__(
        self, engine: Engine, signer: Signer | None = None, *, checkpoint_every: int = 100
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def append(self, record: AuditRecord) -> int:
        """Commit one event; returns its sequence number. Raises AuditUnavailable on any failure."""
        justification = record.justification
        reason = _text(justification.reason, MAX_REASON) if justification is not None else None
        try:
            with self._sessions.begin() as session:
                head = session.execute(
                    select(AuditHead).where(AuditHead.id == 1).with_for_update()
                ).scalar_one()
                row = AuditEvent(
                    seq=head.seq + 1,
                    ts=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                    request_id=_text(record.request_id, 64) or "-",
                    principal=_text(record.principal, 128) or "-",
                    action=_text(record.action, 32) or "-",
                    purpose=_text(record.purpose, 64) or "-",
                    subject_ids=_json(list(record.subject_ids)),
                    fields=_json(list(record.fields)),
                    decision=record.verdict,
                    outcome=_json(dict(record.outcome)),
                    justification_ticket=_text(justification.ticket, 32) if justification else None,
                    justification_reason=reason,
                    prev_hash=head.hash,
                )
                row.hash = event_hash(row)
                session.add(row)
                head.seq, head.hash = row.seq, row.hash
            seq = row.seq
        except SQLAlchemyError as exc:
            raise AuditUnavailable("audit log unavailable: the event was not recorded") from exc
        if self.signer is not None and self.checkpoint_every and seq % self.checkpoint_every == 0:
            try:
                self.checkpoint()
            except (AuditUnavailable, KeyProviderError):
                # The event is committed; a missed checkpoint is caught up by the next one.
                log.warning("audit checkpoint at seq %d could not be signed", seq)
        return seq

    def checkpoint(self) -> int:
        """Sign the current head. Returns its sequence number (0 for an empty log)."""
        if self.signer is None:
            raise AuditUnavailable("no signing key configured for audit checkpoints")
        try:
            with self._sessions.begin() as session:
                head = session.execute(
                    select(AuditHead).where(AuditHead.id == 1).with_for_update(read=True)
                ).scalar_one()
                if head.seq == 0 or session.get(AuditCheckpoint, head.seq) is not None:
                    return head.seq
                signature = self.signer.sign(checkpoint_payload(head.seq, head.hash))
                session.add(
                    AuditCheckpoint(
                        seq=head.seq,
                        head_hash=head.hash,
                        signature=base64.b64encode(signature).decode(),
                        public_key=base64.b64encode(self.signer.signing_public_key()).decode(),
                        created_at=dt.datetime.now(dt.UTC).isoformat(),
                    )
                )
                return head.seq
        except SQLAlchemyError as exc:
            raise AuditUnavailable("audit log unavailable: checkpoint not written") from exc

    def events(self, subject_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(int(limit), 1000))
        with self._sessions.begin() as session:
            stmt = select(AuditEvent).order_by(AuditEvent.seq.desc())
            if subject_id is not None:
                stmt = stmt.where(AuditEvent.subject_ids.contains(f'"{subject_id}"'))
            rows = session.scalars(stmt.limit(limit)).all()
            return [_event_dict(r) for r in rows]

    def verify(self, public_key: bytes | None = None) -> VerifyResult:
        """Recompute the chain and check checkpoint signatures (against ``public_key``)."""
        if public_key is None and self.signer is not None:
            public_key = self.signer.signing_public_key()
        with self._sessions.begin() as session:
            return _verify(session, public_key)


def _event_dict(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "ts": row.ts,
        "request_id": row.request_id,
        "principal": row.principal,
        "action": row.action,
        "purpose": row.purpose,
        "subject_ids": json.loads(row.subject_ids),
        "fields": json.loads(row.fields),
        "decision": row.decision,
        "outcome": json.loads(row.outcome),
        "justification": (
            {"ticket": row.justification_ticket, "reason": row.justification_reason}
            if row.justification_ticket is not None
            else None
        ),
        "hash": row.hash,
    }


def _verify(session: Session, public_key: bytes | None) -> VerifyResult:
    prev, expected_seq, count = GENESIS, 1, 0
    hashes: dict[int, str] = {}

    def bad(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, count, prev, 0, seq, problem)

    for row in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
        if row.seq != expected_seq:
            return bad(expected_seq, f"event {expected_seq} is missing (deleted or renumbered)")
        if row.prev_hash != prev:
            return bad(
                row.seq,
                "chain broken: previous-hash mismatch (inserted, deleted, or reordered event)",
            )
        if event_hash(row) != row.hash:
            return bad(row.seq, "event content does not match its hash (modified)")
        hashes[row.seq] = row.hash
        prev, expected_seq, count = row.hash, expected_seq + 1, count + 1

    head = session.get(AuditHead, 1)
    if head is None or head.seq != count or head.hash != prev:
        return bad(
            min(head.seq if head else 0, count) + 1,
            "head does not match the last event (truncated log or tampered head)",
        )

    checkpoints = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).all()
    for cp in checkpoints:
        if hashes.get(cp.seq) != cp.head_hash:
            return VerifyResult(
                False, count, prev, 0, cp.seq, "signed checkpoint does not match the chain"
            )
        if public_key is not None:
            try:
                signature = base64.b64decode(cp.signature, validate=True)
            except ValueError:
                signature = b""
            if not verify_signature(
                public_key, checkpoint_payload(cp.seq, cp.head_hash), signature
            ):
                return VerifyResult(
                    False, count, prev, 0, cp.seq, "checkpoint signature is invalid"
                )
    return VerifyResult(True, count, prev, len(checkpoints))
