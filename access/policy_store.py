"""The policy as data in the database, and the engine built from its current revision.

Any change to rules or principals bumps a revision row; before deciding, every
process compares that revision with the one its engine was built from and
rebuilds on a difference, so a change takes effect at once in every worker (at
the cost of one single-row read per request).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from access.errors import AccessConfigError
from access.models import AccessState, PolicyRule, Principal
from access.policy import PolicyEngine, Rule, default_policy
from access.purposes import Purposes
from vault.transactions import Transactions


def bump_revision(session: Session) -> None:
    """Every process rebuilds its engine before its next decision."""
    session.execute(
        update(AccessState).where(AccessState.id == 1).values(revision=AccessState.revision + 1)
    )


class PolicyStore:
    def __init__(
        self, tx: Transactions, field_categories: Mapping[str, str], purposes: Purposes
    ) -> None:
        self.tx = tx
        self.field_categories = dict(field_categories)
        self.purposes = purposes
        self._built: PolicyEngine | None = None
        self._built_revision = -1
        self._lock = threading.Lock()

    def seed_default(self) -> bool:
        """Load access/policy.csv into an empty policy table (``pii-vault init``)."""
        with self.tx.begin() as session:
            if session.scalar(select(PolicyRule.id).limit(1)) is not None:
                return False
            self._insert(session, default_policy())
            return True

    def _insert(self, session: Session, rules: Iterable[Rule]) -> None:
        for r in rules:
            session.add(PolicyRule(ptype="p", v0=r.sub, v1=r.obj, v2=r.act, v3=r.purpose, v4=r.eft))
        bump_revision(session)

    def rules(self) -> list[Rule]:
        with self.tx.begin() as session:
            rows = session.scalars(select(PolicyRule).order_by(PolicyRule.id)).all()
            return [Rule(r.v0, r.v1, r.v2, r.v3, r.v4) for r in rows if r.ptype == "p"]

    def add_rules(self, rules: Sequence[Rule]) -> None:
        """Add rules (validated first: a bad rule changes nothing)."""
        PolicyEngine([*self.rules(), *rules], {}, self.field_categories, self.purposes)
        with self.tx.begin() as session:
            self._insert(session, rules)

    def remove_rule(self, rule: Rule) -> int:
        with self.tx.begin() as session:
            result = session.execute(
                delete(PolicyRule).where(
                    PolicyRule.ptype == "p",
                    PolicyRule.v0 == rule.sub,
                    PolicyRule.v1 == rule.obj,
                    PolicyRule.v2 == rule.act,
                    PolicyRule.v3 == rule.purpose,
                    PolicyRule.v4 == rule.eft,
                )
            )
            bump_revision(session)
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def current(self, session: Session | None = None) -> PolicyEngine:
        """The engine for the current revision (rebuilt when any process changed policy)."""
        with self.tx.reading(session) as session:
            revision = session.scalar(select(AccessState.revision).where(AccessState.id == 1))
            if revision is None:
                raise AccessConfigError("access tables are not initialised: run `pii-vault init`")
            with self._lock:
                if self._built is not None and revision == self._built_revision:
                    return self._built
            rules = [
                Rule(r.v0, r.v1, r.v2, r.v3, r.v4)
                for r in session.scalars(select(PolicyRule).order_by(PolicyRule.id))
                if r.ptype == "p"
            ]
            principals = session.scalars(select(Principal).where(Principal.disabled.is_(False)))
            roles = {p.name: p.roles.split(",") for p in principals}
        engine = PolicyEngine(rules, roles, self.field_categories, self.purposes)
        with self._lock:
            self._built, self._built_revision = engine, int(revision)
        return engine
