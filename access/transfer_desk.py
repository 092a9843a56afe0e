"""The privacy office's transfer-basis registry over the API (policy §7): every call
decided (action ``transfers``) and audited like any other, the recorded or revoked basis
audited after (no personal data: a basis names a subject id at most)."""

from __future__ import annotations

from typing import Any

from access.audit import AuditLog
from access.decisions import Decider
from access.errors import Forbidden
from access.events import Caller, batch, decided
from access.policy import WHOLE_SUBJECT
from access.transfers import Basis, TransferBases, report


class TransferDesk:
    def __init__(self, decider: Decider, audit: AuditLog, transfers: TransferBases) -> None:
        self.decider = decider
        self.audit = audit
        self.transfers = transfers

    def _allowed(self, caller: Caller) -> None:
        decision = self.decider.decide(caller.principal, [WHOLE_SUBJECT], "transfers", None)
        self.audit.append(decided(caller, decision, None))
        if not decision.allowed:
            raise Forbidden("keeping transfer bases is not allowed")

    def bases(self, caller: Caller) -> list[Basis]:
        self._allowed(caller)
        return self.transfers.recorded()

    def add(self, caller: Caller, **basis: Any) -> Basis:
        self._allowed(caller)
        added = self.transfers.add(actor=caller.principal, **basis)
        self._recorded(caller, added, "added")
        return added

    def revoke(self, caller: Caller, basis_id: int) -> Basis:
        self._allowed(caller)
        revoked = self.transfers.revoke(basis_id)
        self._recorded(caller, revoked, "revoked")
        return revoked

    def report(self, caller: Caller, since: str) -> dict[str, Any]:
        """Transfers since ``since`` by from, to, purpose and basis: counts only."""
        self._allowed(caller)
        return {"since": since, **report(self.audit.scan(since=since, containing='"transfer"'))}

    def _recorded(self, caller: Caller, basis: Basis, what: str) -> None:
        detail = {k: v for k, v in basis.as_dict().items() if k != "subject_id"}
        self.audit.append(
            batch(
                caller,
                "transfers",
                "-",
                verdict="completed",
                subject_ids=[basis.subject_id] if basis.subject_id else [],
                fields=[],
                items={"*": {"basis": what, **detail}},
                justification=None,
            )
        )
