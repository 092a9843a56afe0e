"""The Casbin policy engine: rules as data, field->category grouping generated from the schema.

An engine is immutable once built; a policy or principal change builds a new
one, which also starts a fresh decision cache. So cached decisions can never
outlive the policy they came from, and the cost of a repeated decision does
not grow with the number of policy lines.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import casbin
from casbin.model import Model

from access.errors import AccessConfigError, UnknownPurpose
from access.facts import Recipient
from access.purposes import Purposes, consent_topic

ACTIONS = (
    "write",  # store a field the subject does not have yet (or the same value again)
    "correct",  # change a value already stored (privacy policy §5): a distinct, audited action
    "detokenize",
    "read_masked",
    "reveal",
    "approve",  # four-eyes: approve or reject another person's reveal (access/approvals.py)
    "match",  # compare a presented biometric template with the stored one: match or not
    "export",
    "disclose",  # the export for legal_compliance, to a named authority (§2(2), §3(3))
    "shred",
    "consent_write",
    "attributes",  # change a subject's minor status or region (the privacy office, §6/§7)
    "hold",  # place or lift a legal hold (the privacy office, §4; access/holds.py)
    "restrict",  # record a restriction, an objection or a lift (the privacy office, §5)
    "break_glass",  # open an emergency grant for oneself (§2(2); access/break_glass.py)
    "transfers",  # keep the transfer-basis registry and read its report (§7)
    "audit_read",
    "admin",
)
EFFECTS = ("allow", "deny")
NO_PURPOSE = "-"  # audit_read and admin are not tied to a purpose of processing
PURPOSELESS = ("transfers", "audit_read", "admin")
WHOLE_SUBJECT = "*"  # object of subject-wide actions (export, shred, consent_write, ...)


@dataclass(frozen=True)
class Rule:
    sub: str
    obj: str
    act: str
    purpose: str
    eft: str

    def __str__(self) -> str:
        return f"p, {self.sub}, {self.obj}, {self.act}, {self.purpose}, {self.eft}"


@dataclass(frozen=True)
class Match:
    allowed: bool
    rule: str | None  # the matched rule, or None when no rule matched (default deny)


def parse_policy(text: str) -> list[Rule]:
    """Rules from CSV text (``#`` comments and blank lines ignored)."""
    rules: list[Rule] = []
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for number, row in enumerate(csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)):
        cells = [c.strip() for c in row]
        if len(cells) != 6 or cells[0] != "p":
            raise AccessConfigError(
                f"policy line {number + 1}: expected 'p, sub, obj, act, purpose, allow|deny'"
            )
        rules.append(Rule(*cells[1:]))
    return rules


def default_policy() -> list[Rule]:
    return parse_policy(
        resources.files("access").joinpath("policy.csv").read_text(encoding="utf-8")
    )


def _model() -> Model:
    model = Model()
    model.load_model_from_text(
        resources.files("access").joinpath("model.conf").read_text(encoding="utf-8")
    )
    return model


def _consent_topic(rule: Rule, categories: set[str], purposes: Purposes) -> bool:
    """A consent_write rule may name a consent topic: ``sensitive:<category>`` or
    ``cross_border:<REGION>`` (``access.purposes.consent_topic``)."""
    if rule.act != "consent_write" or ":" not in rule.purpose:
        return False
    try:
        consent_topic(rule.purpose, purposes, categories)
    except UnknownPurpose:
        return False
    return True


class PolicyEngine:
    """Casbin enforcer + decision cache for one revision of the policy."""

    def __init__(
        self,
        rules: Iterable[Rule],
        role_assignments: Mapping[str, Sequence[str]],
        field_categories: Mapping[str, str],
        purposes: Purposes,
        *,
        cache_size: int = 65536,
    ) -> None:
        self.rules = list(rules)
        # Who each principal is as a recipient (policy §3(1)), from the same verified rows
        # as its roles (PolicyStore fills it): internal unless named.
        self.recipients: dict[str, Recipient] = {}
        self.field_categories = dict(field_categories)
        categories = set(self.field_categories.values())
        for rule in self.rules:
            self._check(rule, categories, purposes)
        self.roles = sorted({r.sub for r in self.rules if r.sub != "*"})
        self._enforcer = casbin.Enforcer(_model())
        # Every deny before every allow: with a first-match effect, any matching deny decides.
        ordered = [r for r in self.rules if r.eft == "deny"] + [
            r for r in self.rules if r.eft == "allow"
        ]
        if ordered:
            self._enforcer.add_policies([[r.sub, r.obj, r.act, r.purpose, r.eft] for r in ordered])
        grouping = [[p, role] for p, roles in role_assignments.items() for role in roles]
        if grouping:
            self._enforcer.add_grouping_policies(grouping)
        self._enforcer.add_named_grouping_policies(
            "g2", [[field, cat] for field, cat in self.field_categories.items()]
        )
        self._cache: OrderedDict[tuple[str, str, str, str], Match] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _check(self, rule: Rule, categories: set[str], purposes: Purposes) -> None:
        where = f"policy rule '{rule}'"
        if rule.act not in ACTIONS:
            raise AccessConfigError(f"{where}: unknown action (one of {', '.join(ACTIONS)})")
        if rule.eft not in EFFECTS:
            raise AccessConfigError(f"{where}: effect must be allow or deny")
        if (
            rule.purpose != "*"
            and rule.purpose not in purposes
            and not _consent_topic(rule, categories, purposes)
        ):
            raise AccessConfigError(f"{where}: unknown purpose")
        if rule.obj != "*" and rule.obj not in categories and rule.obj not in self.field_categories:
            raise AccessConfigError(f"{where}: object is neither a category nor a field")
        if not rule.sub:
            raise AccessConfigError(f"{where}: empty subject")

    def enforce_uncached(self, principal: str, obj: str, action: str, purpose: str) -> Match:
        with self._lock:
            allowed, explain = self._enforcer.enforce_ex(principal, obj, action, purpose)
        rule = (
            str(Rule(explain[0], explain[1], explain[2], explain[3], explain[4]))
            if explain
            else None
        )
        return Match(bool(allowed), rule)

    def enforce(self, principal: str, obj: str, action: str, purpose: str) -> Match:
        key = (principal, obj, action, purpose)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        match = self.enforce_uncached(principal, obj, action, purpose)
        with self._lock:
            self._cache[key] = match
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return match
