"""Issue 20 (§3(1) sharing): principals are recipients — internal, or a named processor,
controller, affiliate or authority with its country and agreement; a processor without an
agreement on record receives nothing; what a recipient sees is audited under its name and
listed in the subject's export. Over HTTP, SQLite and PostgreSQL, real OpenBao.

Reported: the vault did not know that checkout hands data to a payment processor; a
subject's export did not list who received their data. On the code before, the processor
below read the card in plaintext and the export had no recipients.
"""

from __future__ import annotations

from sqlalchemy import text

from access.facts import Recipient
from tests.api_support import Api
from tests.helpers import ALICE


def _processor(api: Api, name: str, agreement: str | None) -> dict[str, str]:
    who = Recipient("processor", "PayCo Ltd", "SG", agreement)
    _, key = api.runtime.principals.create(name, ["checkout-service"], recipient=who)
    return {"Authorization": f"Bearer {key}"}


def _detokenize(api: Api, headers: dict[str, str], token: str) -> dict[str, object]:
    r = api.client.post(
        "/v1/detokenize",
        headers=headers,
        json={"purpose": "order_fulfillment", "tokens": [token]},
    )
    assert r.status_code == 200, r.json
    return r.json["results"][0]


def test_a_processor_needs_its_agreement_and_is_named_in_audit_and_export(api: Api) -> None:
    sid, _ = api.register()
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "fields": {"card_number": ALICE["card_number"]}},
    )
    card = r.json["tokens"]["card_number"]
    without = _processor(api, "svc:payco-trial", None)
    refused = _detokenize(api, without, card)
    assert refused["error"]["code"] == "no_processing_agreement" and "value" not in refused
    with_dpa = _processor(api, "svc:payco", "DPA-2025-07")
    assert _detokenize(api, with_dpa, card)["value"] == ALICE["card_number"]
    decision = api.last_event()["outcome"]["0"]["fields"]["card_number"]
    assert decision["recipient"] == {
        "kind": "processor",
        "name": "PayCo Ltd",
        "country": "SG",
        "agreement": "DPA-2025-07",
    }
    export = api.client.get(
        f"/v1/subjects/{sid}/export",
        headers=api.h("privacy-officer"),
        query_string={"purpose": "subject_access_request"},
    ).json
    (payco,) = export["recipients"]
    assert payco["name"] == "PayCo Ltd" and payco["kind"] == "processor"
    assert payco["purposes"] == ["order_fulfillment"] and payco["fields"] == ["card_number"]
    assert payco["first"] <= payco["last"]


def test_an_agreement_added_with_sql_does_not_count(api: Api) -> None:
    headers = _processor(api, "svc:payco-sql", None)
    with api.database.engine.begin() as conn:
        conn.execute(
            text("UPDATE principals SET agreement = 'DPA-FAKE' WHERE name = 'svc:payco-sql'")
        )
    r = api.client.post(
        "/v1/detokenize", headers=headers, json={"purpose": "order_fulfillment", "tokens": []}
    )
    assert r.status_code == 401  # the edited row fails its grant tag: it authenticates no one
