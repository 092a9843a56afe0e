"""Principals, consent, and the one decision function every data path uses.

Policy rules and principals live in the database. Any change bumps a revision
row; before deciding, every process compares that revision with the one its
engine was built from and rebuilds on a difference, so a policy change takes
effect at once everywhere (at the cost of one single-row read per call).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from access.errors import (
    AccessConfigError,
    AccessError,
    AuthenticationFailed,
    InvalidRequest,
    PrincipalExists,
    PrincipalNotFound,
)
from access.models import AccessState, Consent, PolicyRule, Principal
from access.policy import (
    NO_PURPOSE,
    PURPOSELESS,
    WHOLE_SUBJECT,
    Match,
    PolicyEngine,
    Rule,
    default_policy,
)
from access.purposes import Justification, Purposes
from vault.errors import DatabaseUnavailable
from vault.schema import Schema

DEFAULT_POLICY_VERSION = "2024-11"  # the privacy policy's November 2024 edition
KEY_PREFIX = "pvk_"
_PRINCIPAL_NAME = re.compile(r"^(svc|user):[a-z0-9][a-z0-9._-]{0,62}$")
_KEY = re.compile(r"^pvk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")

Redaction = Literal["plain", "masked", "denied"]
Reason = Literal["forbidden", "consent_required", "justification_required"]
SUBJECT_WIDE_ACTIONS = ("export", "shred", "consent_write", "audit_read", "admin")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class PrincipalInfo:
    name: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: dt.datetime


@dataclass(frozen=True)
class FieldDecision:
    field: str
    redaction: Redaction
    reason: Reason | None
    rule: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"redaction": self.redaction, "reason": self.reason, "rule": self.rule}


@dataclass(frozen=True)
class Decision:
    principal: str
    action: str
    purpose: str | None
    subject_id: str | None
    fields: dict[str, FieldDecision]

    @property
    def allowed(self) -> bool:
        """True when every field is plain or masked."""
        return bool(self.fields) and all(d.redaction != "denied" for d in self.fields.values())

    @property
    def summary(self) -> str:
        states = {d.redaction != "denied" for d in self.fields.values()}
        return "allow" if states == {True} else "deny" if states == {False} else "partial"

    def denial_reason(self) -> Reason | None:
        for d in self.fields.values():
            if d.redaction == "denied":
                return d.reason
        return None


@dataclass(frozen=True)
class SubjectFacts:
    subject_id: str
    is_minor: bool


class AccessControl:
    """Principals, policy, consent and decisions, over the vault's database."""

    def __init__(
        self,
        engine: Engine,
        schema: Schema | None = None,
        purposes: Purposes | None = None,
        *,
        policy_version: str = DEFAULT_POLICY_VERSION,
    ) -> None:
        self.db = engine
        self.schema = schema if schema is not None else Schema.load()
        self.purposes = purposes if purposes is not None else Purposes.load()
        self.policy_version = policy_version
        self.field_categories = {n: s.category for n, s in self.schema.fields.items()}
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._engine: PolicyEngine | None = None
        self._revision = -1
        self.decision_listeners: list[Callable[[Decision], None]] = []  # e.g. metrics
        self._lock = threading.Lock()

    # -- transactions -------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise DatabaseUnavailable("database unavailable") from exc

    def _bump(self, session: Session) -> None:
        session.execute(
            update(AccessState).where(AccessState.id == 1).values(revision=AccessState.revision + 1)
        )

    # -- policy -------------------------------------------------------------------

    def seed_default_policy(self) -> bool:
        """Load access/policy.csv into an empty policy table (``pii-vault init``)."""
        with self._tx() as session:
            if session.scalar(select(PolicyRule.id).limit(1)) is not None:
                return False
            self._insert_rules(session, default_policy())
            return True

    def _insert_rules(self, session: Session, rules: Iterable[Rule]) -> None:
        for r in rules:
            session.add(PolicyRule(ptype="p", v0=r.sub, v1=r.obj, v2=r.act, v3=r.purpose, v4=r.eft))
        self._bump(session)

    def rules(self) -> list[Rule]:
        with self._tx() as session:
            rows = session.scalars(select(PolicyRule).order_by(PolicyRule.id)).all()
            return [Rule(r.v0, r.v1, r.v2, r.v3, r.v4) for r in rows if r.ptype == "p"]

    def add_rules(self, rules: Sequence[Rule]) -> None:
        """Add rules (validated first: a bad rule changes nothing)."""
        PolicyEngine([*self.rules(), *rules], {}, self.field_categories, self.purposes)
        with self._tx() as session:
            self._insert_rules(session, rules)

    def remove_rule(self, rule: Rule) -> int:
        with self._tx() as session:
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
            self._bump(session)
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def policy(self) -> PolicyEngine:
        """The engine for the current revision (rebuilt when any process changed policy)."""
        with self._tx() as session:
            revision = session.scalar(select(AccessState.revision).where(AccessState.id == 1))
            if revision is None:
                raise AccessConfigError("access tables are not initialised: run `pii-vault init`")
            with self._lock:
                if self._engine is not None and revision == self._revision:
                    return self._engine
            rules = [
                Rule(r.v0, r.v1, r.v2, r.v3, r.v4)
                for r in session.scalars(select(PolicyRule).order_by(PolicyRule.id))
                if r.ptype == "p"
            ]
            principals = session.scalars(select(Principal).where(Principal.disabled.is_(False)))
            roles = {p.name: p.roles.split(",") for p in principals}
        engine = PolicyEngine(rules, roles, self.field_categories, self.purposes)
        with self._lock:
            self._engine, self._revision = engine, int(revision)
        return engine

    # -- principals -----------------------------------------------------------------

    def create_principal(self, name: str, roles: Sequence[str]) -> tuple[PrincipalInfo, str]:
        """Create a principal; returns its API key, which is shown once and stored hashed."""
        if not _PRINCIPAL_NAME.match(name):
            raise InvalidRequest("principal name must look like svc:NAME or user:NAME")
        known = set(self.policy().roles)
        unknown = [r for r in roles if r not in known]
        if not roles or unknown:
            raise InvalidRequest(
                f"unknown role(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(sorted(known))}"
            )
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = _utcnow()
        try:
            with self._tx() as session:
                session.add(
                    Principal(
                        name=name,
                        key_id=key_id,
                        key_hash=_hash_secret(secret),
                        roles=",".join(dict.fromkeys(roles)),
                        disabled=False,
                        created_at=now,
                    )
                )
                self._bump(session)
        except IntegrityError as exc:
            raise PrincipalExists(f"principal {name} already exists") from exc
        return PrincipalInfo(name, tuple(dict.fromkeys(roles)), False, now), (
            f"{KEY_PREFIX}{key_id}.{secret}"
        )

    def list_principals(self) -> list[PrincipalInfo]:
        with self._tx() as session:
            return [
                PrincipalInfo(p.name, tuple(p.roles.split(",")), p.disabled, p.created_at)
                for p in session.scalars(select(Principal).order_by(Principal.name))
            ]

    def disable_principal(self, name: str) -> None:
        with self._tx() as session:
            principal = session.get(Principal, name)
            if principal is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
            principal.disabled = True
            principal.disabled_at = _utcnow()
            self._bump(session)

    def authenticate(self, api_key: str | None) -> PrincipalInfo:
        """The principal owning ``api_key``; one error for missing, malformed, unknown, disabled."""
        match = _KEY.match(api_key or "")
        if not match:
            raise AuthenticationFailed()
        key_id, secret = match.groups()
        with self._tx() as session:
            principal = session.scalar(select(Principal).where(Principal.key_id == key_id))
        expected = principal.key_hash if principal is not None else _hash_secret("")
        ok = hmac.compare_digest(expected, _hash_secret(secret))
        if principal is None or not ok or principal.disabled:
            raise AuthenticationFailed()
        return PrincipalInfo(
            principal.name, tuple(principal.roles.split(",")), False, principal.created_at
        )

    # -- consent ------------------------------------------------------------------------

    def record_consent(
        self,
        subject_id: str,
        purpose: str,
        *,
        granted: bool,
        given_by: str,
        policy_version: str | None = None,
        session: Session | None = None,
    ) -> Consent:
        self.purposes.get(purpose)
        if given_by not in ("subject", "guardian"):
            raise InvalidRequest("given_by must be 'subject' or 'guardian'")
        version = policy_version or self.policy_version
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", version):
            raise InvalidRequest("policy_version must look like YYYY-MM")
        row = Consent(
            subject_id=subject_id,
            purpose=purpose,
            granted=bool(granted),
            given_by=given_by,
            policy_version=version,
            recorded_at=_utcnow(),
        )
        if session is not None:
            session.add(row)
            return row
        with self._tx() as own:
            own.add(row)
        return row

    def consent_ok(self, subject: SubjectFacts, purpose: str) -> bool:
        """Granted, under the current policy version, and by a guardian for a minor."""
        with self._tx() as session:
            latest = session.scalar(
                select(Consent)
                .where(Consent.subject_id == subject.subject_id, Consent.purpose == purpose)
                .order_by(Consent.id.desc())
                .limit(1)
            )
        return (
            latest is not None
            and latest.granted
            and latest.policy_version == self.policy_version
            and (not subject.is_minor or latest.given_by == "guardian")
        )

    def consents(self, subject_id: str) -> list[dict[str, object]]:
        with self._tx() as session:
            return [
                {
                    "purpose": c.purpose,
                    "granted": c.granted,
                    "given_by": c.given_by,
                    "policy_version": c.policy_version,
                    "recorded_at": c.recorded_at.isoformat() if c.recorded_at else None,
                }
                for c in session.scalars(
                    select(Consent).where(Consent.subject_id == subject_id).order_by(Consent.id)
                )
            ]

    def delete_consents(self, subject_id: str) -> None:
        with self._tx() as session:
            session.execute(delete(Consent).where(Consent.subject_id == subject_id))

    # -- the decision function --------------------------------------------------------------

    def decide(
        self,
        principal: str,
        fields: Sequence[str],
        action: str,
        purpose: str | None,
        subject: SubjectFacts | None = None,
        justification: Justification | None = None,
        *,
        gates: bool = True,
        policy: PolicyEngine | None = None,
    ) -> Decision:
        """Per field: ``plain``, ``masked`` or ``denied`` with a reason and the matched rule.

        Redaction (DESIGN.md): for ``detokenize``, plain if detokenize is allowed,
        else masked if read_masked is, else denied. Then the purpose's gates: a
        missing or malformed justification denies plaintext (masked stays visible);
        missing consent denies everything.
        ``gates=False`` evaluates the policy alone (for ``policy explain``); ``policy`` reuses
        an engine already fetched for this request (one revision check per request).
        """
        if action in PURPOSELESS:
            purpose_spec = None
            request_purpose = NO_PURPOSE
        else:
            if purpose is None:
                raise InvalidRequest("a purpose is required")
            purpose_spec = self.purposes.get(purpose)
            request_purpose = purpose
        engine = policy if policy is not None else self.policy()
        objects = [WHOLE_SUBJECT] if action in SUBJECT_WIDE_ACTIONS else list(fields)
        if not objects:
            raise InvalidRequest("no fields named")
        chain: list[tuple[str, Redaction]] = (
            [("detokenize", "plain"), ("read_masked", "masked")]
            if action == "detokenize"
            else [("read_masked", "masked")]
            if action == "read_masked"
            else [(action, "plain")]
        )
        decisions: dict[str, FieldDecision] = {}
        for obj in objects:
            if obj != WHOLE_SUBJECT and obj not in self.field_categories:
                decisions[obj] = FieldDecision(obj, "denied", "forbidden", None)
                continue
            deny_rule: str | None = None
            for act, redaction in chain:
                match: Match = engine.enforce(principal, obj, act, request_purpose)
                if match.allowed:
                    decisions[obj] = FieldDecision(obj, redaction, None, match.rule)
                    break
                deny_rule = deny_rule or match.rule
            else:
                decisions[obj] = FieldDecision(obj, "denied", "forbidden", deny_rule)

        if gates and purpose_spec is not None and action != "consent_write":
            # Justification guards plaintext (support sees masked records without one);
            # consent guards any processing for a consent-based purpose.
            unjustified = purpose_spec.requires_justification and not (
                justification is not None and justification.valid
            )
            no_consent = purpose_spec.requires_consent and (
                subject is None or not self.consent_ok(subject, purpose_spec.name)
            )
            for k, d in list(decisions.items()):
                if d.redaction == "plain" and unjustified:
                    decisions[k] = FieldDecision(k, "denied", "justification_required", d.rule)
                elif d.redaction != "denied" and no_consent:
                    decisions[k] = FieldDecision(k, "denied", "consent_required", d.rule)
        decision = Decision(
            principal, action, purpose, subject.subject_id if subject else None, decisions
        )
        for listener in self.decision_listeners:
            listener(decision)
        return decision


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


__all__ = [
    "AccessControl",
    "AccessError",
    "Decision",
    "FieldDecision",
    "PrincipalInfo",
    "SubjectFacts",
]
