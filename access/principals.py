"""Principals (services and people) and their API keys, stored hashed.

A principal's roles feed the policy engine, so every change here bumps the
policy revision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from access.errors import AuthenticationFailed, InvalidRequest, PrincipalExists, PrincipalNotFound
from access.models import Principal
from access.policy_store import PolicyStore, bump_revision
from vault.transactions import Transactions

KEY_PREFIX = "pvk_"
_PRINCIPAL_NAME = re.compile(r"^(svc|user):[a-z0-9][a-z0-9._-]{0,62}$")
_KEY = re.compile(r"^pvk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class PrincipalInfo:
    name: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: dt.datetime


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Principals:
    def __init__(self, tx: Transactions, policy: PolicyStore) -> None:
        self.tx = tx
        self.policy = policy

    def create(self, name: str, roles: Sequence[str]) -> tuple[PrincipalInfo, str]:
        """Create a principal; returns its API key, which is shown once and stored hashed."""
        if not _PRINCIPAL_NAME.fullmatch(name):
            raise InvalidRequest("principal name must look like svc:NAME or user:NAME")
        known = set(self.policy.current().roles)
        unknown = [r for r in roles if r not in known]
        if not roles or unknown:
            raise InvalidRequest(
                f"unknown role(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(sorted(known))}"
            )
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        unique_roles = tuple(dict.fromkeys(roles))
        try:
            with self.tx.begin() as session:
                session.add(
                    Principal(
                        name=name,
                        key_id=key_id,
                        key_hash=_hash_secret(secret),
                        roles=",".join(unique_roles),
                        disabled=False,
                        created_at=now,
                    )
                )
                bump_revision(session)
        except IntegrityError as exc:
            raise PrincipalExists(f"principal {name} already exists") from exc
        return PrincipalInfo(name, unique_roles, False, now), f"{KEY_PREFIX}{key_id}.{secret}"

    def list(self) -> list[PrincipalInfo]:
        with self.tx.begin() as session:
            return [
                PrincipalInfo(p.name, tuple(p.roles.split(",")), p.disabled, p.created_at)
                for p in session.scalars(select(Principal).order_by(Principal.name))
            ]

    def disable(self, name: str) -> None:
        with self.tx.begin() as session:
            principal = session.get(Principal, name)
            if principal is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
            principal.disabled = True
            principal.disabled_at = dt.datetime.now(dt.UTC)
            bump_revision(session)

    def sign_in_user(self, name: str, roles: Sequence[str]) -> PrincipalInfo:
        """A person signed in through the identity provider: their principal is created, or
        its roles updated to what the provider says now. A disabled principal stays out
        (``principal disable`` applies to people too). People get no API key: the one
        stored is random and never shown, so it opens nothing."""
        if not _PRINCIPAL_NAME.fullmatch(name) or not name.startswith("user:"):
            raise AuthenticationFailed()
        known = set(self.policy.current().roles)
        granted = tuple(dict.fromkeys(r for r in roles if r in known))
        if not granted:
            raise AuthenticationFailed()  # signed in, but no role here: not a user of this vault
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin() as session:
            principal = session.get(Principal, name)
            if principal is None:
                principal = Principal(
                    name=name,
                    key_id=secrets.token_hex(8),
                    key_hash=_hash_secret(secrets.token_urlsafe(32)),
                    roles=",".join(granted),
                    disabled=False,
                    created_at=now,
                )
                session.add(principal)
            elif principal.disabled:
                raise AuthenticationFailed()
            elif principal.roles != ",".join(granted):
                principal.roles = ",".join(granted)
            created = principal.created_at
        return PrincipalInfo(name, granted, False, created)

    def is_enabled(self, name: str) -> bool:
        """Whether ``name`` exists and is not disabled (checked on every console request)."""
        with self.tx.begin(read_only=True) as session:
            principal = session.get(Principal, name)
            return principal is not None and not principal.disabled

    def authenticate(self, api_key: str | None) -> PrincipalInfo:
        """The principal owning ``api_key``; one error for missing, malformed, unknown, disabled."""
        match = _KEY.fullmatch(api_key or "")
        if not match:
            raise AuthenticationFailed()
        key_id, secret = match.groups()
        with self.tx.begin(read_only=True) as session:  # no write lock (SQLite)
            principal = session.scalar(select(Principal).where(Principal.key_id == key_id))
        expected = principal.key_hash if principal is not None else _hash_secret("")
        ok = hmac.compare_digest(expected, _hash_secret(secret))
        if principal is None or not ok or principal.disabled:
            raise AuthenticationFailed()
        return PrincipalInfo(
            principal.name, tuple(principal.roles.split(",")), False, principal.created_at
        )
