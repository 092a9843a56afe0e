"""Issue 17 (2): the anchored audit log replaced by someone who can write the database.

The attack as reported: delete the events you want gone, rehash the chain, set a fresh
``audit_head.log_id`` and delete ``audit_checkpoints`` - `audit verify` said "intact ...
0 signed anchors" and the service anchored the forgery itself under the new namespace.
Or wipe every event and reset the head: verify exited 0 on an empty log. Each case
here passed verification on the code before the log's identity was pinned at init.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from access.audit import GENESIS, AuditLog
from access.errors import AuditUnavailable
from access.models import AuditCheckpoint, AuditEvent, AuditHead
from access.runtime import Runtime, compose
from keys.errors import KeyProviderError
from keys.transit import TransitKeyProvider
from keys.transit_setup import bootstrap_transit, create_service_token
from tests.conftest import Database, OpenBaoServer, new_local_provider
from tests.test_audit_anchors import event, rewrite

EVERY = 10


@pytest.fixture
def deployment(database: Database, tmp_path: Path) -> Iterator[Runtime]:
    """A deployment initialised as `pii-vault init` does: identity pinned, genesis anchored."""
    runtime = compose(
        database.engine, new_local_provider(tmp_path / "keys"), checkpoint_every=EVERY
    )
    _log_id, pinned, anchored = runtime.pin_audit_log("operator:test")
    assert pinned and anchored == 1
    runtime.policy.seed_default()
    for i in range(15):
        runtime.audit.append(event(i))
    runtime.audit.checkpoint()
    assert runtime.audit.verify().ok
    yield runtime
    runtime.backend.close()


def _reset_log_id(database: Database) -> str:
    fresh = str(uuid.uuid4())
    with database.engine.begin() as conn:
        conn.execute(update(AuditHead).where(AuditHead.id == 1).values(log_id=fresh))
        conn.execute(delete(AuditCheckpoint))
    return fresh


def _fresh_audit(runtime: Runtime) -> AuditLog:
    """What a restarted service (or `audit verify`) builds: nothing cached."""
    return AuditLog(
        runtime.vault.engine,
        runtime.backend,
        anchors=runtime.backend.anchor_store(),
        checkpoint_every=EVERY,
    )


def test_a_rewritten_log_under_a_fresh_log_id_is_caught(
    deployment: Runtime, database: Database
) -> None:
    rewrite(database, lambda rows: [r for r in rows if r["seq"] not in (5, 6, 7)])
    _reset_log_id(database)
    audit = _fresh_audit(deployment)
    result = audit.verify()
    assert not result.ok and "pinned" in str(result.problem), result
    # The service refuses to start on it, and never anchors it under any namespace.
    with pytest.raises(AuditUnavailable):
        audit.check_extends_anchors()
    with pytest.raises(AuditUnavailable):
        audit.checkpoint()
    assert len(deployment.backend.anchor_store().logs()) == 1


def test_a_rewritten_log_keeping_its_id_is_not_anchored_by_the_service(
    deployment: Runtime, database: Database
) -> None:
    rewrite(database, lambda rows: [r for r in rows if r["seq"] not in (5, 6, 7)])
    audit = _fresh_audit(deployment)
    assert not audit.verify().ok
    with pytest.raises(AuditUnavailable, match="does not extend"):
        audit.check_extends_anchors()
    with pytest.raises(AuditUnavailable):
        audit.checkpoint()


def test_an_emptied_log_is_caught(deployment: Runtime, database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(delete(AuditEvent))
        conn.execute(delete(AuditCheckpoint))
        conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=0, hash=GENESIS))
    for audit in (_fresh_audit(deployment), deployment.audit):
        result = audit.verify()
        assert not result.ok and "truncated" in str(result.problem), result
    _reset_log_id(database)  # and with a fresh id as well
    assert not _fresh_audit(deployment).verify().ok


def test_a_second_anchor_namespace_is_a_finding(deployment: Runtime) -> None:
    store = deployment.backend.anchor_store()
    assert store.put(str(uuid.uuid4()), 0, {"v": 1, "prev": 0, "seq": 1})
    result = _fresh_audit(deployment).verify()
    assert not result.ok and "second anchor namespace" in str(result.problem)


def test_an_unpinned_log_with_no_anchor_once_one_is_due_fails(
    database: Database, tmp_path: Path
) -> None:
    """Before init pins it (a deployment not yet upgraded): "no anchors" is a finding once
    the first anchor is due, not a clean bill of health."""
    provider = new_local_provider(tmp_path / "keys")
    audit = AuditLog(database.engine)  # appends without anchoring (as a forger would)
    for i in range(EVERY + 1):
        audit.append(event(i))
    anchored = AuditLog(
        database.engine, provider, anchors=provider.anchor_store(), checkpoint_every=EVERY
    )
    result = anchored.verify()
    assert not result.ok and "no anchor covers" in str(result.problem), result
    provider.close()


def test_verify_reports_the_unanchored_tail_and_shutdown_anchors_it(deployment: Runtime) -> None:
    for i in range(3):
        deployment.audit.append(event(100 + i))
    result = deployment.audit.verify()
    assert result.ok and result.unanchored == 3 and result.unanchored_age is not None
    assert "3 not yet anchored" in result.summary()
    deployment.audit.anchor_tail()  # what Runtime.close does on a graceful shutdown
    assert deployment.audit.verify().unanchored == 0


def test_the_service_token_creates_anchors_under_the_pinned_log_only(
    own_openbao: OpenBaoServer,
) -> None:
    """With the identity pinned, the service policy names the log: the service token cannot
    start a second namespace, nor rewrite the identity."""
    root = own_openbao.server.client()
    log_id = str(uuid.uuid4())
    bootstrap_transit(root, log_id=log_id)
    from keys.anchors import KvAnchors

    assert KvAnchors(root).pin_identity({"v": 1, "log_id": log_id})
    provider = TransitKeyProvider(own_openbao.addr, create_service_token(root))
    store = provider.anchor_store()
    assert store.identity() == {"v": 1, "log_id": log_id}
    assert store.put(log_id, 0, {"seq": 1})
    with pytest.raises(KeyProviderError):
        store.put(str(uuid.uuid4()), 0, {"seq": 1})
    assert store.pin_identity({"v": 1, "log_id": "forged"}) is False  # refused, nothing written
    assert store.identity() == {"v": 1, "log_id": log_id}
    provider.close()
