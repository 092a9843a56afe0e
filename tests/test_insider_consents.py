"""Issue 19, the database writer against consents and restrictions: a consent made
``granted`` with SQL is not in force, a restriction "lifted" with SQL still holds, a
deactivation inserted with SQL never leads to a shred. Over HTTP, SQLite and PostgreSQL.

Before the row tags (migration a0009) each of these SQL edits was believed: the forged
consent let recommendation read browsing history.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text

from tests.api_support import Api


def _browse(api: Api, sid: str) -> tuple[int, Any]:
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("recommendation-service"),
        json={"purpose": "personalization", "fields": {"browsing_history": "/tents"}},
    )
    return r.status_code, r.json


def _consent(api: Api, sid: str, granted: bool) -> None:
    r = api.client.put(
        f"/v1/subjects/{sid}/consents/personalization",
        headers=api.h("privacy-officer"),
        json={"granted": granted, "given_by": "subject"},
    )
    assert r.status_code == 200, r.json


def test_a_consent_granted_with_sql_is_not_in_force(api: Api) -> None:
    sid, _ = api.register()
    _consent(api, sid, False)  # withdrawn, properly recorded
    assert _browse(api, sid)[0] == 403
    with api.database.engine.begin() as conn:
        conn.execute(text("UPDATE consents SET granted = true WHERE subject_id = :s"), {"s": sid})
    status, body = _browse(api, sid)
    assert status == 403 and body["code"] == "consent_required"
    with api.database.engine.begin() as conn:  # a whole new row, copied from a valid one
        conn.execute(
            text(
                "INSERT INTO consents (subject_id, purpose, granted, given_by, policy_version,"
                " recorded_at, tag) SELECT subject_id, purpose, true, given_by, policy_version,"
                " recorded_at, tag FROM consents WHERE subject_id = :s"
            ),
            {"s": sid},
        )
    assert _browse(api, sid)[0] == 403
    _consent(api, sid, True)  # the vault's own record counts
    assert _browse(api, sid)[0] == 200


def test_a_restriction_lifted_with_sql_still_holds(api: Api) -> None:
    sid, _ = api.register()
    _consent(api, sid, True)
    r = api.client.put(
        f"/v1/subjects/{sid}/restrictions",
        headers=api.h("privacy-officer"),
        json={"purpose": "subject_access_request", "scope": "personalization", "kind": "objection"},
    )
    assert r.status_code == 200
    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE restrictions SET kind = 'lifted' WHERE subject_id = :s"), {"s": sid}
        )
    status, body = _browse(api, sid)
    assert status == 403 and body["code"] == "restricted"


def test_a_deactivation_inserted_with_sql_shreds_nobody(api: Api) -> None:
    sid, _ = api.register()
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    with api.database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO restrictions (subject_id, scope, kind, recorded_at)"
                " VALUES (:s, '*', 'deactivated', :t)"
            ),
            {"s": sid, "t": old},
        )
    restrictions = api.runtime.decider.restrictions
    assert restrictions is not None
    assert restrictions.deactivated_before(dt.datetime.now(dt.UTC)) == []
    # It does count as a restriction (the cautious reading): service access is refused.
    assert _browse(api, sid)[0] == 403
