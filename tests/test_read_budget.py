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


def test_a_read_the_day_budget_refuses_charges_the_minute_nothing(database: Database) -> None:
    """Both windows are charged in one transaction: a refusal by the day's budget leaves
    the minute's untouched (it used to be charged first, and kept)."""
    from access.errors import ReadBudgetSpent
    from access.usage import UsageBudgets
    from vault.transactions import Transactions

    budgets = UsageBudgets(Transactions(database.engine), reads=ReadLimits((10, 5)))
    budgets.read("svc:a", (), 4)
    with pytest.raises(ReadBudgetSpent):
        budgets.read("svc:a", (), 2)  # 6 > 5 a day, though 6 <= 10 a minute
    budgets.read("svc:a", (), 1)  # the minute holds 5 of 10 now, the day 5 of 5
    with pytest.raises(ReadBudgetSpent):
        budgets.read("svc:a", (), 1)
    # The minute holds the 5 answered reads only: one more fits under a limit of 6 (had
    # the two refused reads been charged it would hold 8).
    UsageBudgets(Transactions(database.engine), reads=ReadLimits((6, 100))).read("svc:a", (), 1)


def test_a_read_whose_audit_event_fails_charges_no_budget(api: Api, database: Database) -> None:
    """Issue 21: the read budget is charged in the audit event's transaction — a read that
    answers nothing (its event could not be committed) leaves the budget as it was."""
    from sqlalchemy import text

    cards = [_card(api, api.register()[0]) for _ in range(2)]
    with database.engine.begin() as conn:
        before = conn.execute(text("SELECT kind, spent FROM usage_counters")).all()
        conn.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    try:
        r = api.client.post(
            "/v1/detokenize",
            headers=api.h("checkout-service"),
            json={"purpose": "order_fulfillment", "tokens": cards},
        )
        assert r.status_code == 503 and ALICE["card_number"] not in r.get_data(as_text=True)
    finally:
        with database.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))
    with database.engine.begin() as conn:
        assert conn.execute(text("SELECT kind, spent FROM usage_counters")).all() == before
