"""The audit log against an insider who can rewrite the database and holds the service token.

Every attack here rewrites the log *consistently*: it recomputes the (public,
unkeyed) chain hashes, fixes ``audit_head`` and deletes the database's
checkpoints, so the chain alone verifies. Only the anchors outside the database
(real OpenBao KV, create-only for the service token) can catch it, and
``audit verify`` must name the first bad sequence number.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from nacl.signing import SigningKey
from sqlalchemy import delete, select, update

from access.anchoring import anchor_payload
from access.audit import AuditLog, AuditRecord, event_hash
from access.errors import AuditUnavailable
from access.models import AuditCheckpoint, AuditEvent, AuditHead
from keys.errors import KeyUnavailable
from keys.provider import AnchorStore
from tests.conftest import Database, OpenBaoServer

COLUMNS = [c.name for c in AuditEvent.__table__.columns]


def event(i: int) -> AuditRecord:
    return AuditRecord(
        principal="user:sam",
        action="reveal",
        purpose="customer_support",
        verdict="allow",
        request_id=f"req-{i}",
        subject_ids=["s-1"],
        fields=["passport_number"],
    )


@pytest.fixture
def log(database: Database, openbao: OpenBaoServer) -> Iterator[AuditLog]:
    provider = openbao.provider()
    audit = AuditLog(
        database.engine, provider, anchors=provider.anchor_store(), checkpoint_every=10
    )
    for i in range(1, 31):
        audit.append(event(i))
    audit.checkpoint()
    assert audit.verify().ok and audit.verify().checkpoints == 3
    yield audit
    provider.close()


def rewrite(
    database: Database, edit: Callable[[list[dict[str, object]]], list[dict[str, object]]]
) -> None:
    """Apply ``edit`` to the events, renumber, re-chain, fix the head, drop checkpoints."""
    with database.engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(AuditEvent).order_by(AuditEvent.seq))]
        rows = edit(rows)
        conn.execute(delete(AuditEvent))
        prev = "0" * 64
        for seq, values in enumerate(rows, start=1):
            row = AuditEvent(**{k: values[k] for k in COLUMNS})
            row.seq, row.prev_hash = seq, prev
            row.hash = event_hash(row)
            prev = row.hash
            conn.execute(
                AuditEvent.__table__.insert().values({k: getattr(row, k) for k in COLUMNS})
            )
        conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=len(rows), hash=prev))
        conn.execute(delete(AuditCheckpoint))


def assert_caught(log: AuditLog, seq: int, words: str) -> None:
    chain_only = AuditLog(log.engine)  # what the database alone can prove
    assert chain_only.verify().ok, "the rewrite must be consistent for this test to mean anything"
    result = log.verify()
    assert not result.ok, result
    assert result.first_bad_seq == seq, result
    assert words in str(result.problem), result


def test_deleted_event_with_rehash_and_dropped_checkpoints(
    log: AuditLog, database: Database
) -> None:
    rewrite(database, lambda rows: [r for r in rows if r["seq"] != 14])  # a support reveal
    assert_caught(log, 14, "anchored hash")


def test_truncated_tail_with_fixed_head(log: AuditLog, database: Database) -> None:
    rewrite(database, lambda rows: rows[:26])
    assert_caught(log, 27, "truncated")


def test_inserted_event(log: AuditLog, database: Database) -> None:
    def insert(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        forged = dict(rows[6], principal="user:mallory", request_id="forged")
        return [*rows[:7], forged, *rows[7:]]

    rewrite(database, insert)
    assert_caught(log, 8, "anchored hash")


def test_reordered_events(log: AuditLog, database: Database) -> None:
    def swap(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        rows[20], rows[21] = rows[21], rows[20]
        return rows

    rewrite(database, swap)
    assert_caught(log, 21, "anchored hash")


def test_forged_checkpoint_signed_with_another_key(log: AuditLog, database: Database) -> None:
    mallory = SigningKey.generate()
    with database.engine.begin() as conn:
        cp = conn.execute(select(AuditCheckpoint).where(AuditCheckpoint.seq == 20)).one()
        record = {"prev": 10, "seq": 20, "head": cp.head_hash}
        forged = base64.b64encode(mallory.sign(anchor_payload(record)).signature).decode()
        conn.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.seq == 20)
            .values(
                signature=forged,
                public_key=base64.b64encode(bytes(mallory.verify_key)).decode(),
            )
        )
    assert_caught(log, 20, "forged")


def test_unanchored_tail_is_bounded_and_reported(log: AuditLog, database: Database) -> None:
    """Events past the last anchor are the only ones the chain alone protects: bounded."""
    fresh = AuditLog(log.engine, log.signer, anchors=None, checkpoint_every=10)  # cannot anchor
    for i in range(25):
        fresh.append(event(100 + i))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 31 and "not anchored" in str(result.problem)


class FlakyStore:
    """A real anchor store that is down until told otherwise."""

    def __init__(self, inner: AnchorStore) -> None:
        self.inner, self.down = inner, True

    def _up(self) -> None:
        if self.down:
            raise KeyUnavailable("key provider unavailable: cannot reach Vault")

    def put(self, log: str, key: int, record: dict[str, object]) -> bool:
        self._up()
        return self.inner.put(log, key, record)

    def get(self, log: str, key: int) -> dict[str, object] | None:
        self._up()
        return self.inner.get(log, key)

    def keys(self, log: str) -> list[int]:
        self._up()
        return self.inner.keys(log)

    def logs(self) -> list[str]:
        self._up()
        return self.inner.logs()

    def identity(self) -> dict[str, object] | None:
        self._up()
        return self.inner.identity()

    def pin_identity(self, record: dict[str, object]) -> bool:
        self._up()
        return self.inner.pin_identity(record)


def test_failed_anchor_is_retried_never_skipped_and_fails_closed(
    database: Database, openbao: OpenBaoServer
) -> None:
    provider = openbao.provider()
    store = FlakyStore(provider.anchor_store())
    audit = AuditLog(
        database.engine, provider, anchors=store, checkpoint_every=5, max_unanchored=20
    )
    for i in range(20):
        audit.append(event(i))  # the events are committed; anchoring fails and is counted
    assert audit.anchor_failures >= 3
    with pytest.raises(AuditUnavailable, match="not anchored"):
        audit.append(event(99))  # too far behind: fail closed
    store.down = False
    assert audit.append(event(100)) == 21  # first retried: the 20 before it are anchored
    assert audit.anchorer is not None and audit.anchorer.tip == 20
    result = audit.verify()
    assert result.ok and result.events == 21 and result.checkpoints == 4, result
    provider.close()


def test_time_bound_anchors_a_quiet_tail(database: Database, openbao: OpenBaoServer) -> None:
    """Fewer events than the count bound still get anchored within the time bound."""
    import time

    from access.runtime import compose

    rt = compose(database.engine, openbao.provider(), checkpoint_every=100, anchor_seconds=0.2)
    for i in range(3):
        rt.audit.append(event(i))
    anchorer = rt.audit.anchorer
    assert anchorer is not None and (anchorer.tip or 0) == 0  # not due by count
    rt.start_maintenance()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and anchorer.tip != 3:
            time.sleep(0.05)
    finally:
        rt.maintenance.stop()
    assert anchorer.tip == 3
    result = rt.audit.verify()
    assert result.ok and result.checkpoints == 1, result
    rt.backend.close()
