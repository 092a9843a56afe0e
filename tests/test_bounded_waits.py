"""Issue 10, point 2: every database wait is bounded and ends in a 503 problem, never a hang.

A lock holder keeps the audit head (or, on SQLite, the write lock) for longer than the
bound; a proxy swallows PostgreSQL's replies. Requests must answer 503 within a few
seconds of the bound, liveness must not depend on the database, and the service must
recover as soon as the lock is released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from access.runtime import compose
from api.app import AppConfig, create_app
from tests.api_support import PERSON, Api
from tests.conftest import POSTGRES_URL, Database, OpenBaoServer
from tests.faultproxy import FaultProxy
from vault.config import Settings
from vault.db import make_engine
from vault.errors import ConfigError, DatabaseUnavailable
from vault.transactions import Transactions, translating

BOUND = 1.0  # the database timeout these tests configure


@pytest.fixture
def bounded(database: Database, openbao: OpenBaoServer, tmp_path: Path) -> Iterator[object]:
    engine = make_engine(database.url, schema=database.schema, timeout=BOUND)
    runtime = compose(engine, openbao.provider())
    runtime.policy.seed_default()
    _, key = runtime.principals.create("svc:reg", ["registration-service"])
    app = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime))
    yield app.test_client(), {"Authorization": f"Bearer {key}"}
    runtime.close()


def _hold_audit_head(database: Database, seconds: float, ready: threading.Event) -> None:
    engine = make_engine(database.url, schema=database.schema, timeout=60)
    with engine.connect() as conn:
        if database.kind == "sqlite":
            conn.exec_driver_sql("UPDATE audit_head SET seq = seq WHERE id = 1")  # write lock
        else:
            conn.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))
        ready.set()
        time.sleep(seconds)
        conn.rollback()
    engine.dispose()


def test_held_audit_lock_answers_503_within_the_bound(bounded: object, database: Database) -> None:
    client, headers = bounded  # type: ignore[misc]
    ready = threading.Event()
    holder = threading.Thread(target=_hold_audit_head, args=(database, 8.0, ready))
    holder.start()
    assert ready.wait(10)
    try:
        started = time.monotonic()
        r = client.post(
            "/v1/subjects",
            headers=headers,
            json={"purpose": "account_registration", "fields": {"email": PERSON["email"]}},
        )
        waited = time.monotonic() - started
        assert r.status_code == 503, r.json
        assert r.content_type == "application/problem+json"
        assert r.json["code"] in ("audit_unavailable", "database_unavailable")
        if database.kind == "postgresql":
            assert r.json["code"] == "audit_unavailable"  # only the head row is locked
        assert waited < 3 * BOUND + 3, waited  # bounded, far below the 8 s lock
        assert client.get("/healthz").status_code == 200  # liveness needs no database
    finally:
        holder.join()
    r = client.post(
        "/v1/subjects",
        headers=headers,
        json={"purpose": "account_registration", "fields": {"email": PERSON["email"]}},
    )
    assert r.status_code == 201, r.json  # recovered as soon as the lock went


def test_a_swallowed_postgresql_reply_is_cut_off(postgres_admin: Engine) -> None:
    """No server timer sees a reply lost on the way: the client-side watchdog must."""
    proxy = FaultProxy("127.0.0.1", 5432)
    url = POSTGRES_URL.replace("127.0.0.1:5432", proxy.addr)
    engine = make_engine(url, timeout=BOUND)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable), Transactions(engine).begin() as session:
            session.execute(text("select 1"))
            proxy.set("hang")  # mid-transaction: a statement whose reply never comes
            session.execute(text("select 2"))
        assert time.monotonic() - started < 2 * BOUND + 2 + 2
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable), translating(), engine.connect() as conn:
            conn.execute(text("select 1"))
        # the ping is cut at 2 x BOUND + 2, the new connection gives up after BOUND
        assert time.monotonic() - started < 3 * BOUND + 2 + 2
        proxy.set("pass")
        with engine.connect() as conn:  # the cut connection was discarded; a new one works
            assert conn.execute(text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()
        proxy.close()


def test_batch_limit_is_the_deployments_own(api: Api, tmp_path: Path) -> None:
    """PII_VAULT_MAX_BATCH lowers the API's bound of 500 (worker timeout consistency)."""
    settings = Settings.from_env({"PII_VAULT_MAX_BATCH": "2", "PII_VAULT_HOME": str(tmp_path)})
    app = create_app(AppConfig(settings, runtime=api.runtime))
    records = [
        {"external_id": f"b-{i}", "fields": {"email": f"b{i}@example.com"}} for i in range(3)
    ]
    r = app.test_client().post(
        "/v1/tokenize",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "records": records},
    )
    assert r.status_code == 400 and r.json["errors"] == {"records": "at most 2"}
    assert api.runtime.vault.lookup("email", "b0@example.com") == []  # nothing stored


def test_settings_refuse_a_worker_timeout_below_the_request_bound() -> None:
    with pytest.raises(ConfigError, match="PII_VAULT_WORKER_TIMEOUT"):
        Settings.from_env({"PII_VAULT_DB_TIMEOUT": "30", "PII_VAULT_WORKER_TIMEOUT": "60"})
    with pytest.raises(ConfigError, match="PII_VAULT_ORPHAN_GRACE"):
        Settings.from_env({"PII_VAULT_ORPHAN_GRACE": "60"})
    with pytest.raises(ConfigError, match="PII_VAULT_MAX_BATCH"):
        Settings.from_env({"PII_VAULT_MAX_BATCH": "501"})
