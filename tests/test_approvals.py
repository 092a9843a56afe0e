"""Issue 20: four-eyes approval. Over HTTP, SQLite and PostgreSQL, real OpenBao; a real
HTTP receiver takes the approvers' alerts.

Reported: any support agent with a ticket string revealed an identity document alone. On
the code before, the first reveal below answered the passport number (200).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from access.approvals import parse_rules
from access.errors import AccessConfigError
from access.runtime import compose
from tests.api_support import JUST, Api, Receiver, alerting_api
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALICE
from vault.errors import ConfigError

PEOPLE = {
    "sam": ["support-agent"],
    "kim": ["support-agent"],
    "lee": ["approver"],
    "both": ["support-agent", "approver"],
}


@pytest.fixture
def api(
    openbao: OpenBaoServer, database: Database, tmp_path: Path, receiver: Receiver
) -> Iterator[Api]:
    for built in alerting_api(database, openbao.provider(), tmp_path, receiver):
        for name, roles in PEOPLE.items():
            built.keys[name] = built.runtime.principals.create(f"user:{name}", roles)[1]
        yield built


def _reveal(api: Api, who: str, sid: str, field: str = "passport_number", **just: str) -> Any:
    return api.client.post(
        f"/v1/subjects/{sid}/reveal",
        headers=api.h(who),
        json={"purpose": "customer_support", "fields": [field], "justification": {**JUST, **just}},
    )


def _settle(api: Api, who: str, approval: int, verb: str = "approve") -> Any:
    return api.client.post(
        f"/v1/approvals/{approval}/{verb}", headers=api.h(who), json={"note": "checked the ticket"}
    )


def _events(api: Api, action: str) -> list[dict[str, Any]]:
    return list(reversed(api.runtime.audit.events(action=action, limit=100)))


def test_an_identity_document_needs_a_second_person_used_once_by_the_requester(
    api: Api, receiver: Receiver
) -> None:
    sid, _ = api.register()
    r = _reveal(api, "sam", sid)
    assert r.status_code == 403 and r.json["code"] == "approval_required", r.json
    approval = r.json["approval_id"]
    assert ALICE["passport_number"] not in r.get_data(as_text=True)
    assert _reveal(api, "sam", sid).json["approval_id"] == approval  # the same request again
    assert api.runtime.guard.alerts.flush()
    alerts = receiver.alerts()
    assert [a["kind"] for a in alerts] == ["approval_pending"]  # once, for the new request
    assert alerts[0]["detail"]["approval"] == approval
    assert alerts[0]["detail"]["requester"] == "user:sam"
    assert alerts[0]["detail"]["fields"] == ["passport_number"]
    assert JUST["reason"] not in str(alerts[0]) and ALICE["passport_number"] not in str(alerts[0])

    # Basic data is not guarded: revealed at once.
    assert _reveal(api, "sam", sid, "email").status_code == 200

    mine = api.client.get("/v1/approvals?view=mine", headers=api.h("sam")).json["approvals"]
    assert [(a["id"], a["status"]) for a in mine] == [(approval, "pending")]
    assert api.client.get("/v1/approvals", headers=api.h("sam")).status_code == 403
    # Another agent learns nothing of the request, nor whether an id exists (no oracle).
    assert api.client.get(f"/v1/approvals/{approval}", headers=api.h("kim")).status_code == 403
    assert api.client.get("/v1/approvals/99999", headers=api.h("kim")).status_code == 403
    r = _settle(api, "sam", approval)
    assert r.status_code == 403 and r.json["code"] == "forbidden"  # no approver role

    pending = api.client.get("/v1/approvals", headers=api.h("lee")).json["approvals"]
    assert [(a["id"], a["ticket"], a["reason"]) for a in pending] == [
        (approval, JUST["ticket"], JUST["reason"])
    ]
    r = _settle(api, "lee", approval)
    assert r.status_code == 200 and r.json["status"] == "approved", r.json
    assert r.json["decided_by"] == "user:lee"
    r = _settle(api, "lee", approval)
    assert r.status_code == 409 and r.json["code"] == "approval_closed"

    # Not for another agent, nor with another ticket.
    r = _reveal(api, "kim", sid)
    assert r.status_code == 403 and r.json["approval_id"] != approval
    r = _reveal(api, "sam", sid, ticket="CS-999")
    assert r.status_code == 403 and r.json["code"] == "approval_required"

    r = _reveal(api, "sam", sid)
    assert r.status_code == 200 and r.json["values"] == {
        "passport_number": ALICE["passport_number"]
    }
    seq = r.json["audit_seq"]
    r = _reveal(api, "sam", sid)  # once: the next reveal files a new request
    assert r.status_code == 403 and r.json["approval_id"] not in (approval,)
    used = api.client.get(f"/v1/approvals/{approval}", headers=api.h("sam")).json
    assert used["status"] == "used" and used["used_at"]

    # Every step is in the log: filed, decided, approved, and the reveal names the approval.
    steps = [e["outcome"].get("*", {}) for e in _events(api, "approve")]
    assert {"approval": approval, "status": "pending", "fields": ["passport_number"]} in steps
    assert any(s.get("status") == "approved" and s.get("approval") == approval for s in steps)
    reveal = next(e for e in api.runtime.audit.events(action="reveal", limit=50) if e["seq"] == seq)
    note = reveal["outcome"]["passport_number"]["approval"]
    assert note == {"approval": str(approval), "approved_by": "user:lee"}


def test_nobody_approves_their_own_request_and_a_rejection_stands(api: Api) -> None:
    sid, _ = api.register()
    own = _reveal(api, "both", sid).json["approval_id"]
    r = _settle(api, "both", own)
    assert r.status_code == 403 and r.json["code"] == "self_approval"
    assert own not in [
        a["id"] for a in api.client.get("/v1/approvals", headers=api.h("both")).json["approvals"]
    ]
    assert _settle(api, "lee", own, "reject").json["status"] == "rejected"
    r = _reveal(api, "both", sid)
    assert r.status_code == 403 and r.json["approval_id"] != own  # a new request, not reopened
    refused = [e for e in _events(api, "approve") if e["outcome"].get("refused") == "self_approval"]
    assert len(refused) == 1 and refused[0]["principal"] == "user:both"


def test_a_row_approved_or_reused_with_sql_approves_nothing(api: Api) -> None:
    """The DBA insider: approving a request, or clearing a use, in the database."""
    sid, _ = api.register()
    forged = _reveal(api, "sam", sid).json["approval_id"]
    with api.database.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE approvals SET status = 'approved', decided_by = 'user:lee', "
                "decided_at = :now WHERE id = :id"
            ),
            {"now": dt.datetime.now(dt.UTC), "id": forged},
        )
    r = _reveal(api, "sam", sid)
    assert r.status_code == 403 and r.json["code"] == "approval_required"
    assert r.json["approval_id"] != forged  # the forged row counts for nothing
    assert api.client.get(f"/v1/approvals/{forged}", headers=api.h("lee")).status_code == 404

    honest = r.json["approval_id"]
    assert _settle(api, "lee", honest).status_code == 200
    assert _reveal(api, "sam", sid).status_code == 200
    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE approvals SET status = 'approved', used_at = NULL WHERE id = :id"),
            {"id": honest},
        )
    r = _reveal(api, "sam", sid)
    assert r.status_code == 403 and r.json["approval_id"] not in (forged, honest)


def test_approvals_expire_by_themselves_and_the_expiry_is_audited(api: Api) -> None:
    sid, _ = api.register()
    desk = api.runtime.guard.approvals
    assert desk is not None
    approval = _reveal(api, "sam", sid).json["approval_id"]
    assert _settle(api, "lee", approval).status_code == 200
    desk.approvals.window = dt.timedelta(0)  # the approval's window has passed
    r = _reveal(api, "sam", sid)
    assert r.status_code == 403 and r.json["approval_id"] != approval
    desk.approvals.pending_for = dt.timedelta(0)  # and the new request's time
    assert desk.expire() == 2
    assert desk.expire() == 0  # once
    statuses = {
        a["id"]: a["status"]
        for a in api.client.get("/v1/approvals?view=mine", headers=api.h("sam")).json["approvals"]
    }
    assert set(statuses.values()) == {"expired"} and approval in statuses
    expired = [
        e for e in _events(api, "approve") if e["outcome"].get("*", {}).get("status") == "expired"
    ]
    assert len(expired) == 2 and {e["principal"] for e in expired} == {"user:sam"}


def test_four_eyes_is_configured_per_category_or_field_and_purpose(
    openbao: OpenBaoServer, database: Database
) -> None:
    categories, fields, purposes = {"identity", "basic"}, {"email"}, {"customer_support"}
    assert parse_rules(
        "email:customer_support,identity:customer_support", categories, fields, purposes
    ) == {"customer_support": frozenset({"email", "identity"})}
    assert parse_rules("none", categories, fields, purposes) == {}
    for bad in ("passprt:customer_support", "identity:customer_suport", "identity"):
        with pytest.raises(AccessConfigError):
            parse_rules(bad, categories, fields, purposes)
    with pytest.raises(ConfigError):
        compose(database.engine, openbao.provider(), four_eyes="identity:nope")
    off = compose(database.engine, openbao.provider(), four_eyes="none")
    assert all(name != "approval" for name, _ in off.decider.explain("reveal", "customer_support"))
    on = compose(database.engine, openbao.provider())
    named = dict(on.decider.explain("reveal", "customer_support"))
    assert "financial, identity" in named["approval"]
    off.close()
    on.close()
