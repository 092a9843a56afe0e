"""Crypto-shredding: the protocol, pending shreds and signed deletion receipts.

Protocol (docs/ARCHITECTURE.md): publish the decision outside the database
(``vault/shred_ledger.py``: only a published shred ever destroys a key), mark
``shredding`` and commit (no read returns plaintext from then on, in any
process), hard-delete the subject key,
delete the rows and keep a tombstone, return an Ed25519-signed receipt. The
caller records the "completed" audit event and then ``completion_audited``; a
shred whose event could not be recorded stays listed by ``unaudited`` until a
retry or ``pii-vault shred --pending`` records it. Data
kept outside the vault's tables (consents) goes through ``on_shredded``, which
the runtime wires explicitly when it is composed.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import delete, select, update

from keys.provider import Signer, SubjectKeys
from vault.datakeys import DataKeyManager
from vault.errors import (
    KeyProviderUnavailable,
    ShredPending,
    SubjectDamaged,
    SubjectOnHold,
    SubjectShredded,
)
from vault.models import (
    STATUS_ACTIVE,
    STATUS_HELD,
    STATUS_SHREDDED,
    STATUS_SHREDDING,
    BlindIndex,
    DataKeyRecord,
    FieldValue,
    FieldVersion,
    ShredLogEntry,
    Subject,
    Token,
    iso,
    utcnow,
)
from vault.receipts import DeletionReceipt, receipt_payload, verify_receipt
from vault.shred_ledger import ShredLedger
from vault.storage import FieldStore
from vault.transactions import Transactions, translating

log = logging.getLogger(__name__)

ShredListener = Callable[[str], None]


class FloorKeeper(Protocol):
    """What keeps records a legal floor still requires past a shred (vault/floors.py)."""

    def keep(self, subject_id: str) -> object: ...

    def held_info(self, subject_id: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class PendingShreds:
    completed: list[DeletionReceipt]
    pending: list[str]
    undecided: list[str] = field(default_factory=list)  # "shredding" with no published decision


class Shredder:
    def __init__(
        self,
        tx: Transactions,
        keys: SubjectKeys,
        datakeys: DataKeyManager,
        signer: Signer,
        *,
        on_shredded: ShredListener | None = None,
        ledger: ShredLedger | None = None,
        held: Callable[[str], bool] | None = None,
        floors: FloorKeeper | None = None,
    ) -> None:
        """``ledger``: where shreds are published (the runtime always gives one; without it,
        as in unit tests of the protocol, a ``shredding`` row counts as decided)."""
        self.tx = tx
        self.keys = keys
        self.datakeys = datakeys
        self.signer = signer
        self.on_shredded = on_shredded
        self.ledger = ledger
        self.held = held  # a legal hold in force (access/holds.py): no shred
        self.floors = floors  # records a retention floor keeps (vault/floors.py)

    def shred(self, subject_id: str, *, release: bool = False) -> DeletionReceipt:
        """Crypto-shred a subject. Idempotent: a repeat returns the same receipt. Records a
        legal floor still requires are kept first (``floors``); a held subject goes only
        with ``release`` (its last floor passed: the maintenance tick)."""
        with self.tx.begin(read_only=True) as session:
            found = FieldStore.subject(session, subject_id)
            sid, status = found.id, found.status
        undone = status != STATUS_SHREDDED
        if status == STATUS_HELD and not release:
            raise SubjectOnHold("records under a legal retention floor: shredded when it passes")
        fresh = undone and status != STATUS_SHREDDING
        if fresh and self.held is not None and self.held(sid):
            raise SubjectOnHold("a legal hold is in force: the subject is not shredded")
        if fresh and status == STATUS_ACTIVE and self.floors is not None:
            try:
                self.floors.keep(sid)  # before the key goes: what the law still requires
            except SubjectDamaged:  # found lost just now: nothing can be kept, shred it
                log.warning("subject %s: its key is lost, no record could be kept", sid)
        if undone and self.ledger is not None:
            self.ledger.publish(sid)  # first: Vault down means 503 and nothing changed
        return self._mark_and_finish(sid)

    def reapply(self, subject_id: str) -> DeletionReceipt:
        """A published shred the database does not show (a restored backup): done again."""
        return self._mark_and_finish(subject_id)

    def _mark_and_finish(self, subject_id: str) -> DeletionReceipt:
        with self.tx.begin() as session:
            subject = FieldStore.subject(session, subject_id, lock="update")
            # Active, damaged (a restored row whose key is gone) or "shredding" with no time
            # (written with SQL, now decided): marked, and every other process told.
            if subject.status != STATUS_SHREDDED and (
                subject.status != STATUS_SHREDDING or subject.shred_requested_at is None
            ):
                subject.status = STATUS_SHREDDING
                subject.shred_requested_at = subject.shred_requested_at or utcnow()
                # Every other process drops this subject's cached keys when it reads this.
                session.add(
                    ShredLogEntry(subject_id=subject.id, requested_at=subject.shred_requested_at)
                )
            status, sid = subject.status, subject.id
        self.datakeys.evict_subject(sid)
        if status == STATUS_SHREDDED:
            self._notify(sid)  # a retry also finishes what a failed listener left
            with self.tx.begin() as session:
                return self.receipt(FieldStore.subject(session, sid))
        return self._finish(sid)

    def pending(self) -> list[str]:
        with self.tx.begin(read_only=True) as session:
            return list(
                session.scalars(
                    select(Subject.id)
                    .where(Subject.status == STATUS_SHREDDING)
                    .order_by(Subject.shred_requested_at)
                )
            )

    def complete_pending(self) -> PendingShreds:
        """Finish every shred left in ``shredding`` (e.g. Vault was down). Safe to run any time."""
        completed: list[DeletionReceipt] = []
        pending: list[str] = []
        undecided: list[str] = []
        for subject_id in self.pending():
            self.datakeys.evict_subject(subject_id)
            try:
                if self.ledger is not None and not self.ledger.decided(subject_id):
                    undecided.append(subject_id)  # set with SQL: reported, its key left alone
                    continue
                completed.append(self._finish(subject_id))
            except (ShredPending, KeyProviderUnavailable):
                pending.append(subject_id)
        return PendingShreds(completed, pending, undecided)

    def unaudited(self) -> list[str]:
        """Shredded subjects whose "completed" audit event is not recorded yet."""
        with self.tx.begin(read_only=True) as session:
            return list(
                session.scalars(
                    select(Subject.id)
                    .where(Subject.status == STATUS_SHREDDED, Subject.completion_audited.is_(False))
                    .order_by(Subject.shredded_at)
                )
            )

    def completion_audited(self, subject_ids: list[str]) -> None:
        """The shred's completion is in the audit log: `shred --pending` need not add it."""
        if not subject_ids:
            return
        with self.tx.begin() as session:
            session.execute(
                update(Subject)
                .where(Subject.id.in_(subject_ids), Subject.status == STATUS_SHREDDED)
                .values(completion_audited=True)
            )

    def receipt(self, subject: Subject) -> DeletionReceipt:
        requested, shredded = iso(subject.shred_requested_at), iso(subject.shredded_at)
        if requested is None or shredded is None:
            raise SubjectShredded("subject is not shredded")
        held = self.floors.held_info(subject.id) if self.floors is not None else None
        payload = receipt_payload(subject.id, requested, shredded, self.signer.name, held)
        with translating():
            signature = self.signer.sign(payload)
            public_key = self.signer.signing_public_key()
        return DeletionReceipt(
            subject_id=subject.id,
            requested_at=requested,
            shredded_at=shredded,
            key_provider=self.signer.name,
            signature=base64.b64encode(signature).decode(),
            public_key=base64.b64encode(public_key).decode(),
            held=held,
        )

    def confirm(self, receipt: Mapping[str, Any]) -> bool:
        """More than the signature (which the service token can make for any bytes, a live
        subject's included): the shred is published outside the database and the subject's
        key is gone in Vault. What the console shows as "verified"."""
        subject_id = str(receipt.get("subject_id", ""))
        with translating():
            signed = verify_receipt(receipt, self.signer.signing_public_key())
            gone = signed and not self.keys.subject_key_exists(subject_id)
        decided = self.ledger is None or self.ledger.decided(subject_id)
        return bool(signed and gone and decided)

    def _notify(self, subject_id: str) -> None:
        if self.on_shredded is not None:
            self.on_shredded(subject_id)

    def _finish(self, subject_id: str) -> DeletionReceipt:
        try:
            if self.ledger is not None:  # every worker's cache drops it within `recheck`
                self.ledger.announce(subject_id)
            with translating():
                self.keys.destroy_subject_key(subject_id)
        except KeyProviderUnavailable as exc:
            raise ShredPending(
                f"subject {subject_id} is marked shredding and blocked, but the key provider is "
                "unavailable; the shred completes on retry or with `pii-vault shred --pending`"
            ) from exc
        with self.tx.begin() as session:
            subject = FieldStore.subject(session, subject_id, lock="update")
            for model in (BlindIndex, Token, FieldValue, FieldVersion, DataKeyRecord):
                session.execute(delete(model).where(model.subject_id == subject_id))
            subject.status = STATUS_SHREDDED
            subject.shredded_at = utcnow()
            subject.external_id = None
            subject.external_id_digest = None
            subject.external_id_ct = None
            subject.region = None
            subject.is_minor = False
            subject.updated_at = subject.shredded_at
        self.datakeys.evict_subject(subject_id)
        self.tx.compact()  # SQLite: no deleted page image of the subject stays in the WAL
        self._notify(subject_id)
        log.info("shred completed: subject %s (key destroyed, rows deleted)", subject_id)
        return self.receipt(subject)
