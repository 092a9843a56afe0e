"""Readiness means ready (issue 23, finding 3).

With the schema one migration behind, ``/readyz`` answered ``ready`` while creating a
subject answered 503. Now it fails, naming the reason, whenever a request would: the
schema not at head, the audit log not extending its newest anchor, a dependency down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from api.cli import EXIT_CONFIG
from tests.api_support import Api, api_over
from tests.conftest import Database, new_local_provider
from tests.test_cli import local_env, run
from vault.db import alembic_config, schema_state


@pytest.fixture
def local_api(database: Database, tmp_path: Path) -> Iterator[Api]:
    api = api_over(database, new_local_provider(tmp_path / "keys"), tmp_path)
    yield from api


def _step(database: Database, where: str) -> None:
    cfg = alembic_config("access:migrations")
    with database.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        if where == "down":
            command.downgrade(cfg, "-1")
        else:
            command.upgrade(cfg, "head")


def test_schema_behind_is_not_ready(local_api: Api, database: Database) -> None:
    r = local_api.client.get("/readyz")
    assert r.status_code == 200, r.json
    assert r.json["database_schema"] == "ok" and "reasons" not in r.json

    _step(database, "down")  # as after deploying a version whose migration did not run
    assert schema_state(database.engine) == "behind"
    r = local_api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json["status"] == "unavailable" and r.json["database_schema"] == "behind"
    assert any("run `pii-vault init`" in reason for reason in r.json["reasons"])

    _step(database, "up")  # `pii-vault init` migrates
    r = local_api.client.get("/readyz")
    assert r.status_code == 200 and r.json["database_schema"] == "ok", r.json


def test_a_log_that_no_longer_extends_its_anchor_is_not_ready(
    local_api: Api, database: Database
) -> None:
    local_api.register()
    local_api.runtime.audit.checkpoint()
    assert local_api.client.get("/readyz").status_code == 200
    with database.engine.begin() as conn:  # a DBA rewrites the anchored tip
        conn.execute(text("UPDATE audit_events SET hash = :h WHERE seq = 1"), {"h": "0" * 64})
        tip = conn.scalar(text("SELECT max(seq) FROM audit_checkpoints"))
        conn.execute(
            text("UPDATE audit_events SET hash = :h WHERE seq = :s"), {"h": "f" * 64, "s": tip}
        )
    r = local_api.client.get("/readyz")
    assert r.status_code == 503, r.json
    assert r.json["audit_anchors"] == "broken"
    assert any("does not extend its newest anchor" in reason for reason in r.json["reasons"])


def test_commands_before_init_name_the_missing_schema(tmp_path: Path) -> None:
    env = local_env(tmp_path / "home")
    for args in (["shred", "--pending"], ["audit", "verify"], ["reconcile"]):
        code, _, err = run(args, env)
        assert code == EXIT_CONFIG, (args, err)
        assert "schema is not initialised" in err and "run `pii-vault init`" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_schema_ahead_of_this_version_stays_ready(local_api: Api, database: Database) -> None:
    """Mid-upgrade: a newer version migrated the schema; this older process keeps serving."""
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version_access SET version_num = 'a9999'"))
    assert schema_state(database.engine) == "ahead"
    r = local_api.client.get("/readyz")
    assert r.status_code == 200 and r.json["database_schema"] == "ahead", r.json
