"""The audit chain: intact logs verify; every kind of tampering is found and located."""

from __future__ import annotations

import base64
import multiprocessing
import secrets
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from sqlalchemy import delete, select, text, update

from access.anchoring import anchor_payload
from access.audit import AuditLog, AuditRecord, event_hash
from access.errors import AuditUnavailable, Forbidden
from access.events import Caller
from access.models import AuditCheckpoint, AuditEvent, AuditHead
from access.purposes import Justification
from access.runtime import compose
from keys.local import LocalKeyProvider
from keys.provider import KeyBackend
from tests.conftest import Database
from tests.helpers import ALICE, SENSITIVE_CONSENTS, approve_reveal
from vault.db import make_engine
from vault.results import TokenizeRecord


def record(i: int, subject: str = "s-1") -> AuditRecord:
    return AuditRecord(
        principal="user:alice",
        action="reveal",
        purpose="customer_support",
        verdict="allow" if i % 3 else "deny",
        request_id=f"req-{i}",
        subject_ids=[subject],
        fields=["email"],
        outcome={"email": {"redaction": "plain", "reason": None, "rule": "p, ..."}},
        justification=Justification("CS-1234", f"customer called, case {i}"),
    )


@pytest.fixture
def log(database: Database, provider: KeyBackend) -> AuditLog:
    audit = AuditLog(
        database.engine, provider, anchors=provider.anchor_store(), checkpoint_every=10
    )
    for i in range(25):
        audit.append(record(i))
    return audit


def test_intact_log_verifies(log: AuditLog) -> None:
    result = log.verify()
    assert result.ok, result
    assert result.events == 25 and result.checkpoints == 2
    assert result.summary().startswith("audit log intact: 25 events, 2 signed anchors")
    assert log.checkpoint() == 25
    assert log.verify().checkpoints == 3


def test_events_hold_no_values(database: Database, provider: KeyBackend) -> None:
    """Every kind of call, allowed and denied, leaves names and decisions, never a value."""
    rt = compose(database.engine, provider)
    rt.policy.seed_default()
    who = {role: Caller(f"svc:{role}") for role in ("registration-service", "support-agent")}
    for caller in who.values():
        rt.principals.create(caller.principal, [caller.principal[4:]])
    reg, support = who["registration-service"], who["support-agent"]
    fields = {k: ALICE[k] for k in ("full_name", "email", "phone", "passport_number")}
    created = rt.guard.create_subject(
        reg, "account_registration", fields, external_id="a-1", consents=SENSITIVE_CONSENTS
    )
    sid = created.subject_id
    just = Justification("CS-1", "customer asked")
    rt.guard.detokenize(reg, "identity_verification", list(created.tokens.values()))
    rt.guard.masked_view(support, sid, "customer_support")
    approve_reveal(rt, support, sid, ["passport_number", "email"], just)  # four-eyes
    rt.guard.reveal(support, sid, "customer_support", ["passport_number", "email"], just)
    with pytest.raises(Forbidden):
        rt.guard.reveal(support, sid, "customer_support", ["face_template"], just)
    rt.guard.tokenize(
        reg,
        "account_registration",
        [TokenizeRecord(fields={"phone": ALICE["phone"]}, subject_id=sid)],
    )
    with database.engine.connect() as conn:
        stored = repr(conn.execute(select(AuditEvent)).all())
    events = rt.audit.events(limit=1000)
    assert len(events) >= 6 and stored.count("svc:support-agent") >= 3
    for value in fields.values():
        assert value not in stored and value not in repr(events), value


def test_events_filter_by_subject(log: AuditLog) -> None:
    log.append(record(99, subject="s-2"))
    events = log.events(subject_id="s-2")
    assert [e["request_id"] for e in events] == ["req-99"]
    assert events[0]["justification"] == {"ticket": "CS-1234", "reason": "customer called, case 99"}
    assert len(log.events(limit=5)) == 5


def _rows(database: Database) -> dict[int, AuditEvent]:
    with database.engine.connect() as conn:
        return {r.seq: r for r in conn.execute(select(AuditEvent)).all()}  # type: ignore[misc]


def test_modified_event_is_found(log: AuditLog, database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 7).values(decision="allow!"))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 7 and "modified" in str(result.problem)
    assert "seq 7" in result.summary()


def test_deleted_event_is_found(log: AuditLog, database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq == 7))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 7 and "missing" in str(result.problem)


def _shift_from(database: Database, seq: int) -> None:
    with database.engine.begin() as conn:
        conn.execute(
            update(AuditEvent).where(AuditEvent.seq >= seq).values(seq=AuditEvent.seq + 1000)
        )
        conn.execute(
            update(AuditEvent).where(AuditEvent.seq >= 1000).values(seq=AuditEvent.seq - 999)
        )


def test_inserted_event_is_found(log: AuditLog, database: Database) -> None:
    rows = _rows(database)
    _shift_from(database, 7)
    forged = AuditEvent(
        seq=7,
        ts=rows[6].ts,
        request_id="forged",
        principal="user:mallory",
        action="reveal",
        purpose="customer_support",
        subject_ids='["s-1"]',
        fields='["email"]',
        decision="allow",
        outcome="{}",
        justification_ticket=None,
        justification_reason=None,
        prev_hash=rows[6].hash,
    )
    forged.hash = event_hash(forged)  # a careful forger re-hashes the inserted event...
    with database.engine.begin() as conn:
        conn.execute(
            AuditEvent.__table__.insert().values(
                {c.name: getattr(forged, c.name) for c in AuditEvent.__table__.columns}
            )
        )
    result = log.verify()
    # ...so the break shows at its successor, whose previous hash no longer matches.
    assert not result.ok and result.first_bad_seq == 8 and "chain broken" in str(result.problem)


def test_naive_insert_is_found_at_its_own_seq(log: AuditLog, database: Database) -> None:
    rows = _rows(database)
    _shift_from(database, 7)
    values = {c.name: getattr(rows[7], c.name) for c in AuditEvent.__table__.columns}
    values.update(seq=7, request_id="forged")
    with database.engine.begin() as conn:
        conn.execute(AuditEvent.__table__.insert().values(values))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 7


def test_reordered_events_are_found(log: AuditLog, database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 7).values(seq=1007))
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 8).values(seq=7))
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 1007).values(seq=8))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 7 and "chain broken" in str(result.problem)


def test_truncated_tail_is_found(log: AuditLog, database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.seq > 22))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 23


def test_full_chain_rewrite_is_caught_by_the_anchors(log: AuditLog, database: Database) -> None:
    """Rewrite event 5 and re-hash everything after it, head included: the anchors hold."""
    rows = dict(sorted(_rows(database).items()))
    prev = rows[4].hash
    with database.engine.begin() as conn:
        for seq in range(5, 26):
            row = AuditEvent(
                **{c.name: getattr(rows[seq], c.name) for c in AuditEvent.__table__.columns}
            )
            if seq == 5:
                row.decision = "allow"
                row.principal = "user:someone-else"
            row.prev_hash = prev
            row.hash = event_hash(row)
            prev = row.hash
            conn.execute(
                update(AuditEvent)
                .where(AuditEvent.seq == seq)
                .values(
                    decision=row.decision,
                    principal=row.principal,
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                )
            )
        conn.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 5
    assert "anchored hash" in str(result.problem)


def test_bad_checkpoint_signature_is_found(log: AuditLog, database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.seq == 20)
            .values(signature=base64.b64encode(bytes(64)).decode())
        )
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 20 and "forged" in str(result.problem)


def test_checkpoint_resigned_with_another_key_is_found(log: AuditLog, database: Database) -> None:
    """The stored public key is not trusted: verification pins the key provider's key."""
    mallory = SigningKey.generate()
    with database.engine.connect() as conn:
        cp = conn.execute(select(AuditCheckpoint).where(AuditCheckpoint.seq == 10)).one()
    forged = mallory.sign(anchor_payload({"seq": 10, "head": cp.head_hash})).signature
    with database.engine.begin() as conn:
        conn.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.seq == 10)
            .values(
                signature=base64.b64encode(forged).decode(),
                public_key=base64.b64encode(bytes(mallory.verify_key)).decode(),
            )
        )
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 10 and "forged" in str(result.problem)


def test_failed_append_raises_audit_unavailable(database: Database) -> None:
    audit = AuditLog(database.engine)
    audit.append(record(1))
    with database.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable, match="not recorded"):
        audit.append(record(2))


# -- concurrency: 8 writer processes ------------------------------------------------------


def _writer(url: str, schema: str | None, keystore: str, master: bytes, n: int) -> None:
    engine = make_engine(url, schema=schema)
    signer = LocalKeyProvider(keystore, master)
    audit = AuditLog(engine, signer, anchors=signer.anchor_store(), checkpoint_every=7)
    for i in range(n):
        audit.append(record(i, subject=f"proc-{i}"))
    engine.dispose()


def test_eight_concurrent_writer_processes_keep_the_chain(
    database: Database, tmp_path: Path
) -> None:
    keystore, master = str(tmp_path / "keys.db"), secrets.token_bytes(32)
    LocalKeyProvider(keystore, master).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(database.url, database.schema, keystore, master, 25))
        for _ in range(8)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * 8
    signer = LocalKeyProvider(keystore, master)
    audit = AuditLog(database.engine, signer, anchors=signer.anchor_store(), checkpoint_every=7)
    result = audit.verify()
    assert result.ok, result
    assert result.events == 200
    assert result.checkpoints >= 1


def test_free_text_with_nul_is_stored_safely(database: Database) -> None:
    """PostgreSQL text refuses NUL; a justification typed with one must not break the log."""
    audit = AuditLog(database.engine)
    audit.append(
        AuditRecord(
            principal="user:a",
            action="reveal",
            purpose="customer_support",
            verdict="deny",
            justification=Justification("CS-\x001", "a\x00b"),
        )
    )
    event = audit.events(limit=1)[0]
    assert event["justification"] == {"ticket": "CS-\ufffd1", "reason": "a\ufffdb"}
    assert audit.verify().ok


def test_group_commit_keeps_one_gap_free_chain_and_each_callers_seq(database: Database) -> None:
    """Concurrent appends in one process share commits: every caller gets the seq of its
    own event, numbers are gap-free, and the chain verifies."""
    import threading

    log = AuditLog(database.engine)
    got: dict[str, int] = {}
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(15):
            rid = f"r{n}-{i}"
            seq = log.append(
                AuditRecord(
                    principal="svc:x",
                    action="reveal",
                    purpose=None,
                    verdict="allow",
                    request_id=rid,
                )
            )
            with lock:
                got[rid] = seq

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got.values()) == list(range(1, 12 * 15 + 1))
    events = {e["request_id"]: e["seq"] for e in log.events(limit=1000)}
    assert events == got
    assert log.verify().ok
