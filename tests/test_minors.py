"""Issue 19 (§6, first part): minor status from the date of birth. Over HTTP, SQLite and
PostgreSQL, real OpenBao.

Reported: a date of birth in 2016 was stored with ``is_minor = false`` (the flag was
whatever the caller said), and tokenize silently ignored it. Failed on the code before
(201 with is_minor false).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text

from tests.api_support import Api
from tests.helpers import GUARDIAN_CONSENTS
from vault.minors import Majority, age_on

CHILD_DOB = "2016-05-04"
ADULT_DOB = "1980-01-02"


def _create(api: Api, **body: object) -> object:
    """Registered with a verified guardian's consents (they count for an adult too)."""
    return api.client.post(
        "/v1/subjects",
        headers=api.h("registration-service"),
        json={
            "purpose": "account_registration",
            "external_id": uuid.uuid4().hex,
            "consents": GUARDIAN_CONSENTS,
            **body,
        },
    )


def _minor(api: Api, sid: str) -> bool:
    with api.database.engine.connect() as conn:
        return bool(
            conn.execute(text("SELECT is_minor FROM subjects WHERE id = :i"), {"i": sid}).scalar()
        )


def _count(api: Api) -> int:
    with api.database.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM subjects")).scalar_one())


def test_the_date_of_birth_decides_and_a_contradicting_flag_is_refused(api: Api) -> None:
    before = _count(api)
    r = _create(api, is_minor=False, fields={"date_of_birth": CHILD_DOB, "email": "k@example.com"})
    assert r.status_code == 400 and r.json["code"] == "minor_flag_conflicts", r.json
    assert r.json["errors"] == {"is_minor": "conflicts_with_date_of_birth"}
    assert CHILD_DOB not in r.get_data(as_text=True)
    r = _create(api, is_minor=True, fields={"date_of_birth": ADULT_DOB})
    assert r.status_code == 400 and r.json["code"] == "minor_flag_conflicts"
    assert _count(api) == before  # nothing stored
    r = _create(api, fields={"date_of_birth": CHILD_DOB})  # not stated: derived
    assert r.status_code == 201 and _minor(api, r.json["subject_id"]) is True
    r = _create(api, fields={"date_of_birth": ADULT_DOB})
    assert r.status_code == 201 and _minor(api, r.json["subject_id"]) is False
    r = _create(api, is_minor=True, fields={"email": "no-dob@example.com"})  # no date: as stated
    assert r.status_code == 201 and _minor(api, r.json["subject_id"]) is True


def test_tokenize_derives_it_too_and_refuses_a_contradicting_later_date(api: Api) -> None:
    adult = _create(api, fields={"email": "later@example.com"}).json["subject_id"]
    r = api.client.post(
        "/v1/tokenize",
        headers=api.h("registration-service"),
        json={
            "purpose": "account_registration",
            "records": [
                {"external_id": uuid.uuid4().hex, "fields": {"date_of_birth": CHILD_DOB}},
                {
                    "external_id": uuid.uuid4().hex,
                    "is_minor": False,
                    "fields": {"date_of_birth": CHILD_DOB},
                },
                {"subject_id": adult, "fields": {"date_of_birth": CHILD_DOB}},
            ],
        },
    )
    assert r.status_code == 200, r.json
    first, second, third = r.json["results"]
    # Derived a minor: and a minor's data is not written without a guardian's consent,
    # which a tokenize item cannot carry (POST /v1/subjects can).
    assert first["error"]["code"] == "guardian_consent_required"
    assert second["error"]["code"] == "minor_flag_conflicts"
    assert third["error"]["code"] == "minor_flag_conflicts"
    # A correction (PATCH) that would make an adult a child is refused the same way.
    r = api.client.patch(
        f"/v1/subjects/{adult}/fields",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "fields": {"date_of_birth": CHILD_DOB}},
    )
    assert r.status_code == 400 and r.json["code"] == "minor_flag_conflicts", r.json
    assert _minor(api, adult) is False


def test_age_is_counted_to_the_birthday() -> None:
    day = dt.date(2026, 12, 3)
    assert age_on(dt.date(2008, 12, 3), day) == 18
    assert age_on(dt.date(2008, 12, 4), day) == 17
    majority = Majority(18, 14, today=lambda: day)
    assert majority.minor("2008-12-04") and not majority.minor("2008-12-03")


def _attributes(api: Api, sid: str, role: str, **body: object) -> object:
    return api.client.patch(
        f"/v1/subjects/{sid}/attributes",
        headers=api.h(role),
        json={"purpose": "subject_access_request", **body},
    )


def test_minor_status_and_region_change_only_by_the_privacy_office(api: Api) -> None:
    sid = _create(api, fields={"email": "flag@example.com"}).json["subject_id"]
    child = _create(api, fields={"date_of_birth": CHILD_DOB}).json["subject_id"]
    r = _attributes(api, sid, "registration-service", is_minor=True)
    assert r.status_code == 403 and _minor(api, sid) is False
    r = _attributes(api, sid, "privacy-officer", is_minor=True, region="DE")
    assert r.status_code == 200, r.json
    assert r.json == {"subject_id": sid, "is_minor": True, "region": "DE"}
    assert _minor(api, sid) is True
    event = api.last_event()
    assert event["action"] == "attributes" and event["decision"] == "completed"
    assert event["outcome"] == {"*": {"changed": ["is_minor", "region"]}}
    # The stored date of birth decides: the date must be corrected instead.
    r = _attributes(api, child, "privacy-officer", is_minor=False)
    assert r.status_code == 400 and r.json["code"] == "minor_flag_conflicts"
    assert _minor(api, child) is True
    r = _attributes(api, sid, "privacy-officer")
    assert r.status_code == 400


def test_minors_age_out_at_majority(api: Api) -> None:
    grown = _create(api, fields={"date_of_birth": ADULT_DOB}).json["subject_id"]
    child = _create(api, fields={"date_of_birth": CHILD_DOB}).json["subject_id"]
    with api.database.engine.begin() as conn:  # a minor when registered; years went by
        conn.execute(text("UPDATE subjects SET is_minor = true WHERE id = :i"), {"i": grown})
    attributes = api.runtime.guard.attributes
    assert attributes.come_of_age() == [grown]
    assert attributes.age_out(grown) and not attributes.age_out(child)
    assert _minor(api, grown) is False and _minor(api, child) is True
    assert attributes.come_of_age() == []
