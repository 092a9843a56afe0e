"""Issue 20 (§2(2), §3(3)): lawful disclosure to an authority. Over HTTP, SQLite and
PostgreSQL, real OpenBao.

Reported: the privacy office's policy granted ``export`` for ``legal_compliance``, which
demands a justification, but the export route took none and refused any extra parameter:
a lawful order could only be met by going around the vault. On the code before, the
justified export below answered 400 (``extra_forbidden``) and there was no disclosure route.
"""

from __future__ import annotations

from typing import Any

from tests.api_support import JUST, Api

ORDER = {
    "authority": "Municipal Public Security Bureau",
    "instrument": "court_order",
    "reference": "(2026) Court 0042",
    "justification": {"ticket": "LC-42", "reason": "court order served on 2026-12-01"},
}


def _export(api: Api, sid: str, **query: str) -> Any:
    return api.client.get(
        f"/v1/subjects/{sid}/export", headers=api.h("privacy-officer"), query_string=query
    )


def test_a_legal_compliance_export_needs_a_justification_and_gets_through_with_one(
    api: Api,
) -> None:
    sid, _ = api.register()
    r = _export(api, sid, purpose="legal_compliance")
    assert r.status_code == 400 and r.json["code"] == "justification_required"
    r = _export(api, sid, purpose="legal_compliance", **JUST)
    assert r.status_code == 200, r.json
    assert r.json["subject_id"] == sid
    event = next(e for e in api.runtime.audit.events(limit=5) if e["action"] == "export")
    assert event["justification"] == JUST and event["decision"] == "allow"


def _disclose(api: Api, sid: str, role: str = "privacy-officer", **body: Any) -> Any:
    return api.client.post(
        f"/v1/subjects/{sid}/disclosures", headers=api.h(role), json={**ORDER, **body}
    )


def test_a_disclosure_is_the_export_recorded_and_audited(api: Api) -> None:
    sid, _ = api.register()
    r = _disclose(api, sid, instrument=None)
    assert r.status_code == 400  # no instrument, no disclosure
    r = _disclose(api, sid, justification={"ticket": "", "reason": ""})
    assert r.status_code == 400 and r.json["code"] == "justification_required"
    assert _disclose(api, sid, role="support-agent").status_code == 403
    r = _disclose(api, sid)
    assert r.status_code == 200, r.json
    assert r.json["fields"]["email"]["value"]
    assert r.json["disclosure"]["authority"] == ORDER["authority"]
    done = api.last_event()
    assert done["action"] == "disclose" and done["decision"] == "completed"
    assert done["outcome"]["*"]["instrument"] == "court_order"
    assert done["justification"] == ORDER["justification"]
    # The subject's own export lists it (no withholding asked for).
    own = _export(api, sid, purpose="subject_access_request").json
    assert [d["reference"] for d in own["disclosures"]] == [ORDER["reference"]]
    assert any(e["action"] == "disclose" for e in own["access_history"])


def test_a_withheld_disclosure_is_not_told_to_the_subject_until_its_end(api: Api) -> None:
    sid, _ = api.register()
    r = _disclose(api, sid, withhold_days=90)
    assert r.status_code == 200, r.json
    until = r.json["disclosure"]["withheld_until"]
    assert until
    own = _export(api, sid, purpose="subject_access_request").json
    assert own["disclosures"] == []
    assert not any(e["action"] == "disclose" for e in own["access_history"])
    history = api.client.get(  # the office's legal view still shows it, with its end date
        f"/v1/subjects/{sid}/export",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "legal_compliance", **JUST},
    ).json
    assert [d["withheld_until"] for d in history["disclosures"]] == [until]
    r = _disclose(api, sid, withhold_days=100000)
    assert r.status_code == 400
