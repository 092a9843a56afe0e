"""Anchors: the audit chain's head, signed and stored outside the database, write-once.

The database alone cannot prove its log was not rewritten: anyone who can
write it can recompute an unkeyed hash chain and drop local checkpoints. So
every ``every`` events (or at the maintenance tick, at most ``T`` seconds
later) the head is anchored in an ``AnchorStore`` the service can append to
but not rewrite (Vault KV v2, create-only for the service token). Each anchor
covers the events since the one before it, holds a 64-bit prefix of each of
their hashes, and is stored under its predecessor's sequence number, so the
anchors form one chain from the log's start: a rewritten event is named by
its sequence number, a truncated tail shows as a head behind the newest
anchor, and a deleted anchor leaves the ones after it unreachable.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from access.models import AuditCheckpoint, AuditEvent, AuditHead
from keys.provider import AnchorStore, Signer
from keys.signing import verify_signature
from vault.db import READ_ONLY

log = logging.getLogger(__name__)

PREFIX = 16  # hex characters of each event hash kept in an anchor (64 bits)


def anchor_payload(record: Mapping[str, Any]) -> bytes:
    """The exact bytes an anchor's signature covers: every field but the signature."""
    body = {k: v for k, v in record.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return b"pii-vault/audit-anchor/v1|" + canonical.encode()


@dataclass(frozen=True)
class Finding:
    seq: int
    problem: str


class Anchorer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: Signer,
        store: AnchorStore,
        *,
        every: int,
    ) -> None:
        if every < 1:
            raise ValueError("anchor every >= 1 events")
        self._sessions = sessions
        self.signer = signer
        self.store = store
        self.every = every
        self.tip: int | None = None  # newest anchored seq this process knows of
        self._tip_head: str | None = None  # and the head hash anchored there
        self._log: str | None = None
        self.pinned: bool | None = None  # whether the store holds the log's identity
        self.verified_tip = 0  # the newest anchor the last verify walked to

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        """A read-only transaction (on SQLite: no write lock, so appends never wait on it)."""
        with self._sessions.begin() as session:
            session.connection(execution_options=READ_ONLY)
            yield session

    def database_log(self) -> str:
        with self._read() as session:
            log = session.scalar(select(AuditHead.log_id).where(AuditHead.id == 1))
        if not log:
            raise RuntimeError("audit log has no id: run `pii-vault init`")
        return str(log)

    def pinned_log(self) -> str | None:
        """The log id pinned outside the database at init, if any."""
        identity = self.store.identity()
        self.pinned = identity is not None
        return None if identity is None else str(identity.get("log_id"))

    @property
    def log(self) -> str:
        """This log's id: its anchors' namespace in the store. Pinned at init (the database's
        must match it); before a deployment is initialised so, the database's own."""
        if self._log is None:
            database, pinned = self.database_log(), self.pinned_log()
            if pinned is not None and pinned != database:
                raise RuntimeError(
                    "the database's audit log is not the one pinned outside it (replaced?): "
                    "run `pii-vault audit verify`"
                )
            self._log = database
        return self._log

    def check_known_tip(self) -> bool:
        """Readiness, which never waits on Vault: ``check_extends`` against the tip this
        process already knows (a database read); False if it knows none yet."""
        if self.tip is None:
            return False
        self.check_extends()
        return True

    def check_extends(self) -> int:
        """Raise unless the database's log extends the newest anchor (start-up, and before
        every anchor): the service never signs a history it did not write. Returns the tip."""
        tip = self.tip if self.tip is not None else self._discover_tip()
        if tip == 0:
            self.tip = 0
            return 0
        with self._read() as session:
            at_tip = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == tip))
        if at_tip is None or at_tip != self._tip_head:
            raise RuntimeError(
                f"the database's audit log does not extend its newest anchor (seq {tip}): "
                "it was shortened or rewritten; run `pii-vault audit verify`"
            )
        self.tip = tip
        return tip

    def _discover_tip(self) -> int:
        """The newest anchored seq: from the database's hint if the store confirms it, else 0."""
        with self._read() as session:
            hint = session.scalars(
                select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
            ).first()
            start = (hint.seq, hint.prev_seq) if hint is not None else (0, None)
        seq, prev = start
        head: str | None = None
        if prev is not None:
            confirmed = self.store.get(self.log, prev)
            if confirmed is None or int(confirmed.get("seq", -1)) != seq:
                seq = 0  # a hint the store does not confirm is ignored (walk from the start)
            else:
                head = str(confirmed.get("head"))
        else:
            seq = 0
        while (record := self.store.get(self.log, seq)) is not None:
            seq, head = int(record["seq"]), str(record.get("head"))
        self._tip_head = head
        return seq

    def head_seq(self) -> int:
        with self._read() as session:
            return int(session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0)

    def anchor(self) -> int:
        """Anchor everything up to the current head; returns the newest anchored seq."""
        tip = self.check_extends()
        head = self.head_seq()
        while tip < head:
            end = min(head, tip + self.every)
            with self._read() as session:
                hashes = list(
                    session.scalars(
                        select(AuditEvent.hash)
                        .where(AuditEvent.seq > tip, AuditEvent.seq <= end)
                        .order_by(AuditEvent.seq)
                    )
                )
            if len(hashes) != end - tip:
                raise RuntimeError(
                    "audit events missing below the head: run `pii-vault audit verify`"
                )
            record: dict[str, Any] = {
                "v": 1,
                "prev": tip,
                "seq": end,
                "head": hashes[-1],
                "hashes": [h[:PREFIX] for h in hashes],
                "ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            # Signed outside any database lock: appends never wait for Vault here.
            record["signature"] = base64.b64encode(
                self.signer.sign(anchor_payload(record))
            ).decode()
            if self.store.put(self.log, tip, record):
                self._copy(record)
                log.info("audit anchored: seq %d to %d of log %s", tip + 1, end, self.log)
                tip, self._tip_head = end, hashes[-1]
            else:  # another process anchored after `tip` first: follow its anchor
                existing = self.store.get(self.log, tip)
                if existing is None:
                    raise RuntimeError("anchor store refused a write and holds nothing there")
                tip, self._tip_head = int(existing["seq"]), str(existing.get("head"))
            self.tip = tip
        self.tip = tip
        return tip

    def _copy(self, record: Mapping[str, Any]) -> None:
        """The database keeps a copy of each anchor: a hint for the tip, checked by verify."""
        try:
            with self._sessions.begin() as session:
                session.add(
                    AuditCheckpoint(
                        seq=record["seq"],
                        prev_seq=record["prev"],
                        head_hash=record["head"],
                        signature=record["signature"],
                        public_key=base64.b64encode(self.signer.signing_public_key()).decode(),
                        created_at=record["ts"],
                    )
                )
        except IntegrityError:
            pass  # already copied

    def verify(
        self, session: Session, hashes: Mapping[int, str], events: int, public_key: bytes
    ) -> tuple[int, Finding | None]:
        """Check every anchor against the chain; returns (anchors checked, first finding)."""
        database, pinned = self.database_log(), self.pinned_log()
        if pinned is not None and pinned != database:
            return 0, Finding(
                1, "the database's audit log id differs from the one pinned at init (replaced log)"
            )
        others = [name for name in self.store.logs() if name != database]
        if pinned is not None and others:
            return 0, Finding(
                1, f"a second anchor namespace is in the store ({others[0][:36]}): a replaced log"
            )
        self._log = database
        keys = self.store.keys(self.log)
        findings: list[Finding] = []
        seen: set[int] = set()
        anchored: dict[int, Mapping[str, Any]] = {}
        at = 0
        while (record := self.store.get(self.log, at)) is not None:
            seen.add(at)
            finding = _check(record, at, hashes, events, public_key)
            if finding is not None:
                findings.append(finding)
                break
            anchored[int(record["seq"])] = record
            at = int(record["seq"])
        orphans = sorted(set(keys) - seen)
        if orphans and not findings:
            findings.append(
                Finding(
                    at + 1,
                    f"an anchor after seq {at} is missing (deleted): later anchors "
                    f"start at seq {orphans[0]}",
                )
            )
        if not findings and at == 0 and events > (0 if pinned is not None else self.every):
            findings.append(
                Finding(
                    1,
                    "no anchor covers the log though one is due (the genesis anchor written "
                    "at init, or the first after it, is missing)",
                )
            )
        if not findings and events - at > 2 * self.every:
            findings.append(
                Finding(
                    at + 1,
                    f"events after seq {at} are not anchored: an anchor is missing "
                    "or anchoring has failed for too long",
                )
            )
        for cp in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)):
            twin = anchored.get(cp.seq)
            if twin is None or (twin["head"], twin["signature"]) != (cp.head_hash, cp.signature):
                if twin is None and cp.seq > at and findings:
                    continue  # beyond a finding already reported
                findings.append(
                    Finding(cp.seq, "checkpoint in the database matches no anchor (forged)")
                )
        first = min(findings, key=lambda f: f.seq) if findings else None
        self.verified_tip = at
        return len(anchored), first


def _check(
    record: Mapping[str, Any],
    key: int,
    hashes: Mapping[int, str],
    events: int,
    public_key: bytes,
) -> Finding | None:
    try:
        prev, seq = int(record["prev"]), int(record["seq"])
        prefixes = [str(h) for h in record["hashes"]]
        signature = base64.b64decode(str(record["signature"]), validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return Finding(key + 1, f"anchor after seq {key} is malformed")
    if not verify_signature(public_key, anchor_payload(record), signature):
        return Finding(key + 1, f"anchor after seq {key} has an invalid signature")
    if prev != key or seq <= prev or len(prefixes) != seq - prev:
        return Finding(key + 1, f"anchor after seq {key} does not continue the anchor chain")
    for offset, prefix in enumerate(prefixes):
        n = prev + 1 + offset
        if n > events:
            return Finding(
                events + 1,
                f"the database ends at seq {events} but seq {seq} was anchored (truncated log)",
            )
        if hashes[n][:PREFIX] != prefix:
            return Finding(
                n, "event differs from its anchored hash (modified, deleted, inserted or reordered)"
            )
    if hashes[seq] != record["head"]:
        return Finding(seq, "event differs from its anchored head hash")
    return None
