"""A damaged subject is damaged everywhere (issue 23, finding 5).

Its key deleted in OpenBao (never shredded): the first request answered 500
``subject_damaged``, then the masked view 404 and export 410 ``shredded``, and DELETE
answered 410 yet shredded it without a receipt or a completion event. Now every route
answers 500 ``subject_damaged`` (audited) until the privacy office shreds it, and that
shred returns a receipt and records its completion.
"""

from __future__ import annotations

from typing import Any

from tests.api_support import JUST, Api

SAR = "subject_access_request"


def _requests(sid: str, tokens: dict[str, str]) -> list[tuple[str, str, str, Any]]:
    return [
        ("support-agent", "GET", f"/v1/subjects/{sid}?purpose=customer_support", None),
        ("privacy-officer", "GET", f"/v1/subjects/{sid}/export?purpose={SAR}", None),
        (
            "support-agent",
            "POST",
            f"/v1/subjects/{sid}/reveal",
            {"purpose": "customer_support", "fields": ["email"], "justification": JUST},
        ),
        (
            "registration-service",
            "PATCH",
            f"/v1/subjects/{sid}/fields",
            {"purpose": "account_registration", "fields": {"email": "new@example.com"}},
        ),
        (
            "privacy-officer",
            "PUT",
            f"/v1/subjects/{sid}/restrictions",
            {"purpose": SAR, "scope": "marketing", "kind": "objection"},
        ),
        ("privacy-officer", "POST", f"/v1/subjects/{sid}/deactivate", {"purpose": SAR}),
    ]


def test_every_route_answers_subject_damaged_until_the_shred(api: Api) -> None:
    sid, tokens = api.register()
    api.runtime.backend.destroy_subject_key(sid)  # lost in Vault, never shredded
    api.runtime.vault.cache.clear()
    for _round in range(2):  # not only the request that found it
        for role, method, path, body in _requests(sid, tokens):
            r = api.client.open(path, method=method, headers=api.h(role), json=body)
            assert r.status_code == 500, (method, path, r.status_code, r.json)
            assert r.json["code"] == "subject_damaged", (method, path, r.json)
        r = api.client.post(
            "/v1/detokenize",
            headers=api.h("checkout-service"),
            json={"purpose": "order_fulfillment", "tokens": [tokens["phone"]]},
        )
        assert r.status_code == 200 and r.json["results"][0]["error"]["code"] == "subject_damaged"
    assert api.runtime.vault.status(sid) == "damaged"
    assert api.last_event()["decision"] != "allow" or api.last_event()["subject_ids"]

    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        json={"purpose": SAR, "reason": "its key was lost; the data cannot be read"},
    )
    assert r.status_code == 200, r.json
    assert r.json["status"] == "shredded" and r.json["receipt"]["subject_id"] == sid
    completed = [
        e
        for e in api.runtime.audit.events(limit=20)
        if e["action"] == "shred" and e["decision"] == "completed" and sid in e["subject_ids"]
    ]
    assert completed, "the shred's completion is recorded"
    assert api.runtime.reconciler().run().shreds_unaudited == []
    r = api.client.get(f"/v1/subjects/{sid}/export?purpose={SAR}", headers=api.h("privacy-officer"))
    assert r.status_code == 410 and r.json["code"] == "shredded"


def test_a_shred_that_finds_the_key_gone_completes_with_a_receipt(api: Api) -> None:
    """The shred is the first request after the loss: it must not answer 410 and stop."""
    sid, _ = api.register()
    api.runtime.backend.destroy_subject_key(sid)
    api.runtime.vault.cache.clear()
    r = api.client.delete(
        f"/v1/subjects/{sid}",
        headers=api.h("privacy-officer"),
        json={"purpose": SAR, "reason": "the customer asked"},
    )
    assert r.status_code == 200, r.json
    assert r.json["receipt"]["subject_id"] == sid
    assert api.runtime.vault.status(sid) == "shredded"
    assert api.runtime.reconciler().run().shreds_unaudited == []
