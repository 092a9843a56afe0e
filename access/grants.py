"""Grants authenticated outside the database: MACs over principal rows, policy rules and
API-key digests under a key the database does not hold (issue 17).

Someone who can write the database could otherwise mint a principal, add a role
or insert an allow rule with one statement. Every row that grants access carries
a tag (HMAC-SHA256 under the deployment's grant key, derived in Vault from
``transit/hmac/pii-grants`` once per process); a row whose tag does not verify
grants nothing and is counted as forged. Row tags cannot show a *deleted* row
(a deny rule removed with SQL widens access), so the rule set as a whole carries
a set tag too, kept in ``access_state``: a missing or altered rule fails the
whole policy closed (``GrantsTampered``, 503) until an operator looks
(``pii-vault audit grants``). API keys are stored as keyed digests, so a dump
gives nothing to test guesses against.

Checks raise; there is no boolean to forget (tink's ``verify_mac``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from access.models import PolicyRule, Principal
from vault.models import aware
from vault.transactions import translating

log = logging.getLogger(__name__)

TAG_VERSION = "g1"
DIGEST_VERSION = "k1"
_CONTEXT = b"pii-vault/grants/v1|"


class TagMismatch(Exception):
    """A tag did not verify (raised, never returned)."""


def _canonical(kind: str, values: Sequence[Any]) -> bytes:
    return _CONTEXT + json.dumps([kind, *values], separators=(",", ":")).encode("utf-8")


def principal_material(p: Principal) -> bytes:
    """Everything in a principal row that grants access."""
    values: list[Any] = [p.name, p.key_id, p.key_hash, p.roles, bool(p.disabled)]
    if p.region:  # rows from before regions keep their tags
        values.append(p.region)
    if p.kind:  # ...and rows of internal principals from before recipients
        values += [
            "recipient",
            p.kind,
            p.recipient or "",
            p.recipient_country or "",
            p.agreement or "",
        ]
    if p.key_expires_at or p.old_key_id:  # ...and rows from before key rotation (issue 22)
        values += [
            "keys",
            _when(p.key_expires_at),
            p.old_key_id or "",
            p.old_key_hash or "",
            _when(p.old_key_until),
        ]
    return _canonical("principal", values)


def _when(moment: dt.datetime | None) -> str:
    """A time as grant material: UTC seconds (SQLite returns it naive, PostgreSQL aware)."""
    return "" if moment is None else str(int(aware(moment).timestamp()))


def rule_material(r: PolicyRule) -> bytes:
    return _canonical("rule", [r.ptype, r.v0, r.v1, r.v2 or "", r.v3 or "", r.v4 or ""])


class GrantSeal:
    """MACs for grants under the deployment's grant key (fetched lazily, then kept)."""

    def __init__(self, key_source: Callable[[], bytes]) -> None:
        self._source = key_source
        self._key: bytes | None = None
        self._lock = threading.Lock()
        self.forged: Counter[str] = Counter()  # kind -> rows refused for a bad tag (metrics)

    def _k(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    with translating():  # Vault down: 503, never a grant decided without it
                        self._key = self._source()
        return self._key

    def _mac(self, material: bytes) -> str:
        return f"{TAG_VERSION}:" + hmac.new(self._k(), material, hashlib.sha256).hexdigest()

    def profile_secret(self) -> str:
        """The secret people's profiles are sealed under (a key derived from the grant key:
        a dump of the principals table names nobody)."""
        return hmac.new(self._k(), b"pii-vault/profiles/v1", hashlib.sha256).hexdigest()

    # -- API keys -----------------------------------------------------------------

    def key_digest(self, secret: str) -> str:
        """An API key's stored digest: keyed, so a database dump cannot test guesses."""
        material = b"pii-vault/api-key/v1|" + secret.encode("utf-8")
        return f"{DIGEST_VERSION}:" + hmac.new(self._k(), material, hashlib.sha256).hexdigest()

    # -- rows -----------------------------------------------------------------------

    def tag_principal(self, p: Principal) -> None:
        p.tag = self._mac(principal_material(p))

    def tag_rule(self, r: PolicyRule) -> None:
        r.tag = self._mac(rule_material(r))

    def check_principal(self, p: Principal) -> None:
        self._check("principal", principal_material(p), p.tag)

    def check_rule(self, r: PolicyRule) -> None:
        self._check("rule", rule_material(r), r.tag)

    def _check(self, kind: str, material: bytes, tag: str | None) -> None:
        if not tag or not hmac.compare_digest(self._mac(material), tag):
            self.forged[kind] += 1
            log.warning("refused a %s row whose grant tag does not verify (forged?)", kind)
            raise TagMismatch(f"{kind} row fails its grant tag")

    def valid_rules(self, rows: Iterable[PolicyRule]) -> tuple[list[PolicyRule], list[PolicyRule]]:
        """(rules whose tag verifies, rules that fail theirs)."""
        good: list[PolicyRule] = []
        bad: list[PolicyRule] = []
        for r in rows:
            try:
                self.check_rule(r)
                good.append(r)
            except TagMismatch:
                bad.append(r)
        return good, bad

    # -- any other sealed record (the grant state, access/grant_state.py) ---------------

    def mac(self, kind: str, values: Sequence[Any]) -> str:
        return self._mac(_canonical(kind, values))

    def check(self, kind: str, values: Sequence[Any], tag: str | None) -> None:
        self._check(kind, _canonical(kind, values), tag)

    # -- the rule set -----------------------------------------------------------------

    def set_tag(self, rules: Iterable[PolicyRule]) -> str:
        """Over every valid rule's tag (sorted: row order is the database's to choose)."""
        tags = sorted(str(r.tag) for r in rules)
        return self._mac(_canonical("rules", tags))

    def check_set(self, rules: Iterable[PolicyRule], tag: str | None) -> None:
        expected = self.set_tag(rules)
        if not tag or not hmac.compare_digest(expected, tag):
            self.forged["rule_set"] += 1
            log.warning("the policy rule set fails its tag: a rule was deleted or changed")
            raise TagMismatch("policy rule set fails its tag")
