"""The tamper-evident audit log: append-only, hash-chained, anchored outside the database.

Each event's hash covers its content and the previous event's hash, so a
modified, deleted, inserted or reordered event breaks the chain. Appends are
group-committed within a process (the events queued while one group is being
written go together in the next transaction; each caller returns only after the
commit holding its event), and each group locks the single head row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite writers are serialised by
``BEGIN IMMEDIATE``), so sequence numbers stay gap-free with
many writer processes. A chain alone proves nothing to someone who can
rewrite the whole table, so the head is anchored outside the database
(``access/anchoring.py``) every ``checkpoint_every`` events and at every
maintenance tick; verification checks every anchor with the pinned public key.

Events never hold plaintext values: field names, decisions, rules and ids only.
Any failure to append is ``AuditUnavailable``: callers must then return no plaintext.

An append may carry a *charge* (issue 21: the read budget), run in the group's
transaction under a savepoint of its own: the budget and the event commit together (one
write transaction per read instead of two), and a charge that refuses replaces the
event with its refusal, committed before the caller raises it.

Past 400 lines (about 480): appending, verifying and reading the chain share one row
format and one hash; the group commit lives in ``access/anchoring.py`` already.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from access.anchoring import Anchorer
from access.decisions import Verdict
from access.errors import AuditUnavailable
from access.models import AuditEvent, AuditHead
from access.purposes import MAX_REASON, Justification
from keys.errors import KeyProviderError
from keys.provider import AnchorStore, Signer

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
    unanchored: int = 0  # events after the newest anchor
    unanchored_age: float | None = None  # seconds since the oldest of them was written
    pinned: bool | None = None  # whether the log's identity is pinned outside the database

    def summary(self) -> str:
        if self.ok:
            tail = (
                f"; {self.unanchored} not yet anchored (oldest {self.unanchored_age:.0f} s ago)"
                if self.unanchored and self.unanchored_age is not None
                else ""
            )
            unpinned = (
                "; log identity NOT pinned outside the database: run `pii-vault init`"
                if self.pinned is False
                else ""
            )
            return (
                f"audit log intact: {self.events} events, {self.checkpoints} signed anchors, "
                f"head {self.head[:16]}{tail}{unpinned}"
            )
        return f"audit log TAMPERED at seq {self.first_bad_seq}: {self.problem}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_HASHED = (
    "seq",
    "ts",
    "request_id",
    "principal",
    "action",
    "purpose",
    "subject_ids",
    "fields",
    "decision",
    "outcome",
    "justification_ticket",
    "justification_reason",
    "prev_hash",
)


def _hash_of(material: list[Any]) -> str:
    return hashlib.sha256(_json(material).encode("utf-8")).hexdigest()


def event_hash(row: AuditEvent) -> str:
    """SHA-256 over the stored columns (exactly as stored) and the previous hash."""
    return _hash_of([getattr(row, c) for c in _HASHED])


def _text(value: str | None, limit: int) -> str | None:
    """Free text as stored: NUL (which PostgreSQL text refuses) neutralised, length bounded."""
    return None if value is None else str(value).replace("\x00", "\ufffd")[:limit]


# Run in the event's transaction: None, or the refusal (nothing it charged stays).
Charge = Callable[[Connection], Exception | None]


class _Pending:
    """One event waiting for its group's commit."""

    __slots__ = ("charge", "done", "error", "record", "refusal", "refused", "seq")

    def __init__(
        self,
        record: AuditRecord,
        charge: Charge | None = None,
        refused: Callable[[Exception], AuditRecord] | None = None,
    ) -> None:
        self.record = record
        self.charge = charge
        self.refused = refused
        self.refusal: Exception | None = None
        self.done = False
        self.seq = 0
        self.error: BaseException | None = None

    def settle(self, conn: Connection) -> None:
        """Run the charge under a savepoint (a concurrent first insert elsewhere: once
        more); a refusal rolls it back and the refusal's event is written instead."""
        if self.charge is None:
            return
        for attempt in range(2):
            savepoint = conn.begin_nested()
            try:
                refusal = self.charge(conn)
            except IntegrityError:
                savepoint.rollback()
                if attempt:
                    raise
                continue
            if refusal is None:
                savepoint.commit()
            else:
                savepoint.rollback()
                self.refusal = refusal
                if self.refused is not None:
                    self.record = self.refused(refusal)
            return


def _row(record: AuditRecord, seq: int, prev_hash: str) -> dict[str, Any]:
    """The event's columns as stored, its hash included."""
    justification = record.justification
    reason = _text(justification.reason, MAX_REASON) if justification is not None else None
    row: dict[str, Any] = {
        "seq": seq,
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "request_id": _text(record.request_id, 64) or "-",
        "principal": _text(record.principal, 128) or "-",
        "action": _text(record.action, 32) or "-",
        "purpose": _text(record.purpose, 64) or "-",
        "subject_ids": _json(list(record.subject_ids)),
        "fields": _json(list(record.fields)),
        "decision": record.verdict,
        "outcome": _json(dict(record.outcome)),
        "justification_ticket": _text(justification.ticket, 32) if justification else None,
        "justification_reason": reason,
        "prev_hash": prev_hash,
    }
    row["hash"] = _hash_of([row[c] for c in _HASHED])
    return row


class AuditLog:
    def __init__(
        self,
        engine: Engine,
        signer: Signer | None = None,
        *,
        anchors: AnchorStore | None = None,
        checkpoint_every: int = 500,
        max_unanchored: int | None = None,
    ) -> None:
        """``checkpoint_every``: anchor after this many events (the maintenance tick anchors
        sooner). ``max_unanchored``: refuse to append (fail closed) once this many events
        are not anchored because anchoring keeps failing (default 10 x checkpoint_every)."""
        self.engine = engine
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.max_unanchored = max_unanchored or 10 * checkpoint_every
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.anchorer = (
            Anchorer(self._sessions, signer, anchors, every=checkpoint_every)
            if signer is not None and anchors is not None
            else None
        )
        self.anchor_failures = 0
        self._last_seq = 0
        self._group = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    def append(
        self,
        record: AuditRecord,
        *,
        charge: Charge | None = None,
        refused: Callable[[Exception], AuditRecord] | None = None,
    ) -> int:
        """Commit one event; returns its sequence number. Raises AuditUnavailable on any failure.
        ``charge``: run in the event's transaction; if it refuses, ``refused(refusal)`` is
        the event committed instead and the refusal is raised."""
        anchorer = self.anchorer
        behind = (
            anchorer is not None and self._last_seq - (anchorer.tip or 0) >= self.max_unanchored
        )
        if behind and not self._anchor_quietly():
            raise AuditUnavailable("audit log unavailable: too many events are not anchored")
        pending = _Pending(record, charge, refused)
        with self._group:
            self._queue.append(pending)
            while not pending.done and self._writing:
                self._group.wait()  # the current writer may take this event along
            if not pending.done:  # lead: write everything queued, in one transaction
                self._writing = True
                group, self._queue = self._queue, []
        if not pending.done:
            try:
                self._write(group)
            finally:
                with self._group:
                    self._writing = False
                    self._group.notify_all()
        if pending.error is not None:
            raise AuditUnavailable("audit log unavailable: the event was not recorded") from (
                pending.error
            )
        seq = pending.seq
        self._last_seq = seq
        if anchorer is not None and seq - (anchorer.tip or 0) >= self.checkpoint_every:
            self._anchor_quietly()  # due by count; a failure is retried, never skipped
        if pending.refusal is not None:
            raise pending.refusal
        return seq

    def _write(self, group: list[_Pending]) -> None:
        """Group commit: the events queued while the previous group was written, chained
        in queue order under one lock of the head row and one commit. Each caller returns
        only after the commit that holds its event (or with its error). Core statements
        (one multi-row INSERT, one UPDATE), not the ORM's unit of work: this runs once per
        audited request."""
        try:
            with self.engine.begin() as conn:
                seq, prev = conn.execute(
                    select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
                ).one()
                rows = []
                for item in group:
                    item.settle(conn)
                    seq += 1
                    row = _row(item.record, seq, prev)
                    prev = row["hash"]
                    rows.append(row)
                conn.execute(insert(AuditEvent), rows)
                conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=prev))
            for item, row in zip(group, rows, strict=True):
                item.seq = row["seq"]
        except Exception as exc:  # every waiter fails closed: no event, no success
            for item in group:
                item.error = exc
        finally:
            for item in group:
                item.done = True

    def _anchor_quietly(self) -> bool:
        """Anchor now; on failure log it, count it and report False (the next call retries)."""
        try:
            self.checkpoint()
        except AuditUnavailable:
            self.anchor_failures += 1
            log.warning("audit anchoring failed; it is retried at the next event or tick")
            return False
        return True

    def checkpoint(self) -> int:
        """Anchor every event up to the head outside the database; returns the anchored seq."""
        if self.anchorer is None:
            raise AuditUnavailable("no signer and anchor store configured for audit anchors")
        try:
            return self.anchorer.anchor()
        except (SQLAlchemyError, KeyProviderError, RuntimeError) as exc:
            raise AuditUnavailable("audit anchor not written") from exc

    def check_extends_anchors(self, *, discover: bool = True) -> bool:
        """Start-up: refuse to serve a database whose log does not extend the newest anchor.
        Without ``discover`` (readiness): against the tip this process knows, without a
        Vault call; False if it knows none yet (nothing was checked)."""
        if self.anchorer is None:
            return False
        try:
            if discover:
                self.anchorer.check_extends()
                return True
            return self.anchorer.check_known_tip()
        except (SQLAlchemyError, KeyProviderError, RuntimeError) as exc:
            raise AuditUnavailable(f"audit log refused: {exc}") from exc

    def anchor_tail(self) -> None:
        """Graceful shutdown: anchor what this process wrote (a failure is only logged)."""
        if self.anchorer is not None and self._last_seq > (self.anchorer.tip or 0):
            self._anchor_quietly()

    def anchor_if_due(self) -> None:
        """Maintenance task: anchor whatever is not anchored yet (the time bound).

        ``anchor`` itself does nothing when the head is already anchored."""
        if self.anchorer is not None:
            self.checkpoint()

    def events(
        self,
        subject_id: str | None = None,
        limit: int = 100,
        *,
        principal: str | None = None,
        action: str | None = None,
        decision: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest events first, filtered; ``since``/``until`` are ISO times (UTC);
        ``before``: only events with a lower seq (the cursor of the page before)."""
        limit = max(1, min(int(limit), 1000))
        with self._sessions.begin() as session:
            stmt = select(AuditEvent).order_by(AuditEvent.seq.desc())
            if subject_id is not None:
                stmt = stmt.where(AuditEvent.subject_ids.contains(f'"{subject_id}"'))
            if principal is not None:
                stmt = stmt.where(AuditEvent.principal == principal)
            if action is not None:
                stmt = stmt.where(AuditEvent.action == action)
            if decision is not None:
                stmt = stmt.where(AuditEvent.decision == decision)
            if since is not None:
                stmt = stmt.where(AuditEvent.ts >= since)
            if until is not None:
                stmt = stmt.where(AuditEvent.ts < until)
            if before is not None:
                stmt = stmt.where(AuditEvent.seq < before)
            rows = session.scalars(stmt.limit(limit)).all()
            return [_event_dict(r) for r in rows]

    def after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        """Events with a sequence number above ``seq``, oldest first (the audit stream)."""
        with self._sessions.begin() as session:
            stmt = select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq)
            return [_event_dict(r) for r in session.scalars(stmt.limit(limit))]

    def newest_seq(self) -> int:
        """The highest sequence number written (0 for an empty log)."""
        with self._sessions.begin() as session:
            return int(session.scalar(select(func.max(AuditEvent.seq))) or 0)

    def scan(
        self,
        *,
        since: str,
        containing: str | None = None,
        principal: str | None = None,
        until: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every event since ``since`` (ISO, UTC; before ``until``) whose outcome holds
        ``containing`` and whose principal is ``principal``, oldest first, read in pages
        (a report over months of events, not a page of them)."""
        after = -1
        while True:
            stmt = select(AuditEvent).where(AuditEvent.seq > after, AuditEvent.ts >= since)
            if containing is not None:
                stmt = stmt.where(AuditEvent.outcome.contains(containing))
            if principal is not None:
                stmt = stmt.where(AuditEvent.principal == principal)
            if until is not None:
                stmt = stmt.where(AuditEvent.ts < until)
            with self._sessions.begin() as session:
                rows = session.scalars(stmt.order_by(AuditEvent.seq).limit(500)).all()
                page = [_event_dict(r) for r in rows]
            if not page:
                return
            yield from page
            after = page[-1]["seq"]

    def verify(self, public_key: bytes | None = None) -> VerifyResult:
        """Recompute the chain, then check it against every anchor (with the pinned key)."""
        if public_key is None and self.signer is not None:
            public_key = self.signer.signing_public_key()
        try:
            with self._sessions.begin() as session:
                chain = _verify_chain(session)
                if not chain.ok or self.anchorer is None or public_key is None:
                    return chain.result
                anchors, finding = self.anchorer.verify(
                    session, chain.hashes, chain.result.events, public_key
                )
        except KeyProviderError as exc:
            raise AuditUnavailable("audit anchors cannot be read: nothing verified") from exc
        result = chain.result
        if finding is not None:
            return VerifyResult(
                False, result.events, result.head, anchors, finding.seq, finding.problem
            )
        tip = self.anchorer.verified_tip
        age = None
        if result.events > tip:
            with self._sessions.begin() as session:
                first = session.scalar(select(AuditEvent.ts).where(AuditEvent.seq == tip + 1))
            if first is not None:
                written = dt.datetime.fromisoformat(first)
                age = (dt.datetime.now(dt.UTC) - written).total_seconds()
        return VerifyResult(
            True,
            result.events,
            result.head,
            anchors,
            unanchored=result.events - tip,
            unanchored_age=age,
            pinned=self.anchorer.pinned,
        )


def _event_dict(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "ts": row.ts.replace("+00:00", "Z"),  # stored (and hashed) as written; shown as RFC 3339 Z
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


@dataclass(frozen=True)
class _Chain:
    result: VerifyResult
    hashes: dict[int, str]

    @property
    def ok(self) -> bool:
        return self.result.ok


def _verify_chain(session: Session) -> _Chain:
    prev, expected_seq, count = GENESIS, 1, 0
    hashes: dict[int, str] = {}

    def bad(seq: int, problem: str) -> _Chain:
        return _Chain(VerifyResult(False, count, prev, 0, seq, problem), hashes)

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
    return _Chain(VerifyResult(True, count, prev, 0), hashes)
