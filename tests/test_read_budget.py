"""Issue 20 (§4 incident response): a budget of *successful* plaintext reads per principal
(per minute and per day, by role), shared by every worker; spent → 429 before anything is
answered, audited, and an alert to the hook. Over HTTP, SQLite and PostgreSQL.

Reported: the failed-lookup budget counted only misses — a principal could read every
subject successfully at full speed with no alert. On the code before, the fourth read
below answered the plaintext.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from access.usage import ReadLimits
from tests.api_support import Api, Receiver, alerting_api
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALICE


@pytest.fixture
def api(
    openbao: OpenBaoServer, database: Database, tmp_path: Path, receiver: Receiver
) -> Iterator[Api]:
    limits = ReadLimits((1000, 10_000), {"checkout-service": (3, 100)})
    yield from alerting_api(database, openbao.provider(), tmp_path, receiver, read_limits=limits)


def _card(api: Api, sid: str) -> str:
    r = api.client.patch(
        f"/v1/subjects/{sid}/fields",
        headers=api.h("checkout-service"),
        json={"purpose": "order_fulfillment", "fields": {"card_number": ALICE["card_number"]}},
    )
    assert r.status_code == 200, r.json
    return str(r.json["tokens"]["card_number"])


def test_successful_reads_are_budgeted_by_role_and_a_trip_alerts(
    api: Api, receiver: Receiver
) -> None:
    cards = [_card(api, api.register()[0]) for _ in range(4)]

    def read(tokens: list[str]) -> object:
        return api.client.post(
            "/v1/detokenize",
            headers=api.h("checkout-service"),
            json={"purpose": "order_fulfillment", "tokens": tokens},
        )

    r = read(cards[:3])
    assert r.status_code == 200 and all(x.get("value") for x in r.json["results"])
    r = read(cards[3:])
    assert r.status_code == 429 and r.json["code"] == "read_budget_spent", r.json
    assert int(r.headers["Retry-After"]) >= 1
    assert ALICE["card_number"] not in r.get_data(as_text=True)
    refused = api.last_event()
    assert refused["decision"] == "deny"
    assert refused["outcome"] == {"*": {"refused": "read_budget_spent"}}
    assert api.runtime.guard.alerts.flush()
    alerts = [json.loads(body) for _, body in receiver.received]
    assert [a["kind"] for a in alerts] == ["read_budget_spent"]
    assert alerts[0]["detail"] == {"principal": "svc:checkout-service", "window": "minute"}
    # Masked reads are not plaintext: fraud's masked view of the same cards still works.
    r = api.client.post(
        "/v1/detokenize",
        headers=api.h("fraud-service"),
        json={"purpose": "fraud_prevention", "tokens": cards},
    )
    assert r.status_code == 200 and all(x.get("redaction") == "masked" for x in r.json["results"])
