"""The policy as data in the database, and the engine built from its current revision.

Any change to rules or principals bumps a revision row; before deciding, every
process compares that revision with the one its engine was built from and
rebuilds on a difference, so a change takes effect at once in every worker (at
the cost of one single-row read per request).

Rows count only with their grant tags (``access/grants.py``): a rule or principal
written with SQL is left out of the engine (and counted), a rule deleted or changed
with SQL fails the rule set's tag and every decision with it (``GrantsTampered``).
Every change made here is an audit event (``on_change``), recorded before the change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from access.errors import AccessConfigError, GrantsTampered
from access.grants import GrantSeal, TagMismatch
from access.models import AccessState, PolicyRule, Principal
from access.policy import PolicyEngine, Rule, default_policy
from access.purposes import Purposes
from vault.transactions import Transactions


def bump_revision(session: Session) -> None:
    """Every process rebuilds its engine before its next decision."""
    session.execute(
        update(AccessState).where(AccessState.id == 1).values(revision=AccessState.revision + 1)
    )


# (actor, action, detail): records a grant change in the audit log before it is made.
GrantAudit = Callable[[str, str, Mapping[str, str]], None]


def _no_audit(actor: str, action: str, detail: Mapping[str, str]) -> None:
    """Only for stores built without an audit log (unit tests of the engine)."""


class PolicyStore:
    def __init__(
        self,
        tx: Transactions,
        field_categories: Mapping[str, str],
        purposes: Purposes,
        seal: GrantSeal,
        on_change: GrantAudit = _no_audit,
    ) -> None:
        self.tx = tx
        self.field_categories = dict(field_categories)
        self.purposes = purposes
        self.seal = seal
        self.on_change = on_change
        self._built: PolicyEngine | None = None
        self._built_revision = -1
        self._lock = threading.Lock()

    def seed_default(self, actor: str = "operator") -> bool:
        """Load access/policy.csv into an empty policy table (``pii-vault init``)."""
        with self.tx.begin() as session:
            if session.scalar(select(PolicyRule.id).limit(1)) is not None:
                return False
        rules = default_policy()
        self.on_change(actor, "policy_seed", {"rules": str(len(rules))})
        with self.tx.begin() as session:
            if session.scalar(select(PolicyRule.id).limit(1)) is not None:
                return False
            self._insert(session, rules)
            return True

    def _insert(self, session: Session, rules: Iterable[Rule]) -> None:
        for r in rules:
            row = PolicyRule(ptype="p", v0=r.sub, v1=r.obj, v2=r.act, v3=r.purpose, v4=r.eft)
            self.seal.tag_rule(row)
            session.add(row)
        self._reseal(session)

    def _reseal(self, session: Session) -> None:
        """After a change made here: the set tag over the rules as they now are."""
        session.flush()
        good, _forged = self.seal.valid_rules(session.scalars(select(PolicyRule)).all())
        tag = self.seal.set_tag(good)  # forged rows stay out: sealing never launders them
        session.execute(update(AccessState).where(AccessState.id == 1).values(rules_tag=tag))
        bump_revision(session)

    def _verified_rules(self, session: Session) -> list[PolicyRule]:
        """The rules whose tags verify, the rule set's tag checked: GrantsTampered if a rule
        was deleted or changed outside the vault. Forged extra rows are left out."""
        rows = session.scalars(select(PolicyRule).order_by(PolicyRule.id)).all()
        good, _forged = self.seal.valid_rules(rows)
        tag = session.scalar(select(AccessState.rules_tag).where(AccessState.id == 1))
        try:
            self.seal.check_set(good, tag)
        except TagMismatch as exc:
            raise GrantsTampered(
                "the policy rules fail their tags (changed outside the vault): "
                "run `pii-vault audit grants`"
            ) from exc
        return good

    def rules(self) -> list[Rule]:
        with self.tx.begin() as session:
            rows = self._verified_rules(session)
            return [Rule(r.v0, r.v1, r.v2, r.v3, r.v4) for r in rows if r.ptype == "p"]

    def add_rules(self, rules: Sequence[Rule], actor: str = "operator") -> None:
        """Add rules (validated first: a bad rule changes nothing)."""
        PolicyEngine([*self.rules(), *rules], {}, self.field_categories, self.purposes)
        self.on_change(actor, "policy_add", {"rules": "; ".join(str(r) for r in rules)[:1000]})
        with self.tx.begin() as session:
            self._verified_rules(session)  # never seal over a tampered set
            self._insert(session, rules)

    def remove_rule(self, rule: Rule, actor: str = "operator") -> int:
        self.on_change(actor, "policy_remove", {"rule": str(rule)})
        with self.tx.begin() as session:
            self._verified_rules(session)
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
            self._reseal(session)
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def seal_existing(self, actor: str = "operator") -> list[str]:
        """Migration (``pii-vault init``, once): tag the rows of a deployment that predates
        grant tags. Only while the rule set has never been sealed; afterwards an untagged
        row is a forgery and stays refused. Returns what it sealed (printed by init)."""
        with self.tx.begin() as session:
            if session.scalar(select(AccessState.rules_tag).where(AccessState.id == 1)):
                return []
            rules = session.scalars(select(PolicyRule).where(PolicyRule.tag.is_(None))).all()
            principals = session.scalars(select(Principal).where(Principal.tag.is_(None))).all()
            sealed = [f"principal {p.name}" for p in principals] + [
                f"rule {Rule(r.v0, r.v1, r.v2, r.v3, r.v4)}" for r in rules
            ]
        if not sealed:
            return []
        self.on_change(actor, "grants_seal", {"rows": str(len(sealed))})
        with self.tx.begin() as session:
            for r in session.scalars(select(PolicyRule).where(PolicyRule.tag.is_(None))):
                self.seal.tag_rule(r)
            for p in session.scalars(select(Principal).where(Principal.tag.is_(None))):
                self.seal.tag_principal(p)
            self._reseal(session)
        return sealed

    def findings(self) -> list[str]:
        """Every grant row that fails its tag, and the rule set's state (``audit grants``)."""
        out: list[str] = []
        with self.tx.begin(read_only=True) as session:
            rules = session.scalars(select(PolicyRule).order_by(PolicyRule.id)).all()
            good, bad = self.seal.valid_rules(rules)
            out += [f"forged rule (id {r.id}): {Rule(r.v0, r.v1, r.v2, r.v3, r.v4)}" for r in bad]
            for p in session.scalars(select(Principal).order_by(Principal.name)):
                try:
                    self.seal.check_principal(p)
                except TagMismatch:
                    out.append(f"forged principal: {p.name} (roles {p.roles})")
            tag = session.scalar(select(AccessState.rules_tag).where(AccessState.id == 1))
            try:
                self.seal.check_set(good, tag)
            except TagMismatch:
                out.append("the rule set fails its tag: a rule was deleted or changed with SQL")
        return out

    def valid_principals(self, session: Session) -> list[Principal]:
        """Enabled principals whose tags verify (a forged or edited row grants nothing)."""
        out = []
        for p in session.scalars(select(Principal).where(Principal.disabled.is_(False))):
            try:
                self.seal.check_principal(p)
            except TagMismatch:
                continue
            out.append(p)
        return out

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
                for r in self._verified_rules(session)
                if r.ptype == "p"
            ]
            roles = {p.name: p.roles.split(",") for p in self.valid_principals(session)}
        engine = PolicyEngine(rules, roles, self.field_categories, self.purposes)
        with self._lock:
            self._built, self._built_revision = engine, int(revision)
        return engine
