"""Issue 19 (§5): restriction and objection. Over HTTP on SQLite and PostgreSQL, real
OpenBao. Reported: a recorded ``granted = false`` for a purpose other than the two
consent-based ones changed nothing — checkout still wrote and read; there was no
restricted state and no objection. Failed on the code before (404: no such endpoint,
and checkout kept reading).
"""

from __future__ import annotations

from typing import Any

from tests.api_support import JUST, PERSON, Api


def _restrict(api: Api, sid: str, scope: str, kind: str, role: str = "privacy-officer") -> Any:
    return api.client.put(
        f"/v1/subjects/{sid}/restrictions",
        headers=api.h(role),
        json={"purpose": "subject_access_request", "scope": scope, "kind": kind},
    )


def _detokenize(api: Api, token: str, role: str, purpose: str) -> Any:
    return api.client.post(
        "/v1/detokenize", headers=api.h(role), json={"purpose": purpose, "tokens": [token]}
    )


def test_an_objection_stops_that_purpose_and_nothing_else(api: Api) -> None:
    sid, tokens = api.register()
    assert _detokenize(api, tokens["phone"], "checkout-service", "order_fulfillment").json[
        "results"
    ][0]["value"]
    r = _restrict(api, sid, "order_fulfillment", "objection", role="checkout-service")
    assert r.status_code == 403  # only the privacy office records it
    r = _restrict(api, sid, "order_fulfillment", "objection")
    assert r.status_code == 200, r.json
    assert [x["kind"] for x in r.json["restrictions"]] == ["objection"]
    item = _detokenize(api, tokens["phone"], "checkout-service", "order_fulfillment").json[
        "results"
    ][0]
    assert item["error"]["code"] == "restricted" and PERSON["phone"] not in str(item)
    # Another purpose is unaffected; the privacy office still exports.
    r = api.client.post(
        f"/v1/subjects/{sid}/reveal",
        headers=api.h("support-agent"),
        json={"purpose": "customer_support", "fields": ["email"], "justification": JUST},
    )
    assert r.status_code == 200
    r = api.client.get(
        f"/v1/subjects/{sid}/export?purpose=subject_access_request",
        headers=api.h("privacy-officer"),
    )
    assert r.status_code == 200 and r.json["restrictions"][0]["scope"] == "order_fulfillment"


def test_a_full_restriction_refuses_every_service_purpose_until_lifted(api: Api) -> None:
    sid, tokens = api.register()
    assert _restrict(api, sid, "*", "restriction").status_code == 200
    r = api.client.post(
        f"/v1/subjects/{sid}/reveal",
        headers=api.h("support-agent"),
        json={"purpose": "customer_support", "fields": ["email"], "justification": JUST},
    )
    assert r.status_code == 403 and r.json["code"] == "restricted", r.json
    assert PERSON["email"] not in r.get_data(as_text=True)
    assert api.last_event()["decision"] == "deny"
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("registration-service"),
        json={"purpose": "account_registration", "fields": {"full_name": "New Name"}},
    )
    assert r.status_code == 403 and r.json["code"] == "restricted"
    # Shred and the privacy office's export are still served.
    r = api.client.get(
        f"/v1/subjects/{sid}/export?purpose=subject_access_request",
        headers=api.h("privacy-officer"),
    )
    assert r.status_code == 200
    lifted = _restrict(api, sid, "*", "lifted")
    assert [x["kind"] for x in lifted.json["restrictions"]] == ["restriction", "lifted"]
    assert api.last_event()["action"] == "restrict"
    r = _detokenize(api, tokens["phone"], "checkout-service", "order_fulfillment")
    assert r.json["results"][0].get("value") == PERSON["phone"]
    assert _restrict(api, sid, "*", "objection").status_code == 400  # names its purpose
    assert _restrict(api, sid, "no_such_purpose", "restriction").status_code == 400


def test_deactivation_ends_service_access_and_reactivation_restores_it(api: Api) -> None:
    sid, tokens = api.register()
    body = {"purpose": "subject_access_request"}
    r = api.client.post(
        f"/v1/subjects/{sid}/deactivate", headers=api.h("checkout-service"), json=body
    )
    assert r.status_code == 403
    r = api.client.post(
        f"/v1/subjects/{sid}/deactivate", headers=api.h("privacy-officer"), json=body
    )
    assert r.status_code == 200 and r.json["restrictions"][-1]["kind"] == "deactivated"
    item = _detokenize(api, tokens["phone"], "checkout-service", "order_fulfillment").json[
        "results"
    ][0]
    assert item["error"]["code"] == "restricted"
    r = api.client.get(
        f"/v1/subjects/{sid}/export?purpose=subject_access_request",
        headers=api.h("privacy-officer"),
    )
    assert r.status_code == 200  # the privacy office is still served
    r = api.client.post(
        f"/v1/subjects/{sid}/reactivate", headers=api.h("privacy-officer"), json=body
    )
    assert r.status_code == 200
    r = _detokenize(api, tokens["phone"], "checkout-service", "order_fulfillment")
    assert r.json["results"][0].get("value") == PERSON["phone"]
