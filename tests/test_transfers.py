"""Issue 19 (§7): cross-border transfers need a recorded basis, and each is audited as one.
Over HTTP, on SQLite and PostgreSQL, real OpenBao.

Reported: a subject of region DE was detokenized from a CN deployment with no transfer
check and no trace of a transfer; principals had no region. On the code before, the
first detokenize below answered the plaintext.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from access.events import Caller
from tests.api_support import Api
from tests.helpers import ALICE, SENSITIVE_CONSENTS


def _subject(api: Api, region: str) -> tuple[str, str]:
    """A subject of ``region`` with a card, written by services in that region (no transfer);
    returns (subject id, card token)."""
    guard = api.runtime.guard
    created = guard.create_subject(
        Caller("svc:registration-service", "test", region=region),
        "account_registration",
        {"email": f"{region.lower()}@example.com"},
        external_id=uuid.uuid4().hex,
        region=region,
        consents=SENSITIVE_CONSENTS,
    )
    token = guard.put_fields(
        Caller("svc:checkout-service", "test", region=region),
        created.subject_id,
        "order_fulfillment",
        {"card_number": ALICE["card_number"]},
    )["card_number"]
    return created.subject_id, token


def _abroad(api: Api, region: str = "DE") -> dict[str, str]:
    name = f"svc:checkout-{region.lower()}"
    _, key = api.runtime.principals.create(name, ["checkout-service"], region=region)
    return {"Authorization": f"Bearer {key}"}


def _detokenize(api: Api, headers: dict[str, str], tokens: list[str]) -> list[dict[str, Any]]:
    r = api.client.post(
        "/v1/detokenize",
        headers=headers,
        json={"purpose": "order_fulfillment", "tokens": tokens},
    )
    assert r.status_code == 200, r.json
    return r.json["results"]


def _basis(api: Api, **body: Any) -> Any:
    return api.client.post("/v1/transfers", headers=api.h("privacy-officer"), json=body)


def test_a_read_from_another_region_needs_a_basis_and_is_audited_as_a_transfer(
    api: Api,
) -> None:
    cn_subject, cn_card = _subject(api, "CN")
    de = _abroad(api, "DE")
    (refused,) = _detokenize(api, de, [cn_card])
    assert refused["error"]["code"] == "transfer_basis_required" and "value" not in refused
    decision = api.last_event()["outcome"]["0"]["fields"]["card_number"]
    assert decision["by"] == "transfer" and decision["redaction"] == "denied"
    # Only the privacy office records a basis; one for another destination covers nothing.
    r = api.client.post(
        "/v1/transfers",
        headers=api.h("checkout-service"),
        json={"destination": "DE", "basis": "standard_contract", "reference": "SCC-1"},
    )
    assert r.status_code == 403
    r = _basis(
        api,
        destination="US",
        basis="standard_contract",
        reference="SCC-US",
        purpose="order_fulfillment",
    )
    assert r.status_code == 201, r.json
    r = _basis(
        api,
        destination="DE",
        basis="standard_contract",
        reference="SCC-2026-DE",
        purpose="order_fulfillment",
    )
    assert r.status_code == 201, r.json
    basis_id = r.json["id"]
    (allowed,) = _detokenize(api, de, [cn_card])
    assert allowed["value"] == ALICE["card_number"]
    decision = api.last_event()["outcome"]["0"]["fields"]["card_number"]
    assert decision["transfer"] == {
        "from": "CN",
        "to": "DE",
        "basis": "standard_contract",
        "reference": "SCC-2026-DE",
    }
    # The subject's export lists the transfer; the report counts it (no personal data).
    export = api.client.get(
        f"/v1/subjects/{cn_subject}/export",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "subject_access_request"},
    ).json
    assert [(t["from"], t["to"], t["basis"]) for t in export["transfers"]] == [
        ("CN", "DE", "standard_contract")
    ]
    r = api.client.get(
        "/v1/transfers/report",
        headers=api.h("privacy-officer"),
        query_string={"since": "2020-01-01T00:00:00"},
    )
    assert r.status_code == 200, r.json
    assert r.json["total"] == 1
    assert r.json["transfers"] == [
        {
            "from": "CN",
            "to": "DE",
            "purpose": "order_fulfillment",
            "basis": "standard_contract",
            "accesses": 1,
            "subjects": 1,
        }
    ]
    assert cn_subject not in r.get_data(as_text=True)
    # Revoked: refused again.
    r = api.client.post(f"/v1/transfers/{basis_id}/revoke", headers=api.h("privacy-officer"))
    assert r.status_code == 200 and r.json["revoked_at"]
    (refused,) = _detokenize(api, de, [cn_card])
    assert refused["error"]["code"] == "transfer_basis_required"


def test_same_region_needs_nothing_and_a_batch_decides_each_subject(api: Api) -> None:
    _, cn_card = _subject(api, "CN")
    _, de_card = _subject(api, "DE")
    de = _abroad(api, "DE")
    results = _detokenize(api, de, [cn_card, de_card])
    assert results[0]["error"]["code"] == "transfer_basis_required"
    assert results[1]["value"] == ALICE["card_number"]
    home = _detokenize(api, api.h("checkout-service"), [cn_card, de_card])  # a CN principal
    assert home[0]["value"] == ALICE["card_number"]
    assert home[1]["error"]["code"] == "transfer_basis_required"


def test_separate_consent_basis_needs_the_subjects_consent(api: Api) -> None:
    sid, card = _subject(api, "CN")
    de = _abroad(api, "DE")
    r = _basis(
        api, destination="DE", basis="separate_consent", reference="consent form v3", subject_id=sid
    )
    assert r.status_code == 201, r.json
    assert _detokenize(api, de, [card])[0]["error"]["code"] == "transfer_basis_required"
    r = api.client.put(
        f"/v1/subjects/{sid}/consents/cross_border:DE",
        headers=api.h("privacy-officer"),
        json={"granted": True, "given_by": "subject"},
    )
    assert r.status_code == 200, r.json
    assert _detokenize(api, de, [card])[0]["value"] == ALICE["card_number"]


def test_a_basis_written_with_sql_covers_nothing(api: Api) -> None:
    """A DBA inserts a basis row (or widens one): it fails its grant tag and counts for
    nothing; ``transfers list`` shows it."""
    _, card = _subject(api, "CN")
    de = _abroad(api, "DE")
    r = _basis(api, destination="DE", basis="legal_duty", reference="order 1", purpose="emergency")
    assert r.status_code == 201
    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE transfer_bases SET purpose = 'order_fulfillment' WHERE id = :i"),
            {"i": r.json["id"]},
        )
    assert _detokenize(api, de, [card])[0]["error"]["code"] == "transfer_basis_required"
    assert api.runtime.transfers.findings() == [r.json["id"]]
