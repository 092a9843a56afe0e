"""Issue 19 (sensitive personal information): identity documents, biometrics and financial
accounts need the subject's separate consent ``sensitive:<category>``; biometrics have one
use, a match. Over HTTP, on SQLite and PostgreSQL, real OpenBao.

Reported: sensitive data was written with no separate consent; biometrics were written
but no purpose could ever use them. On the code before, the first registration below
answered 201 and there was no match endpoint (404).
"""

from __future__ import annotations

import base64
import struct
import uuid
from typing import Any

from sqlalchemy import text

from tests.api_support import JUST, Api
from tests.helpers import ALICE, consents_for

FACE = struct.pack("<8f", 0.1, 0.9, 0.3, 0.4, 0.2, 0.8, 0.5, 0.7)
SAME_FACE = struct.pack("<8f", 0.11, 0.88, 0.31, 0.41, 0.19, 0.81, 0.5, 0.69)
OTHER_FACE = struct.pack("<8f", 0.9, 0.1, 0.7, 0.0, 0.8, 0.1, 0.0, 0.2)


def _register(api: Api, consents: list[dict[str, Any]], **fields: str) -> Any:
    return api.client.post(
        "/v1/subjects",
        headers=api.h("registration-service"),
        json={
            "purpose": "account_registration",
            "external_id": uuid.uuid4().hex,
            "fields": {"email": "s@example.com", **fields},
            "consents": consents,
        },
    )


def test_sensitive_fields_need_the_separate_consent(api: Api) -> None:
    with api.database.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM subjects")).scalar_one()
    r = _register(api, [], passport_number=ALICE["passport_number"])
    assert r.status_code == 403 and r.json["code"] == "consent_required", r.json
    assert "passport_number" in r.json["detail"]
    assert ALICE["passport_number"] not in r.get_data(as_text=True)
    assert api.last_event()["outcome"]["passport_number"]["by"] == "sensitive"
    assert api.last_event()["outcome"]["email"]["redaction"] == "plain"  # only that field
    with api.database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subjects")).scalar_one() == before
    r = _register(api, consents_for("identity"), passport_number=ALICE["passport_number"])
    assert r.status_code == 201, r.json
    sid = r.json["subject_id"]

    def reveal() -> Any:
        return api.client.post(
            f"/v1/subjects/{sid}/reveal",
            headers=api.h("support-agent"),
            json={
                "purpose": "customer_support",
                "fields": ["passport_number"],
                "justification": JUST,
            },
        )

    r = reveal()  # four-eyes: a second person approves first
    assert r.status_code == 403 and r.json["code"] == "approval_required", r.json
    settled = api.client.post(
        f"/v1/approvals/{r.json['approval_id']}/approve", headers=api.h("approver"), json={}
    )
    assert settled.status_code == 200, settled.json
    assert reveal().json["values"] == {"passport_number": ALICE["passport_number"]}
    r = api.client.put(
        f"/v1/subjects/{sid}/consents/sensitive:identity",
        headers=api.h("privacy-officer"),
        json={"granted": False, "given_by": "subject"},
    )
    assert r.status_code == 200, r.json
    r = reveal()
    assert r.status_code == 403 and r.json["code"] == "consent_required"
    assert ALICE["passport_number"] not in r.get_data(as_text=True)
    # The masked view leaves the field out; the email still shows.
    view = api.client.get(
        f"/v1/subjects/{sid}",
        headers=api.h("support-agent"),
        query_string={"purpose": "customer_support"},
    ).json
    assert "passport_number" not in view["fields"] and "email" in view["fields"]
    # The subject's own access request is not a use that needs it.
    r = api.client.get(
        f"/v1/subjects/{sid}/export",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "subject_access_request"},
    )
    assert r.status_code == 200
    assert r.json["fields"]["passport_number"]["value"] == ALICE["passport_number"]


def test_a_consent_topic_must_exist(api: Api) -> None:
    r = _register(api, consents_for("telepathy"))
    assert r.status_code == 400 and r.json["code"] == "unknown_purpose"


def _match(api: Api, sid: str, template: bytes, role: str = "registration-service") -> Any:
    return api.client.post(
        f"/v1/subjects/{sid}/match",
        headers=api.h(role),
        json={
            "purpose": "identity_verification",
            "field": "face_template",
            "template": base64.b64encode(template).decode(),
        },
    )


def test_biometrics_have_one_use_a_match(api: Api) -> None:
    face = base64.b64encode(FACE).decode()
    sid = _register(api, consents_for("biometric"), face_template=face).json["subject_id"]
    r = _match(api, sid, SAME_FACE)
    assert r.status_code == 200 and r.json == {"match": True}, r.json
    assert _match(api, sid, FACE).json == {"match": True}
    assert _match(api, sid, OTHER_FACE).json == {"match": False}
    assert _match(api, sid, b"short").json == {"match": False}
    event = api.last_event()
    assert event["action"] == "match" and event["outcome"]["*"] == {
        "field": "face_template",
        "match": False,
    }
    assert face not in str(api.runtime.audit.events(limit=20))
    # Nobody else may match, and nobody reads a template back.
    assert _match(api, sid, FACE, role="support-agent").status_code == 403
    token = api.runtime.vault.masked_view(sid).fields["face_template"].token
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("registration-service"),
        json={"purpose": "identity_verification", "tokens": [token]},
    )
    assert "value" not in r.json["results"][0]
    # Without the separate consent in force, no match either.
    api.client.put(
        f"/v1/subjects/{sid}/consents/sensitive:biometric",
        headers=api.h("privacy-officer"),
        json={"granted": False, "given_by": "subject"},
    )
    r = _match(api, sid, FACE)
    assert r.status_code == 403 and r.json["code"] == "consent_required"
