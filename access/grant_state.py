"""The grant state: one sealed record of which grants count, its epoch published outside
the database (issue 17: the rollback a restored backup could do).

Row tags (``access/grants.py``) show a row forged or edited with SQL and the rule set's
tag a rule deleted; neither shows a *rollback*: rows restored from an older backup
carry valid tags, so a since-disabled principal would come back enabled, a removed
rule return. The vault therefore keeps one record of the current grants in
``access_state.grant_state``: each principal's row tag by name, the rule set's tag and
an epoch bumped on every change, sealed by a MAC under the grant key. A principal row
counts only if its tag is the one the record names; the rules only if their set tag is
the record's. After every change the epoch's seal is published, create-only, in the
anchor store (``anchors/<log>/grants/<epoch>``), which the database cannot reach; a
record older than the newest published epoch is a restored backup and every decision
fails closed (``GrantsTampered``) until an operator looks (``pii-vault audit grants``).

Published epochs are contiguous: a change first makes sure its predecessor is
published, so checking a record is two reads (its own epoch, and that the next one is
absent), however long the history. Bound: the newest change, committed but not yet
published (the moment between the two, or Vault down then), can be rolled back unseen;
whoever rebuilds next publishes it.

Only a deployment whose anchor store holds no published epoch may seal pre-existing
rows (``pii-vault init``): the marker lives outside the database, so clearing a
column cannot re-open sealing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from access.errors import GrantsTampered
from access.grants import GrantSeal, TagMismatch
from access.models import AccessState, PolicyRule, Principal
from keys.provider import PublishedRecords
from vault.models import iso, utcnow
from vault.transactions import translating

_KIND = "grants"


def _name(epoch: int) -> str:
    return f"{epoch:020d}"


@dataclass(frozen=True)
class GrantState:
    """What counts: ``principals`` maps a name to its row's tag, ``rules`` is the rule
    set's tag; ``epoch`` 0 is the state before anything was ever sealed."""

    epoch: int
    rules: str
    principals: Mapping[str, str] = field(default_factory=dict)
    tag: str = ""

    def counts(self, principal: Principal) -> bool:
        return bool(principal.tag) and self.principals.get(principal.name) == principal.tag


def _material(epoch: int, rules: str, principals: Mapping[str, str]) -> list[object]:
    return [epoch, rules, sorted(principals.items())]


def seal_state(
    seal: GrantSeal, epoch: int, rules: str, principals: Mapping[str, str]
) -> GrantState:
    tag = seal.mac("state", _material(epoch, rules, principals))
    return GrantState(epoch, rules, dict(principals), tag)


def empty_state(seal: GrantSeal) -> GrantState:
    return GrantState(0, seal.set_tag([]), {})


def load(session: Session, seal: GrantSeal, *, for_update: bool = False) -> GrantState:
    """The sealed state as stored (its MAC checked); the empty state if none was ever
    sealed (whether that may be so is the ledger's to say, outside the database)."""
    query = select(AccessState.grant_state).where(AccessState.id == 1)
    raw = session.scalar(query.with_for_update() if for_update else query)
    if raw is None:
        return empty_state(seal)
    try:
        data = json.loads(raw)
        state = GrantState(
            int(data["epoch"]), str(data["rules"]), dict(data["principals"]), str(data["tag"])
        )
        seal.check("state", _material(state.epoch, state.rules, state.principals), state.tag)
    except (ValueError, KeyError, TypeError, TagMismatch) as exc:
        raise GrantsTampered(
            "the grant state fails its seal (changed outside the vault): "
            "run `pii-vault audit grants`"
        ) from exc
    return state


def store(session: Session, state: GrantState) -> None:
    data = {
        "epoch": state.epoch,
        "rules": state.rules,
        "principals": dict(state.principals),
        "tag": state.tag,
    }
    session.execute(
        update(AccessState)
        .where(AccessState.id == 1)
        .values(grant_state=json.dumps(data, sort_keys=True, separators=(",", ":")))
    )


class GrantLedger:
    """The published epochs (create-only, in the anchor store)."""

    def __init__(self, records: PublishedRecords, log: Callable[[], str]) -> None:
        self.records = records
        self._log = log

    def _get(self, epoch: int) -> str | None:
        with translating():
            record = self.records.published(self._log(), _KIND, _name(epoch))
        return None if record is None else str(record.get("tag"))

    def publish(self, state: GrantState) -> None:
        """Idempotent; a different seal already published for the epoch is tampering."""
        if state.epoch == 0:
            return
        record = {"v": 1, "epoch": state.epoch, "tag": state.tag, "at": iso(utcnow())}
        with translating():
            created = self.records.publish(self._log(), _KIND, _name(state.epoch), record)
        if not created and self._get(state.epoch) != state.tag:  # someone else's first
            raise GrantsTampered(f"grant state epoch {state.epoch} was published with another seal")

    def newest(self) -> int:
        """The newest published epoch (0 if none): one listing, for ``accept_restored``."""
        with translating():
            names = self.records.published_names(self._log(), _KIND)
        return max((int(n) for n in names if n.isdigit()), default=0)

    def ever_published(self) -> bool:
        return self._get(1) is not None

    def superseded(self, state: GrantState) -> bool:
        """True if a later epoch is published: ``state`` is a rolled-back one (or, for a
        moment, one read just before another process's change; callers re-read)."""
        return self._get(state.epoch + 1) is not None

    def confirm(self, state: GrantState) -> None:
        """The state is the newest: its epoch is published with its seal (published now if
        its writer did not get to it), and none after it. Raises GrantsTampered."""
        if self.superseded(state):
            raise GrantsTampered(
                f"the grants in the database (epoch {state.epoch}) are older than the newest "
                "published grant state (a restored backup?): run `pii-vault audit grants`"
            )
        self.confirm_own(state)

    def confirm_own(self, state: GrantState) -> None:
        """The second half of ``confirm``, for a caller that has just seen that no later
        epoch is published: the state's own epoch carries its seal (published if not)."""
        if state.epoch == 0:
            return
        published = self._get(state.epoch)
        if published is None:
            self.publish(state)
        elif published != state.tag:
            raise GrantsTampered(
                f"the grant state (epoch {state.epoch}) is not the one published for it"
            )


def rules_tag(seal: GrantSeal, session: Session) -> str:
    """The set tag over the rules whose tags verify (forged rows never enter it)."""
    session.flush()
    good, _forged = seal.valid_rules(session.scalars(select(PolicyRule)).all())
    return seal.set_tag(good)


class GrantChange:
    """One change to the grants inside one transaction: the stored state locked and
    checked first, the new state sealed at the end (``PolicyStore.changing``)."""

    def __init__(self, session: Session, seal: GrantSeal, base: GrantState) -> None:
        self.session = session
        self._seal = seal
        self.base = base
        self._principals = dict(base.principals)
        self._rules = base.rules
        self.changed = False

    def principal(self, principal: Principal) -> None:
        """Tag ``principal`` as it now is and let that row count."""
        self._seal.tag_principal(principal)
        self._principals[principal.name] = str(principal.tag)
        self.changed = True

    def rules(self) -> None:
        """The rules changed: the state takes their new set tag."""
        self._rules = rules_tag(self._seal, self.session)
        self.changed = True

    def sealed(self) -> GrantState:
        return seal_state(self._seal, self.base.epoch + 1, self._rules, self._principals)
