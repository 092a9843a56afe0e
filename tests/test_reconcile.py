"""Issue 10, point 3: `pii-vault reconcile` finds orphan keys, damaged subjects and stuck
shreds, on every database and key provider; the maintenance sweep settles key intents."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from access.runtime import Runtime, compose, open_runtime
from api.cli import main
from keys.provider import KeyBackend
from tests.api_support import Api
from tests.conftest import Database, new_local_provider
from tests.test_cli import local_env
from vault.config import Settings
from vault.errors import SubjectDamaged
from vault.intents import IntentLost
from vault.models import KeyIntent, Subject
from vault.reconcile import Reconciler, TooManyOrphans
from vault.storage import FieldStore


@pytest.fixture(params=["local", "transit"])
def runtime(
    request: pytest.FixtureRequest, database: Database, tmp_path: Path
) -> Iterator[Runtime]:
    """Reconcile lists every key of its backend: give each test a backend of its own."""
    if request.param == "local":
        backend: KeyBackend = new_local_provider(tmp_path / "keys")
    else:
        backend = request.getfixturevalue("openbao").isolated_provider()
    rt = compose(database.engine, backend)
    yield rt
    backend.close()


def reconciler(runtime: Runtime, grace: float) -> Reconciler:
    return Reconciler(runtime.vault, runtime.shredder, runtime.backend, grace=grace)


def test_orphan_key_is_reported_then_destroyed_after_the_grace_period(runtime: Runtime) -> None:
    kept = runtime.vault.create_subject({"email": "kept@example.com"})
    orphan = str(uuid.uuid4())
    runtime.backend.create_subject_key(orphan)  # as a killed worker leaves it: no row
    young = reconciler(runtime, grace=3600).run(dry_run=True)
    assert young.orphan_keys == [] and young.young_keys == 1 and not young.broken
    report = reconciler(runtime, grace=0).run(dry_run=True)
    assert report.orphan_keys == [orphan] and report.broken
    assert runtime.backend.subject_key_exists(orphan)  # a dry run changes nothing
    report = reconciler(runtime, grace=0).run()
    assert report.orphan_keys == [orphan]
    assert not runtime.backend.subject_key_exists(orphan)
    assert runtime.backend.subject_key_exists(kept.subject_id)
    again = reconciler(runtime, grace=0).run(dry_run=True)
    assert not again.broken and again.orphan_keys == []


def test_intent_left_by_an_unfinished_write_is_settled(runtime: Runtime) -> None:
    intents = runtime.vault.intents
    lost, stored = str(uuid.uuid4()), runtime.vault.create_subject({"email": "s@example.com"})
    intents.create_key(lost)  # the process died before its transaction committed
    assert intents.pending(0) == [lost]
    assert intents.settle(0) == [lost]
    assert not runtime.backend.subject_key_exists(lost)
    assert intents.pending(0) == []
    assert runtime.backend.subject_key_exists(stored.subject_id)


def test_a_write_that_outlived_its_intent_commits_nothing(runtime: Runtime) -> None:
    sid = str(uuid.uuid4())
    runtime.vault.intents.create_key(sid)
    runtime.vault.intents.settle(0)  # the sweep took it: the request ran too long
    with pytest.raises(IntentLost), runtime.vault.tx.begin() as session:
        session.add(FieldStore.new_subject("CN", False, sid))
        runtime.vault.intents.claim(session, [sid])
    with runtime.vault.tx.begin(read_only=True) as session:
        assert session.get(Subject, sid) is None
        assert session.get(KeyIntent, sid) is None


def test_subject_whose_key_vanished_is_marked_damaged(runtime: Runtime) -> None:
    victim = runtime.vault.create_subject({"email": "v@example.com"})
    runtime.backend.destroy_subject_key(victim.subject_id)  # e.g. deleted by hand in Vault
    runtime.vault.cache.clear()
    report = reconciler(runtime, grace=600).run(dry_run=True)
    assert report.newly_damaged == [victim.subject_id] and report.broken
    assert runtime.vault.status(victim.subject_id) == "active"
    report = reconciler(runtime, grace=600).run()
    assert report.newly_damaged == [victim.subject_id] and report.damaged == 1
    assert runtime.vault.status(victim.subject_id) == "damaged"
    with pytest.raises(SubjectDamaged):
        runtime.vault.masked_view(victim.subject_id)
    assert reconciler(runtime, grace=600).run(dry_run=True).broken  # stays an alert


def test_stuck_shred_is_completed(runtime: Runtime) -> None:
    victim = runtime.vault.create_subject({"email": "s@example.com"})
    # A decided shred (published outside the database) whose key deletion never ran.
    assert runtime.shredder.ledger is not None
    runtime.shredder.ledger.publish(victim.subject_id)
    with runtime.vault.tx.begin() as session:
        subject = session.get(Subject, victim.subject_id)
        assert subject is not None
        subject.status, subject.shred_requested_at = "shredding", subject.created_at
    assert reconciler(runtime, grace=600).run(dry_run=True).shreds_completed == [victim.subject_id]
    report = reconciler(runtime, grace=600).run()
    assert report.shreds_completed == [victim.subject_id]
    assert runtime.vault.status(victim.subject_id) == "shredded"
    assert not runtime.backend.subject_key_exists(victim.subject_id)


def test_damage_found_by_a_read_is_a_clear_500_and_a_gauge(api: Api) -> None:
    sid, _ = api.register()
    api.runtime.backend.destroy_subject_key(sid)
    api.runtime.vault.cache.clear()
    r = api.client.get(
        f"/v1/subjects/{sid}?purpose=customer_support", headers=api.h("support-agent")
    )
    assert r.status_code == 500 and r.json["code"] == "subject_damaged", r.json
    assert "reconcile" in r.json["detail"]
    metrics = api.client.get("/metrics").get_data(as_text=True)
    assert "pii_vault_damaged_subjects 1.0" in metrics


def test_reconcile_command(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    assert CliRunner().invoke(main, ["init"], env=env).exit_code == 0
    runtime = open_runtime(Settings.from_env(env))
    orphan = str(uuid.uuid4())
    runtime.backend.create_subject_key(orphan)
    keystore = sqlite3.connect(tmp_path / "home" / "keys.db")  # make the key an hour old
    keystore.execute("UPDATE subject_key_created SET created = created - 3600")
    keystore.commit()
    keystore.close()
    result = CliRunner().invoke(main, ["reconcile", "--dry-run"], env=env)
    assert result.exit_code == 1, result.stderr
    assert json.loads(result.stdout)["orphan_keys"] == [orphan]
    result = CliRunner().invoke(main, ["reconcile"], env=env)
    assert result.exit_code == 0, result.stdout
    assert not runtime.backend.subject_key_exists(orphan)
    result = CliRunner().invoke(main, ["reconcile", "--dry-run"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["broken"] is False
    actions = [(e["action"], e["decision"]) for e in runtime.audit.events(limit=10)]
    assert ("reconcile", "completed") in actions
    runtime.close()


def test_a_mount_shared_with_another_deployment_is_not_emptied(runtime: Runtime) -> None:
    """Keys of another deployment look orphaned from here: reconcile must refuse."""
    for _ in range(3):
        runtime.vault.create_subject({"email": "mine@example.com"})
    foreign = [str(uuid.uuid4()) for _ in range(25)]
    for sid in foreign:
        runtime.backend.create_subject_key(sid)
    assert len(reconciler(runtime, grace=0).run(dry_run=True).orphan_keys) == 25
    with pytest.raises(TooManyOrphans):
        reconciler(runtime, grace=0).run()
    assert all(runtime.backend.subject_key_exists(sid) for sid in foreign)
