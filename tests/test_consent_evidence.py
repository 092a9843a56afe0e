"""Issue 20 (proof of consent): who consented, how, to which text — recorded, audited
whole, and kept in a pseudonymous ledger that outlives the shred for the limitation
period. Over HTTP, SQLite and PostgreSQL, real OpenBao.

Reported: a consent row had no evidence, the consent_write event omitted granted/given_by/
edition, and consents were deleted at shred, so the vault could not later show that
processing was consented. On the code before, ``channel`` was refused (400 extra field).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from tests.api_support import Api

TEXT_2024_11 = "12959a0caf18e9139ca3cbe002fbb78307f59d994cab3491088db439db184027"


def _consent(api: Api, sid: str, **body: object) -> object:
    return api.client.put(
        f"/v1/subjects/{sid}/consents/personalization",
        headers=api.h("privacy-officer"),
        json={"granted": True, "given_by": "subject", **body},
    )


def test_a_consent_carries_its_evidence_into_the_export_and_the_log(api: Api) -> None:
    sid, _ = api.register()
    r = _consent(api, sid, channel="web", text_sha256="0" * 64)
    assert r.status_code == 400 and "another text" in r.json["detail"]
    assert _consent(api, sid, channel="carrier_pigeon").status_code == 400
    r = _consent(api, sid, channel="web", text_sha256=TEXT_2024_11)
    assert r.status_code == 200, r.json
    assert r.json["channel"] == "web" and r.json["recorded_by"] == "svc:privacy-officer"
    event = api.last_event()
    assert event["action"] == "consent_write" and event["decision"] == "completed"
    assert event["outcome"]["*"] | {} == {
        **event["outcome"]["*"],
        "purpose": "personalization",
        "granted": True,
        "given_by": "subject",
        "policy_version": "2024-11",
        "channel": "web",
        "text_sha256": TEXT_2024_11,
    }
    r = _consent(api, sid)  # no hash given: the edition's own text is recorded
    assert r.json["text_sha256"] == TEXT_2024_11 and r.json["channel"] == "unstated"


def test_the_ledger_outlives_the_shred_for_the_limitation_period(api: Api) -> None:
    sid, _ = api.register()
    assert _consent(api, sid, channel="app").status_code == 200
    consents = api.runtime.consents
    assert [e["channel"] for e in consents.ledger(sid) if e["purpose"] == "personalization"] == [
        "app"
    ]
    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        json={"purpose": "subject_access_request", "reason": "asked to be forgotten"},
    )
    assert r.status_code == 200
    assert consents.of(sid) == []  # the consents went with the data...
    kept = consents.ledger(sid)  # ...their proof stays, under a pseudonym
    assert kept and all(e["keep_until"] for e in kept)
    until = dt.datetime.fromisoformat(kept[0]["keep_until"])
    assert dt.timedelta(days=1090) < until - dt.datetime.now(dt.UTC) < dt.timedelta(days=1100)
    with api.database.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM consent_ledger")).all())
    assert sid not in dump  # the ledger alone does not say who
    assert consents.purge_ledger(dt.datetime.now(dt.UTC)) == 0
    assert consents.purge_ledger(until + dt.timedelta(seconds=1)) == len(kept)
    assert consents.ledger(sid) == []
