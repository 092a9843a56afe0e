"""Issue 18 (3): justifications that mean something. Over HTTP, on SQLite and PostgreSQL,
against real OpenBao and a real HTTP server playing the ticket system.

Reported: one invented ticket (``ZZ-1``) revealed 20 different customers in a row with
no limit; the console's phone search found all 20 customers of a 300-guess sweep in
3.4 s with no budget. Both failed on the code before this change (the 4th reveal and
the 6th search went through).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from access.errors import SearchBudgetSpent
from access.events import Caller
from access.runtime import Runtime, compose
from access.tickets import HttpTickets
from api.app import AppConfig, create_app
from tests.api_support import PERSON, Api
from tests.conftest import Database, OpenBaoServer
from tests.helpers import ALL_ROLES
from vault.config import Settings

REVEALS, SEARCHES = 3, 5


class TicketSystem:
    """A ticket system over real HTTP: tickets by id, who asked."""

    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}
        self.asked: list[dict[str, list[str]]] = []
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                system.asked.append(query)
                ticket = system.tickets.get(query.get("ticket", [""])[0])
                if ticket is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                person = query.get("person", [""])[0]
                body = json.dumps(
                    {"open": ticket["open"], "assigned": ticket["assignee"] == person}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tickets/check"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tickets() -> Iterator[TicketSystem]:
    system = TicketSystem()
    yield system
    system.close()


def _api(database: Database, backend: Any, tmp_path: Path, **kw: Any) -> Api:
    runtime: Runtime = compose(database.engine, backend, usage=(REVEALS, SEARCHES), **kw)
    runtime.policy.seed_default()
    keys = {r: runtime.principals.create(f"svc:{r}", [r])[1] for r in ALL_ROLES}
    app = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime))
    return Api(app.test_client(), runtime, keys, database)


def _reveal(api: Api, sid: str, ticket: str, purpose: str = "customer_support") -> Any:
    return api.client.post(
        f"/v1/subjects/{sid}/reveal",
        headers=api.h("support-agent"),
        json={
            "purpose": purpose,
            "fields": ["email"],
            "justification": {"ticket": ticket, "reason": "customer called"},
        },
    )


def test_one_ticket_does_not_open_every_customer(
    database: Database, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    api = _api(database, openbao.provider(), tmp_path)
    customers = [api.register()[0] for _ in range(REVEALS + 2)]
    for sid in customers[:REVEALS]:
        r = _reveal(api, sid, "ZZ-1")
        assert r.status_code == 200 and PERSON["email"] in r.get_data(as_text=True)
    r = _reveal(api, customers[REVEALS], "ZZ-1")
    assert r.status_code == 429 and r.json["code"] == "reveal_budget_spent", r.json
    assert int(r.headers["Retry-After"]) > 0
    assert PERSON["email"] not in r.get_data(as_text=True)
    assert "privacy office" in r.json["detail"]
    event = api.last_event()
    assert event["decision"] == "deny" and event["outcome"] == {"refused": "reveal_budget_spent"}
    assert event["subject_ids"] == [customers[REVEALS]]
    metrics = api.client.get("/metrics").get_data(as_text=True)
    assert 'pii_vault_budget_refusals_total{kind="reveal"} 1.0' in metrics
    # Another worker shares the budget (it lives in the database).
    second = compose(database.new_engine(), openbao.provider(), usage=(REVEALS, SEARCHES))
    worker2 = create_app(AppConfig(Settings(home=tmp_path), runtime=second)).test_client()
    r = worker2.post(
        f"/v1/subjects/{customers[-1]}/reveal",
        headers=api.h("support-agent"),
        json={
            "purpose": "customer_support",
            "fields": ["email"],
            "justification": {"ticket": "ZZ-1", "reason": "customer called"},
        },
    )
    assert r.status_code == 429
    second.vault.engine.dispose()


def test_searches_are_budgeted_per_person_per_minute(
    database: Database, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    api = _api(database, openbao.provider(), tmp_path)
    api.register()
    guard, agent = api.runtime.guard, Caller("svc:support-agent")
    for i in range(SEARCHES):
        guard.find(agent, "customer_support", "phone", f"+4420794600{i:02d}")
    with pytest.raises(SearchBudgetSpent) as refused:
        guard.find(agent, "customer_support", "phone", PERSON["phone"])
    assert refused.value.retry_after > 0
    event = api.last_event()
    assert event["decision"] == "deny" and event["outcome"] == {"refused": "search_budget_spent"}
    assert PERSON["phone"] not in json.dumps(event)
    # Someone else's budget is their own.
    assert guard.find(
        Caller("svc:privacy-officer"), "subject_access_request", "phone", PERSON["phone"]
    )


def test_the_ticket_system_decides_whether_a_ticket_justifies_a_reveal(
    database: Database, openbao: OpenBaoServer, tmp_path: Path, tickets: TicketSystem
) -> None:
    tickets.tickets = {
        "CS-1": {"open": True, "assignee": "svc:support-agent"},
        "CS-2": {"open": False, "assignee": "svc:support-agent"},
        "CS-3": {"open": True, "assignee": "user:someone-else"},
    }
    api = _api(database, openbao.provider(), tmp_path, tickets=HttpTickets(tickets.url))
    sid, _ = api.register()
    r = _reveal(api, sid, "CS-1")
    assert r.status_code == 200 and PERSON["email"] in r.get_data(as_text=True)
    for ticket, says in (("ZZ-1", "not known"), ("CS-2", "not open"), ("CS-3", "not assigned")):
        r = _reveal(api, sid, ticket)
        assert r.status_code == 403 and r.json["code"] == "ticket_rejected", r.json
        assert says in r.json["detail"] and PERSON["email"] not in r.get_data(as_text=True)
        assert api.last_event()["outcome"] == {"refused": "ticket_rejected"}
    # The ticket system hears the ticket and the person, never the subject's data.
    assert all(set(q) == {"ticket", "person"} for q in tickets.asked)
    assert PERSON["email"] not in json.dumps(tickets.asked)
    tickets.close()  # the ticket system is down: fail closed
    r = _reveal(api, sid, "CS-1")
    assert r.status_code == 503 and r.json["code"] == "ticket_system_unavailable"
    assert PERSON["email"] not in r.get_data(as_text=True)
