"""Issue 10, point 5: a shred's "completed" audit event converges on retry and on
`pii-vault shred --pending`, even when the first attempt to record it fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from access.audit import AuditLog, AuditRecord
from access.errors import AuditUnavailable
from access.runtime import open_runtime
from api.app import AppConfig, create_app
from api.cli import main
from tests.api_support import PERSON, Api
from tests.test_cli import local_env
from vault.config import Settings

ERASE = {"purpose": "subject_access_request", "reason": "the subject asked"}


def fail_completion_once(audit: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit log refuses the first "completed" event (e.g. its database went away)."""
    real: Callable[[AuditRecord], int] = audit.append
    state = {"failed": False}

    def append(record: AuditRecord) -> int:
        if record.verdict == "completed" and not state["failed"]:
            state["failed"] = True
            raise AuditUnavailable("audit log unavailable: the event was not recorded")
        return real(record)

    monkeypatch.setattr(audit, "append", append)


def completions(audit: AuditLog, subject_id: str) -> list[dict[str, object]]:
    return [
        e
        for e in audit.events(subject_id=subject_id, limit=1000)
        if e["action"] == "shred" and e["decision"] == "completed"
    ]


def test_failed_completion_event_is_recorded_on_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, _ = api.register()
    officer = api.h("privacy-officer")
    fail_completion_once(api.runtime.audit, monkeypatch)
    r = api.client.delete(f"/v1/subjects/{sid}", headers=officer, json=ERASE)
    assert r.status_code == 503 and r.json["code"] == "audit_unavailable"
    assert api.runtime.vault.status(sid) == "shredded"  # the shred itself finished
    assert completions(api.runtime.audit, sid) == []
    assert api.runtime.shredder.unaudited() == [sid]
    r = api.client.delete(f"/v1/subjects/{sid}", headers=officer, json=ERASE)
    assert r.status_code == 200 and r.json["status"] == "shredded"
    assert len(completions(api.runtime.audit, sid)) == 1
    assert api.runtime.shredder.unaudited() == []
    assert api.client.get("/v1/audit/verify", headers=api.h("auditor")).json["ok"] is True


def test_failed_completion_event_is_recorded_by_shred_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_env(tmp_path / "home")
    assert CliRunner().invoke(main, ["init"], env=env).exit_code == 0
    runtime = open_runtime(Settings.from_env(env))
    runtime.policy.seed_default()
    _, key = runtime.principals.create("svc:dpo", ["privacy-officer"])
    _, reg = runtime.principals.create("svc:reg", ["registration-service"])
    client = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime)).test_client()
    r = client.post(
        "/v1/subjects",
        headers={"Authorization": f"Bearer {reg}"},
        json={"purpose": "account_registration", "fields": {"email": PERSON["email"]}},
    )
    sid = r.json["subject_id"]
    fail_completion_once(runtime.audit, monkeypatch)
    r = client.delete(f"/v1/subjects/{sid}", headers={"Authorization": f"Bearer {key}"}, json=ERASE)
    assert r.status_code == 503
    assert completions(runtime.audit, sid) == []
    result = CliRunner().invoke(main, ["shred", "--pending"], env=env)
    assert result.exit_code == 0, result.stderr
    assert len(completions(runtime.audit, sid)) == 1
    assert runtime.shredder.unaudited() == []
    result = CliRunner().invoke(main, ["shred", "--pending"], env=env)  # converged: nothing new
    assert len(completions(runtime.audit, sid)) == 1
    runtime.close()
