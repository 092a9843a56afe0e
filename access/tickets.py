"""The ticket system's word on a justification (issue 18, optional: ``PII_VAULT_TICKET_URL``).

Without it a justification is a format check (``CS-1234`` and a reason), and one
invented ticket opened customer after customer. With it, before a reveal is audited
as allowed, the vault asks the ticket system whether the ticket is open and assigned
to the person revealing:

    GET <PII_VAULT_TICKET_URL>?ticket=<ticket>&person=<principal>
    Authorization: Bearer <PII_VAULT_TICKET_TOKEN>          (if set)
    -> 200 {"open": true, "assigned": true}

Anything else refuses the reveal: ``open``/``assigned`` false or a 404 as
``ticket_rejected`` (403), no answer within the timeout or a server error as
``ticket_system_unavailable`` (503) — a reveal never goes ahead without its word.
"""

from __future__ import annotations

from typing import Protocol

import requests

from access.errors import TicketRejected, TicketSystemUnavailable

TIMEOUT = 3.0


class TicketCheck(Protocol):
    def check(self, ticket: str, person: str) -> None:
        """Raise TicketRejected or TicketSystemUnavailable unless ``ticket`` is open and
        assigned to ``person``."""
        ...


class HttpTickets:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = TIMEOUT) -> None:
        self.url, self._token, self.timeout = url, token, timeout
        self._http = requests.Session()

    def __repr__(self) -> str:  # never the token
        return f"HttpTickets({self.url!r})"

    def check(self, ticket: str, person: str) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            r = self._http.get(
                self.url,
                params={"ticket": ticket, "person": person},
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TicketSystemUnavailable("the ticket system did not answer") from exc
        if r.status_code == 404:
            raise TicketRejected(f"ticket {ticket[:32]} is not known to the ticket system")
        if r.status_code != 200:
            raise TicketSystemUnavailable(f"the ticket system answered {r.status_code}")
        try:
            body = r.json()
        except ValueError as exc:
            raise TicketSystemUnavailable("the ticket system's answer is not JSON") from exc
        if not isinstance(body, dict) or body.get("open") is not True:
            raise TicketRejected(f"ticket {ticket[:32]} is not open")
        if body.get("assigned") is not True:
            raise TicketRejected(f"ticket {ticket[:32]} is not assigned to you")
