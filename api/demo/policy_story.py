"""The demo's privacy-policy chapter (issue 19): a minor with a guardian (§6), a
cross-border read refused and then allowed by a recorded basis (§7), an objection (§5).

Kept apart from ``story.py`` (the founding walk-through) so each stays one story.
"""

from __future__ import annotations

from typing import Any, Protocol

import requests

GUARDIAN = {
    "given_by": "guardian",
    "guardian_ref": "parent-account-42",
    "verification": "id_document",
}
CHILD = {"full_name": "Mei Child", "date_of_birth": "2015-06-01", "email": "mei@example.com"}


class Story(Protocol):
    def call(self, who: str, method: str, path: str, **kw: Any) -> requests.Response: ...

    def step(self, text: str, ok: bool) -> None: ...


def _code(r: requests.Response) -> str:
    try:
        return str(r.json().get("code"))
    except ValueError:
        return "-"


def minors(s: Story) -> None:
    body: dict[str, Any] = {
        "external_id": "shop-child-1",
        "purpose": "account_registration",
        "fields": CHILD,
    }
    r = s.call("registration", "POST", "/v1/subjects", json=body)
    s.step(
        "a child (born 2015: a minor by the date of birth) registered without a guardian: "
        f"{r.status_code} {_code(r)}",
        r.status_code == 403 and _code(r) == "guardian_consent_required",
    )
    body["consents"] = [
        {"purpose": "service_use", "granted": True, **GUARDIAN},
        {"purpose": "sensitive:basic", "granted": True, **GUARDIAN},
    ]
    r = s.call("registration", "POST", "/v1/subjects", json=body)
    s.step(
        "with the consent of a guardian verified by ID document (parent-account-42) to "
        f"service use and to the child's basic data: {r.status_code}",
        r.status_code == 201,
    )


def transfers(s: Story, sid: str, card: str) -> None:
    def read() -> dict[str, Any]:
        r = s.call(
            "checkout-eu",
            "POST",
            "/v1/detokenize",
            json={"purpose": "order_fulfillment", "tokens": [card]},
        )
        return r.json()["results"][0] if r.ok else {}

    refused = read()
    s.step(
        "checkout's EU instance (region DE) reads the CN subject's card: "
        f"{(refused.get('error') or {}).get('code')}",
        (refused.get("error") or {}).get("code") == "transfer_basis_required",
    )
    r = s.call(
        "privacy",
        "POST",
        "/v1/transfers",
        json={
            "destination": "DE",
            "basis": "standard_contract",
            "reference": "SCC-2026-01",
            "purpose": "order_fulfillment",
        },
    )
    s.step(
        f"the privacy office records a standard contract for order_fulfillment to DE: "
        f"{r.status_code}",
        r.status_code == 201,
    )
    allowed = read()
    s.step(
        f"the EU instance reads it now: {allowed.get('redaction')}, audited as a transfer "
        "CN -> DE under SCC-2026-01",
        bool(allowed.get("value")),
    )


def objection(s: Story, sid: str, browsing: str) -> None:
    r = s.call(
        "privacy",
        "PUT",
        f"/v1/subjects/{sid}/restrictions",
        json={"purpose": "subject_access_request", "scope": "personalization", "kind": "objection"},
    )
    s.step(f"the subject objects to personalization: {r.status_code}", r.status_code == 200)
    r = s.call(
        "recommendation",
        "POST",
        "/v1/detokenize",
        json={"purpose": "personalization", "tokens": [browsing]},
    )
    code = (r.json()["results"][0].get("error") or {}).get("code") if r.ok else None
    s.step(f"recommendation reads browsing: {code} (consent or not)", code == "restricted")
