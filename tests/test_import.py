"""Issue 21: ``pii-vault import FILE`` — bulk onboarding decided and audited like the API,
idempotent by external_id, a summary that names refused lines by number and code (never
a value). SQLite and PostgreSQL, the CLI in-process."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from access.runtime import open_runtime
from tests.conftest import Database
from tests.test_cli import local_env, run
from vault.config import Settings

PEOPLE = [
    {"external_id": f"shop-{n}", "fields": {"full_name": f"Ada {n}", "email": f"ada{n}@ex.org"}}
    for n in range(3)
]


def _file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "people.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_is_decided_audited_idempotent_and_names_refusals(
    tmp_path: Path, database: Database
) -> None:
    env = local_env(tmp_path / "home", database.process_url)
    assert run(["init"], env)[0] == 0
    assert (
        run(["principal", "create", "svc:registration", "--role", "registration-service"], env)[0]
        == 0
    )
    lines = [json.dumps(p) for p in PEOPLE] + [
        "{not json",
        json.dumps({"external_id": "shop-x", "fields": {"email": "nope"}}),  # invalid email
        json.dumps({"external_id": "shop-y", "fields": {"passport_number": "GB7654321"}}),
        json.dumps({"external_id": "shop-z", "consents": [], "fields": {"email": "z@ex.org"}}),
        "",
    ]
    path = _file(tmp_path, lines)
    code, out, _ = run(["import", str(path)], env)
    assert code == 1, out
    assert out.splitlines() == [
        "created 3, already present 0, refused 4",
        "  line 4: invalid_json",
        "  line 5: invalid",  # the email does not validate
        "  line 6: consent_required",  # a passport needs the separate consent (§1)
        "  line 7: invalid",  # a key the import does not take
    ]
    assert "ada0@ex.org" not in out and "GB7654321" not in out  # never a value

    # A re-run (after a crash, say) creates nothing twice.
    code, out, _ = run(["import", str(path)], env)
    assert code == 1 and out.splitlines()[0] == "created 0, already present 3, refused 4"

    runtime = open_runtime(Settings.from_env(env))
    try:
        with runtime.vault.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM subjects")).scalar_one() == 3
        writes = runtime.audit.events(action="write", principal="svc:registration", limit=20)
        created = [e for e in writes if e["decision"] == "completed"]
        assert len(created) == 1 and len(created[0]["subject_ids"]) == 3
        decided = [e for e in writes if e["decision"] != "completed"]
        assert len(decided) == 2  # one decision event per batch (the re-run sends the refused)
        assert "ada1@ex.org" not in json.dumps(writes)
        assert runtime.audit.verify().ok
    finally:
        runtime.close()

    clean = _file(
        tmp_path, [json.dumps({"external_id": "shop-9", "fields": {"email": "n@ex.org"}})]
    )
    code, out, _ = run(["import", str(clean)], env)
    assert code == 0 and out.strip() == "created 1, already present 0, refused 0"
    code, _, err = run(["import", str(clean), "--principal", "svc:nobody"], env)
    assert code != 0 and "not an enabled principal" in err
