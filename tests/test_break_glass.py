"""Issue 20 (§2(2), emergencies): break-glass and the alert hook. Over HTTP, SQLite and
PostgreSQL, real OpenBao; a real HTTP receiver takes the alerts and checks the signature.

Reported: the ``emergency`` purpose had no grant at all — in an emergency staff would go
around the vault. On the code before, there was no break-glass route (404) and nobody was
told of anything.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import VerifyKey
from sqlalchemy import text

import access.break_glass as break_glass_module
from tests.api_support import Api, Receiver, alerting_api
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALICE


@pytest.fixture
def api(
    openbao: OpenBaoServer, database: Database, tmp_path: Path, receiver: Receiver
) -> Iterator[Api]:
    yield from alerting_api(database, openbao.provider(), tmp_path, receiver)


EMERGENCY = {"ticket": "EM-1", "reason": "ambulance needs the customer's address"}


def _view(api: Api, sid: str) -> Any:
    return api.client.get(
        f"/v1/subjects/{sid}", headers=api.h("support-agent"), query_string={"purpose": "emergency"}
    )


def _reveal(api: Api, sid: str) -> Any:
    return api.client.post(
        f"/v1/subjects/{sid}/reveal",
        headers=api.h("support-agent"),
        json={"purpose": "emergency", "fields": ["email"], "justification": EMERGENCY},
    )


def _open(api: Api, role: str = "support-agent", **body: Any) -> Any:
    return api.client.post(
        "/v1/break-glass",
        headers=api.h(role),
        json={"justification": EMERGENCY, **body},
    )


def test_break_glass_opens_alerts_is_audited_at_each_use_and_closes_by_itself(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, _ = api.register()
    r = _view(api, sid)
    assert r.status_code == 403 and r.json["code"] == "break_glass_required"
    assert _open(api, justification={"ticket": "", "reason": ""}).status_code == 400
    assert _open(api, role="registration-service").status_code == 403
    assert _open(api, minutes=600).status_code == 400  # past PII_VAULT_BREAK_GLASS_MINUTES
    r = _open(api, minutes=5)
    assert r.status_code == 201, r.json
    grant = r.json["grant"]
    assert api.runtime.guard.alerts.flush()
    assert receiver.kinds() == ["break_glass_opened"]
    headers, body = receiver.received[0]
    VerifyKey(api.runtime.backend.signing_public_key()).verify(
        body, base64.b64decode(headers["X-PII-Vault-Signature"])
    )  # raises if the signature does not verify
    assert json.loads(body)["detail"]["principal"] == "svc:support-agent"

    r = _reveal(api, sid)
    assert r.status_code == 200 and r.json["values"] == {"email": ALICE["email"]}
    use = next(e for e in api.runtime.audit.events(limit=5) if e["action"] == "reveal")
    assert use["outcome"]["email"]["break_glass"]["grant"] == str(grant)
    assert _view(api, sid).status_code == 200
    assert b"@" not in b"".join(b for _, b in receiver.received)  # alerts carry no values

    # Ten minutes later: the grant has closed by itself; the tick audits and alerts it.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Later:  # type: ignore[override]
            return later  # type: ignore[return-value]

    monkeypatch.setattr(
        break_glass_module,
        "dt",
        type("dt", (), {"datetime": Later, "timedelta": dt.timedelta, "UTC": dt.UTC}),
    )
    r = _reveal(api, sid)
    assert r.status_code == 403 and r.json["code"] == "break_glass_required"
    assert api.runtime.guard.close_expired_grants() == 1
    assert api.runtime.guard.close_expired_grants() == 0  # once
    assert api.runtime.guard.alerts.flush()
    assert receiver.kinds() == ["break_glass_opened", "break_glass_closed"]
    closed = api.last_event()
    assert closed["action"] == "break_glass" and closed["outcome"]["*"]["why"] == "expired"


def test_a_grant_opened_or_extended_with_sql_grants_nothing(api: Api) -> None:
    sid, _ = api.register()
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    with api.database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO break_glass (principal, ticket, reason, opened_at, expires_at)"
                " VALUES ('svc:support-agent', 'EM-9', 'forged', :now, :far)"
            ),
            {"now": dt.datetime.now(dt.UTC), "far": far},
        )
    assert _reveal(api, sid).json["code"] == "break_glass_required"
    assert _open(api, minutes=1).status_code == 201
    with api.database.engine.begin() as conn:
        conn.execute(text("UPDATE break_glass SET expires_at = :far"), {"far": far})
    assert _reveal(api, sid).json["code"] == "break_glass_required"


def test_a_failed_audit_verification_alerts(api: Api, receiver: Receiver) -> None:
    api.register()
    assert api.runtime.guard.verified().ok
    with api.database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET principal = 'svc:someone-else' WHERE seq = 2"))
    r = api.client.get("/v1/audit/verify", headers=api.h("auditor"))
    assert r.status_code == 200 and r.json["ok"] is False
    assert api.runtime.guard.alerts.flush()
    alerts = [json.loads(body) for _, body in receiver.received]
    assert [a["kind"] for a in alerts] == ["audit_verify_failed"]
    assert alerts[0]["detail"]["first_bad_seq"] == 2
