"""Issue 17 (3, 4): shreds that the database cannot undo, and keys only a decided shred destroys.

Attack 3 as reported: warm two workers' data-key caches, shred the subject (200, signed
receipt, key destroyed in Vault), then put the pre-shred rows back (a restored backup)
and delete the new ``shred_log`` row: the worker that did not perform the shred kept
answering the subject's tokens in plaintext, 12 s and more later. Attack 4: ``UPDATE
subjects SET status = 'shredding'`` and the operators' ``shred --pending`` hard-deleted
a live subject's key. Two runtimes over one database stand for two workers (each its
own engine and cache), against real OpenBao, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from access.runtime import Runtime, compose
from api.app import AppConfig, create_app
from keys.transit import TransitKeyProvider
from tests.api_support import PERSON, Api, api_over
from tests.conftest import Database, OpenBaoServer
from tests.helpers import SUBJECT_TABLES, backup_subject, restore_subject
from vault.cache import DataKeyCache
from vault.config import Settings
from vault.models import (
    Subject,
    utcnow,
)

RECHECK = 1.0  # the bound under test (PII_VAULT_SHRED_RECHECK; 10 s by default)


@pytest.fixture
def mount(openbao: OpenBaoServer) -> tuple[str, str]:
    """A transit mount of this test's own (token, mount): reconcile lists every key, and
    the session's shared mount holds other tests' keys, older than the grace period."""
    name = f"t{uuid.uuid4().hex[:10]}"
    return openbao.server.bootstrap(name), name


@pytest.fixture
def api(
    openbao: OpenBaoServer, database: Database, tmp_path: Path, mount: tuple[str, str]
) -> Iterator[Api]:
    token, name = mount
    yield from api_over(database, TransitKeyProvider(openbao.addr, token, mount=name), tmp_path)


@pytest.fixture
def worker2(
    api: Api, openbao: OpenBaoServer, tmp_path: Path, mount: tuple[str, str]
) -> Iterator[tuple[Runtime, FlaskClient]]:
    token, name = mount
    runtime = compose(
        api.database.new_engine(),
        TransitKeyProvider(openbao.addr, token, mount=name),
        cache=DataKeyCache(recheck_seconds=RECHECK),
    )
    app = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime))
    yield runtime, app.test_client()
    runtime.vault.engine.dispose()


def _detokenize(client: FlaskClient, api: Api, token: str) -> Any:
    return client.post(
        "/v1/detokenize",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "tokens": [token]},
    )


def test_a_restored_backup_does_not_bring_a_shredded_subject_back(
    api: Api, worker2: tuple[Runtime, FlaskClient]
) -> None:
    _runtime2, client2 = worker2
    sid, tokens = api.register()
    token = tokens["phone"]
    email = PERSON["phone"]
    for client in (api.client, client2):  # both workers' caches hold the data key
        r = _detokenize(client, api, token)
        assert r.status_code == 200 and email in r.get_data(as_text=True), r.json
    backup = backup_subject(api.database.engine, sid)
    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        json={"purpose": "subject_access_request", "reason": "the customer asked"},
    )
    assert r.status_code == 200, r.json
    restore_subject(api.database.engine, sid, backup)
    time.sleep(RECHECK + 0.2)
    for client in (client2, api.client):
        r = _detokenize(client, api, token)
        assert email not in r.get_data(as_text=True), (r.status_code, r.json)
    # Reconcile re-applies the published shred: the restored rows go, the subject is shredded.
    report = api.runtime.reconciler().run()
    assert report.shreds_reapplied == [sid]
    with api.database.engine.connect() as conn:
        assert (
            conn.execute(select(Subject.status).where(Subject.id == sid)).scalar_one() == "shredded"
        )
        for model in SUBJECT_TABLES:
            table = model.__table__
            assert conn.execute(select(table).where(table.c.subject_id == sid)).first() is None
    assert api.runtime.reconciler().run().shreds_reapplied == []


def test_a_shredding_status_set_with_sql_destroys_no_key(api: Api) -> None:
    sid, tokens = api.register()
    with api.database.engine.begin() as conn:
        conn.execute(Subject.__table__.update().where(Subject.id == sid).values(status="shredding"))
    outcome = api.runtime.shredder.complete_pending()
    assert outcome.completed == [] and outcome.undecided == [sid]
    assert api.runtime.backend.subject_key_exists(sid)
    report = api.runtime.reconciler().run()
    assert report.shreds_undecided == [sid] and report.broken
    assert api.runtime.backend.subject_key_exists(sid)
    # Put back, the subject is whole: nothing was lost.
    with api.database.engine.begin() as conn:
        conn.execute(Subject.__table__.update().where(Subject.id == sid).values(status="active"))
    r = _detokenize(api.client, api, tokens["phone"])
    assert r.status_code == 200 and PERSON["phone"] in r.get_data(as_text=True)


def test_a_decided_shred_left_pending_completes(api: Api) -> None:
    """The ordinary case still works: a shred whose key deletion failed completes later."""
    sid, _ = api.register()
    api.runtime.shredder.ledger.publish(sid)  # type: ignore[union-attr]
    with api.database.engine.begin() as conn:
        conn.execute(
            Subject.__table__.update()
            .where(Subject.id == sid)
            .values(status="shredding", shred_requested_at=utcnow())
        )
    outcome = api.runtime.shredder.complete_pending()
    assert [r.subject_id for r in outcome.completed] == [sid]
    assert not api.runtime.backend.subject_key_exists(sid)


def test_a_receipt_signed_with_the_service_token_for_a_live_subject_is_not_confirmed(
    api: Api,
) -> None:
    """Attack 7: transit/sign/pii-audit signs any message, so the service token can make a
    receipt for a live subject whose signature verifies. The signature alone is documented as
    proving only who signed; ``confirm`` (the console's "verified") also asks Vault."""
    import base64

    from vault.receipts import receipt_payload, verify_receipt

    sid, _ = api.register()
    backend = api.runtime.backend
    now = "2026-12-02T00:00:00+00:00"
    forged = {
        "subject_id": sid,
        "requested_at": now,
        "shredded_at": now,
        "key_provider": backend.name,
        "signature": base64.b64encode(
            backend.sign(receipt_payload(sid, now, now, backend.name))
        ).decode(),
    }
    assert verify_receipt(forged, backend.signing_public_key())  # the documented limit
    assert not api.runtime.shredder.confirm(forged)
    real = api.runtime.shredder.shred(sid).to_dict()
    assert api.runtime.shredder.confirm(real)


def test_a_shred_announced_before_its_key_goes_is_refused_by_every_worker(
    api: Api, worker2: tuple[Runtime, FlaskClient]
) -> None:
    """Issue 21: workers learn of shreds from the published sequence (one Vault read per
    interval), not from the database. Between a shred's announcement and its key's
    deletion the key still unwraps; a worker that has seen the announcement neither
    answers from its cache nor caches the key again."""
    _runtime2, client2 = worker2
    sid, tokens = api.register()
    token = tokens["phone"]
    r = _detokenize(client2, api, token)
    assert r.status_code == 200 and PERSON["phone"] in r.get_data(as_text=True)
    api.runtime.shredder.ledger.announce(sid)  # type: ignore[union-attr]
    assert api.runtime.backend.subject_key_exists(sid)  # the key is still there
    time.sleep(RECHECK + 0.2)
    for _ in range(2):  # evicted, then not loaded again
        r = _detokenize(client2, api, token)
        assert PERSON["phone"] not in r.get_data(as_text=True), (r.status_code, r.json)


def test_a_slot_written_far_ahead_hides_no_shred(
    api: Api, worker2: tuple[Runtime, FlaskClient]
) -> None:
    """The service token can create any slot of the sequence: one written far ahead of the
    first free slot must not make workers skip the shreds written where they belong."""
    _runtime2, client2 = worker2
    sid, tokens = api.register()
    token = tokens["phone"]
    r = _detokenize(client2, api, token)
    assert r.status_code == 200 and PERSON["phone"] in r.get_data(as_text=True)
    ledger = api.runtime.shredder.ledger
    assert ledger is not None
    names = ledger.records.published_names(ledger._log(), "shred-seq")
    ahead = max([int(n) for n in names] or [0]) + 3
    bogus = {"v": 1, "subject_id": "nobody", "at": "2026-12-03T00:00:00+00:00"}
    assert ledger.records.publish(ledger._log(), "shred-seq", f"{ahead:020d}", bogus)
    backup = backup_subject(api.database.engine, sid)
    assert api.runtime.shredder.shred(sid).subject_id == sid
    restore_subject(api.database.engine, sid, backup)  # the database forgets the shred
    time.sleep(RECHECK + 0.2)
    r = _detokenize(client2, api, token)
    assert PERSON["phone"] not in r.get_data(as_text=True), (r.status_code, r.json)
