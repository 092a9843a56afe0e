"""The policy as data in the database, and the engine built from its current revision.

Any change to rules or principals bumps a revision row; before deciding, every
process compares that revision with the one its engine was built from and
rebuilds on a difference, so a change takes effect at once in every worker (at
the cost of one single-row read per request).

Rows count only with their grant tags (``access/grants.py``): a rule or principal
written with SQL is left out of the engine (and counted), a rule deleted or changed
with SQL fails the rule set's tag and every decision with it (``GrantsTampered``).
Which rows count at all is the sealed grant state's to say (``access/grant_state.py``):
every change goes through ``changing`` (state locked and checked, then sealed, then
published), and every rebuild confirms the state against its published epoch, so a
restored backup fails closed too. Every change made here is an audit event
(``on_change``), recorded before the change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from access.errors import AccessConfigError, GrantsTampered
from access.facts import Recipient
from access.grant_state import (
    GrantChange,
    GrantLedger,
    GrantState,
    load,
    rules_tag,
    seal_state,
    store,
)
from access.grants import GrantSeal, TagMismatch
from access.models import AccessState, PolicyRule, Principal
from access.policy import PolicyEngine, Rule, default_policy
from access.purposes import Purposes
from vault.errors import ServiceUnavailable
from vault.transactions import Transactions

log = logging.getLogger(__name__)


_REVISION = select(AccessState.revision).where(AccessState.id == 1)  # read on every request


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
        ledger: GrantLedger | None = None,
    ) -> None:
        self.tx = tx
        self.field_categories = dict(field_categories)
        self.purposes = purposes
        self.seal = seal
        self.on_change = on_change
        self.ledger = ledger  # None only without an anchor store (unit tests of the engine)
        self._built: PolicyEngine | None = None
        self._built_revision = -1
        self._state: GrantState | None = None  # the state the engine was built from
        self._lock = threading.Lock()

    @contextmanager
    def changing(self) -> Iterator[GrantChange]:
        """One grant change in one transaction: the stored state locked and confirmed first
        (never sealed over a tampered or rolled-back one), the new state sealed with the
        rows, and published once committed."""
        with self.tx.begin() as session:
            base = load(session, self.seal, for_update=True)
            self._verified_rules(session, base)
            if self.ledger is not None:
                self.ledger.confirm(base)  # also: the predecessor is published (contiguous)
            change = GrantChange(session, self.seal, base)
            yield change
            new = change.sealed() if change.changed else None
            if new is not None:
                store(session, new)
                bump_revision(session)
        if new is not None and self.ledger is not None:
            try:
                self.ledger.publish(new)
            except ServiceUnavailable:  # committed: whoever rebuilds next publishes it
                log.warning("grant state epoch %d committed, not yet published", new.epoch)

    def seed_default(self, actor: str = "operator") -> bool:
        """Load access/policy.csv into an empty policy table (``pii-vault init``)."""
        with self.tx.begin() as session:
            if session.scalar(select(PolicyRule.id).limit(1)) is not None:
                return False
        rules = default_policy()
        self.on_change(actor, "policy_seed", {"rules": str(len(rules))})
        with self.changing() as change:
            if change.session.scalar(select(PolicyRule.id).limit(1)) is not None:
                return False
            self._insert(change, rules)
            return True

    def _insert(self, change: GrantChange, rules: Iterable[Rule]) -> None:
        for r in rules:
            row = PolicyRule(ptype="p", v0=r.sub, v1=r.obj, v2=r.act, v3=r.purpose, v4=r.eft)
            self.seal.tag_rule(row)
            change.session.add(row)
        change.rules()  # forged rows stay out of the set tag: sealing never launders them

    def _verified_rules(self, session: Session, state: GrantState) -> list[PolicyRule]:
        """The rules whose tags verify, their set tag the sealed state's: GrantsTampered if a
        rule was deleted or changed outside the vault. Forged extra rows are left out."""
        rows = session.scalars(select(PolicyRule).order_by(PolicyRule.id)).all()
        good, _forged = self.seal.valid_rules(rows)
        try:
            self.seal.check_set(good, state.rules)
        except TagMismatch as exc:
            raise GrantsTampered(
                "the policy rules fail their tags (changed outside the vault): "
                "run `pii-vault audit grants`"
            ) from exc
        return good

    def rules(self) -> list[Rule]:
        with self.tx.begin() as session:
            rows = self._verified_rules(session, load(session, self.seal))
            return [Rule(r.v0, r.v1, r.v2, r.v3, r.v4) for r in rows if r.ptype == "p"]

    def known_roles(self) -> set[str]:
        """Every role a rule names (``*`` is every role, not one)."""
        return {r.sub for r in self.rules()} - {"*"}

    def add_rules(self, rules: Sequence[Rule], actor: str = "operator") -> None:
        """Add rules (validated first: a bad rule changes nothing)."""
        PolicyEngine([*self.rules(), *rules], {}, self.field_categories, self.purposes)
        self.on_change(actor, "policy_add", {"rules": "; ".join(str(r) for r in rules)[:1000]})
        with self.changing() as change:  # never sealed over a tampered set
            self._insert(change, rules)

    def remove_rule(self, rule: Rule, actor: str = "operator") -> int:
        self.on_change(actor, "policy_remove", {"rule": str(rule)})
        with self.changing() as change:
            result = change.session.execute(
                delete(PolicyRule).where(
                    PolicyRule.ptype == "p",
                    PolicyRule.v0 == rule.sub,
                    PolicyRule.v1 == rule.obj,
                    PolicyRule.v2 == rule.act,
                    PolicyRule.v3 == rule.purpose,
                    PolicyRule.v4 == rule.eft,
                )
            )
            change.rules()
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def seal_existing(self, actor: str = "operator") -> list[str]:
        """Migration (``pii-vault init``, once): tag the rows of a deployment that predates
        grant tags. Only while no grant state was ever sealed, which the anchor store says
        (outside the database); afterwards an untagged row is a forgery and stays refused.
        Returns what it sealed (printed by init)."""
        with self.tx.begin(read_only=True) as session:
            if load(session, self.seal).epoch > 0:
                return []
            if self.ledger is not None and self.ledger.ever_published():
                return []  # the state was cleared with SQL: current() fails closed on it
            rules = session.scalars(select(PolicyRule).where(PolicyRule.tag.is_(None))).all()
            principals = session.scalars(select(Principal).where(Principal.tag.is_(None))).all()
            sealed = [f"principal {p.name}" for p in principals] + [
                f"rule {Rule(r.v0, r.v1, r.v2, r.v3, r.v4)}" for r in rules
            ]
        if not sealed:
            return []
        self.on_change(actor, "grants_seal", {"rows": str(len(sealed))})
        with self.changing() as change:
            for r in change.session.scalars(select(PolicyRule).where(PolicyRule.tag.is_(None))):
                self.seal.tag_rule(r)
            for p in change.session.scalars(select(Principal).where(Principal.tag.is_(None))):
                change.principal(p)
            change.rules()
        return sealed

    def accept_restored(self, actor: str = "operator") -> list[str]:
        """After restoring a backup on purpose (``audit grants --accept-restore``): the rows
        whose tags verify become the grant state, sealed at an epoch after every published
        one. Forged rows stay refused. Whoever holds the service's Vault token could do
        this; someone with the database alone cannot. Returns the principals it accepted."""
        self.on_change(actor, "grants_accept_restore", {"findings": str(len(self.findings()))})
        with self.tx.begin() as session:
            try:
                base = load(session, self.seal, for_update=True).epoch
            except GrantsTampered:
                base = 0  # a cleared or broken state: start after whatever was published
            newest = self.ledger.newest() if self.ledger is not None else 0
            principals = {}
            for p in session.scalars(select(Principal).order_by(Principal.name)):
                try:
                    self.seal.check_principal(p)
                except TagMismatch:
                    continue
                principals[p.name] = str(p.tag)
            new = seal_state(
                self.seal, max(base, newest) + 1, rules_tag(self.seal, session), principals
            )
            store(session, new)
            bump_revision(session)
        if self.ledger is not None:
            self.ledger.publish(new)
        return sorted(principals)

    def findings(self) -> list[str]:
        """Every grant row that fails its tag or the sealed state, and the state itself
        against its published epoch (``audit grants``)."""
        out: list[str] = []
        with self.tx.begin(read_only=True) as session:
            try:
                state = load(session, self.seal)
            except GrantsTampered as exc:
                return [str(exc)]
            rules = session.scalars(select(PolicyRule).order_by(PolicyRule.id)).all()
            good, bad = self.seal.valid_rules(rules)
            out += [f"forged rule (id {r.id}): {Rule(r.v0, r.v1, r.v2, r.v3, r.v4)}" for r in bad]
            seen = set()
            for p in session.scalars(select(Principal).order_by(Principal.name)):
                seen.add(p.name)
                try:
                    self.seal.check_principal(p)
                except TagMismatch:
                    out.append(f"forged principal: {p.name} (roles {p.roles})")
                    continue
                if not state.counts(p):
                    out.append(f"principal {p.name}: an older row than the sealed state's")
            out += [
                f"principal {n}: in the sealed state, its row is gone"
                for n in sorted(set(state.principals) - seen)
            ]
            try:
                self.seal.check_set(good, state.rules)
            except TagMismatch:
                out.append("the rule set fails its tag: a rule was deleted or changed with SQL")
        if self.ledger is not None:
            try:
                self.ledger.confirm(state)
            except GrantsTampered as exc:
                out.append(str(exc))
        return out

    def counts(self, principal: Principal) -> bool:
        """Whether this (tag-verified) row is the one the sealed grant state names; a row
        restored from an older backup is not. Against the current revision's state (one
        single-row read, as before every decision): an older cached state could still
        name the restored row."""
        self.current()
        state = self._state
        if state is not None and state.counts(principal):
            return True
        self.seal.forged["stale_principal"] += 1
        log.warning("refused a principal row that is not the sealed grant state's (restored?)")
        return False

    def _build(self, session: Session) -> tuple[int, PolicyEngine, GrantState]:
        revision = session.scalar(_REVISION)
        if revision is None:
            raise AccessConfigError("access tables are not initialised: run `pii-vault init`")
        state = load(session, self.seal)
        rules = [
            Rule(r.v0, r.v1, r.v2, r.v3, r.v4)
            for r in self._verified_rules(session, state)
            if r.ptype == "p"
        ]
        roles = {}
        recipients = {}
        for p in session.scalars(select(Principal).where(Principal.disabled.is_(False))):
            try:
                self.seal.check_principal(p)
            except TagMismatch:
                continue  # a forged or edited row grants nothing
            if state.counts(p):
                roles[p.name] = p.roles.split(",")
                if p.kind:
                    recipients[p.name] = Recipient(
                        p.kind, p.recipient, p.recipient_country, p.agreement
                    )
        engine = PolicyEngine(rules, roles, self.field_categories, self.purposes)
        engine.recipients = recipients
        return int(revision), engine, state

    def peek(self) -> PolicyEngine | None:
        """The engine already built for the current revision, or None: never builds.

        For caches keyed by engine (authentication): a miss costs the caller a lookup,
        never a build with its epoch confirmation, so a refusal does not wait on the
        ledger (a burst of refused keys after a change answered 503 under load)."""
        with self.tx.reading(None) as session:
            revision = session.scalar(_REVISION)
        with self._lock:
            if self._built is not None and revision == self._built_revision:
                return self._built
        return None

    def current(self, session: Session | None = None) -> PolicyEngine:
        """The engine for the current revision (rebuilt when any process changed policy),
        its grant state confirmed against the published epochs."""
        with self.tx.reading(session) as session:
            revision = session.scalar(_REVISION)
            with self._lock:
                if self._built is not None and revision == self._built_revision:
                    return self._built
            built = self._build(session)
        if self.ledger is not None:
            for _attempt in range(3):
                if not self.ledger.superseded(built[2]):
                    self.ledger.confirm_own(built[2])
                    break
                # Read just before another process's change, or a restored backup: re-read.
                with self.tx.begin(read_only=True) as fresh:
                    built = self._build(fresh)
            else:
                self.ledger.confirm(built[2])  # still superseded: GrantsTampered
        revision, engine, state = built
        with self._lock:
            self._built, self._built_revision, self._state = engine, revision, state
        return engine
