"""Issue 20 (§4): a legal hold blocks the shred and the retention purge until it is lifted.
Over HTTP, SQLite and PostgreSQL, real OpenBao.

Reported: there was no legal hold — a subject under a preservation order could be shredded
and its records purged like any other. On the code before, the PUT below was a 404 and
the DELETE a 200.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text

from tests.api_support import JUST, Api
from vault.errors import SubjectOnHold

CASE = "Case 2026-CV-0042 (preservation order)"


def _hold(api: Api, sid: str, held: bool = True, role: str = "privacy-officer", **kw: Any) -> Any:
    body: dict[str, Any] = {"held": held, "reference": CASE, "justification": JUST, **kw}
    return api.client.put(f"/v1/subjects/{sid}/hold", headers=api.h(role), json=body)


def _shred(api: Api, sid: str) -> Any:
    return api.client.delete(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        json={"purpose": "legal_compliance", **JUST},
    )


def test_a_hold_blocks_shred_and_purge_until_lifted(api: Api) -> None:
    sid, _ = api.register()
    r = _hold(api, sid, justification=None)
    assert r.status_code == 400 and r.json["code"] == "justification_required"
    assert _hold(api, sid, role="support-agent").status_code == 403
    assert _hold(api, sid, held=False).status_code == 400  # nothing to lift yet
    r = _hold(api, sid)
    assert r.status_code == 200 and r.json["held"] is True, r.json
    assert [h["kind"] for h in r.json["legal_holds"]] == ["hold"]

    r = _shred(api, sid)
    assert r.status_code == 409 and r.json["code"] == "legal_hold", r.json
    with pytest.raises(SubjectOnHold):  # every path: shred-deactivated goes here too
        api.runtime.shredder.shred(sid)
    view = api.client.get(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "legal_compliance"},
    )
    assert view.status_code == 200  # still there
    refused = [
        e
        for e in api.runtime.audit.events(action="shred", limit=20)
        if e["outcome"].get("*", {}).get("refused") == "legal_hold"
    ]
    assert len(refused) == 1

    # The purge leaves a held subject's expired values alone.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE field_values SET retain_until = :t WHERE subject_id = :s AND field = :f"),
            {"t": past, "s": sid, "f": "phone"},
        )
    assert api.runtime.purge_expired() == 0

    # Lifting is recorded; a lift written with SQL would not have been (next test).
    legal = {"purpose": "legal_compliance", **JUST}
    export = api.client.get(
        f"/v1/subjects/{sid}/export", headers=api.h("privacy-officer"), query_string=legal
    )
    assert export.status_code == 200, export.json
    assert [h["kind"] for h in export.json["legal_holds"]] == ["hold"]
    own = api.client.get(
        f"/v1/subjects/{sid}/export",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "subject_access_request"},
    )
    assert "legal_holds" not in own.json  # the office's matter, not the subject's copy
    r = _hold(api, sid, held=False)
    assert r.status_code == 200 and r.json["held"] is False
    assert api.runtime.purge_expired() == 1
    assert _shred(api, sid).status_code == 200
    kinds = [e["outcome"]["*"].get("kind") for e in api.runtime.audit.events(action="hold")]
    assert sorted(k for k in kinds if k) == ["hold", "lifted"]


def test_a_lift_written_with_sql_lifts_nothing(api: Api) -> None:
    """The DBA insider: turning the hold into a lift, or adding a lift, in the database."""
    sid, _ = api.register()
    assert _hold(api, sid).status_code == 200
    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE legal_holds SET kind = 'lifted' WHERE subject_id = :s"), {"s": sid}
        )
    assert _shred(api, sid).status_code == 409
    with api.database.engine.begin() as conn:
        conn.execute(text("UPDATE legal_holds SET kind = 'hold' WHERE subject_id = :s"), {"s": sid})
        conn.execute(
            text(
                "INSERT INTO legal_holds (subject_id, kind, reference, actor, recorded_at) "
                "VALUES (:s, 'lifted', 'forged', 'user:dba', :t)"
            ),
            {"s": sid, "t": dt.datetime.now(dt.UTC)},
        )
    assert _shred(api, sid).status_code == 409
