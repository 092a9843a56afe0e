"""API keys: issued, verified (with a per-worker cache), rotated with an overlap, expired.

Apart from ``principals.py`` because authentication is the hot path of every service
request and changes for its own reasons (caching, key lifetimes, digest upgrades).
A key is ``pvk_<id>.<secret>``; only a keyed digest of the secret is stored, and the
key id, digest, expiry and a rotated key's overlap are all in the principal's grant
tag, so no SQL edit extends a key's life or lends one principal's key to another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import or_, select

from access.errors import (
    AuthenticationFailed,
    GrantsTampered,
    InvalidRequest,
    PrincipalNotFound,
)
from access.grants import DIGEST_VERSION, TagMismatch
from access.models import Principal
from access.policy_store import PolicyStore
from vault.models import aware
from vault.transactions import Transactions

KEY_PREFIX = "pvk_"
_KEY = re.compile(r"^pvk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
_VERIFIED_MAX = 4096  # cached verified keys per worker
_FOREVER = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class PrincipalInfo:
    name: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: dt.datetime
    region: str | None = None  # None: the deployment's region (policy §7)

    @classmethod
    def of(cls, row: Principal) -> PrincipalInfo:
        return cls(row.name, tuple(row.roles.split(",")), row.disabled, row.created_at, row.region)


def _end(moment: dt.datetime | None) -> dt.datetime | None:
    """A key's end as aware UTC, or None (no end)."""
    return aware(moment) if moment is not None else None


def _legacy_digest(secret: str) -> str:
    """Before issue 17: unkeyed SHA-256 (rows sealed by `init` keep it until first use)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiKeys:
    def __init__(self, tx: Transactions, policy: PolicyStore) -> None:
        self.tx = tx
        self.policy = policy
        self.seal = policy.seal
        self.on_change = policy.on_change
        # key id -> (the engine it was verified under, the key's digest, who, valid until).
        self._verified: dict[str, tuple[object, str, PrincipalInfo, dt.datetime]] = {}

    def issue(self) -> tuple[str, str, str]:
        """A fresh key: its id, the digest to store, and the key itself (shown once)."""
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        return key_id, self.seal.key_digest(secret), f"{KEY_PREFIX}{key_id}.{secret}"

    def usable(self, principal: Principal | None) -> Principal | None:
        """The row if its grant tag verifies; None (and counted) if it was forged or edited."""
        if principal is None:
            return None
        try:
            self.seal.check_principal(principal)
        except TagMismatch:
            return None
        return principal if self.policy.counts(principal) else None

    def authenticate(self, api_key: str | None) -> PrincipalInfo:
        """The principal owning ``api_key``; one error for missing, malformed, unknown, disabled.

        A key verified under the current policy revision is not looked up again: every
        change to a principal (disable, roles, a new key) bumps the revision, which
        the request reads anyway, and a new revision is a new engine, so the
        entries verified under the old one no longer match. The secret is still compared
        on every request (a wrong secret for a cached key id is refused). Only an engine
        already built is used (``policy.peek``): a refusal never waits on a rebuild."""
        match = _KEY.fullmatch(api_key or "")
        if not match:
            raise AuthenticationFailed()
        key_id, secret = match.groups()
        keyed = self.seal.key_digest(secret)
        engine = self.policy.peek()  # the revision read (one single-row query)
        hit = self._verified.get(key_id)
        now = dt.datetime.now(dt.UTC)
        if hit is not None and engine is not None and hit[0] is engine and now < hit[3]:
            if not hmac.compare_digest(hit[1], keyed):
                raise AuthenticationFailed()
            return hit[2]
        with self.tx.begin(read_only=True) as session:  # no write lock (SQLite)
            principal = session.scalar(
                select(Principal).where(
                    or_(Principal.key_id == key_id, Principal.old_key_id == key_id)
                )
            )
        if principal is None:
            raise AuthenticationFailed()
        current = principal.key_id == key_id
        expected = (principal.key_hash if current else principal.old_key_hash) or ""
        until = _end(principal.key_expires_at if current else principal.old_key_until)
        legacy = current and not expected.startswith(f"{DIGEST_VERSION}:")
        ok = hmac.compare_digest(expected, _legacy_digest(secret) if legacy else keyed)
        if not ok or principal.disabled or (until is not None and now >= until):
            raise AuthenticationFailed()  # an old key past its overlap, an expired key
        if not current and until is None:
            raise AuthenticationFailed()  # an old key without an end: not ours
        if self.usable(principal) is None:  # the forgery is logged and counted there
            raise AuthenticationFailed()
        if legacy:
            self._upgrade_digest(principal.name, expected, keyed)
        info = PrincipalInfo.of(principal)  # not disabled: checked above
        if not legacy and engine is not None:
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()  # bounded; rebuilt by the next requests
            # Under the engine read *before* the row: if the revision moved meanwhile, the
            # entry never matches (a miss), never the other way round. Kept until the key
            # (or the old key's overlap) ends.
            self._verified[key_id] = (engine, keyed, info, until or _FOREVER)
        return info

    def rotate(
        self,
        name: str,
        actor: str = "operator",
        *,
        overlap: dt.timedelta = dt.timedelta(0),
        expires: dt.timedelta | None = None,
    ) -> tuple[str, dt.datetime | None]:
        """A new API key for ``name`` (shown once) and when the current one stops working:
        after ``overlap`` (or its own expiry, if sooner), then never; None: it stopped now.
        ``expires``: the new key's lifetime (None: it does not expire). Audited before it
        is made. A key rotated again during an overlap ends the older key at once."""
        if overlap < dt.timedelta(0) or (expires is not None and expires <= dt.timedelta(0)):
            raise InvalidRequest("overlap is >= 0 and an expiry > 0")
        with self.tx.begin(read_only=True) as session:
            if session.get(Principal, name) is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
        detail = {"name": name, "overlap_seconds": str(int(overlap.total_seconds()))}
        if expires is not None:
            detail["expires_seconds"] = str(int(expires.total_seconds()))
        self.on_change(actor, "principal_rotate_key", detail)
        key_id, digest, key = self.issue()
        now = dt.datetime.now(dt.UTC)
        with self.policy.changing() as change:
            row = change.session.get(Principal, name)
            if row is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
            if row.disabled:
                raise InvalidRequest(f"principal {name[:128]} is disabled; enable it first")
            if not change.base.counts(row) or self.usable(row) is None:
                raise GrantsTampered(
                    f"principal {name[:128]} fails its grant tag; see 'pii-vault audit grants'"
                )
            if overlap > dt.timedelta(0):
                row.old_key_id, row.old_key_hash = row.key_id, row.key_hash
                ends = now + overlap
                expiry = _end(row.key_expires_at)
                row.old_key_until = min(ends, expiry) if expiry is not None else ends
            else:
                row.old_key_id = row.old_key_hash = row.old_key_until = None
            row.key_id, row.key_hash = key_id, digest
            row.key_expires_at = now + expires if expires is not None else None
            change.principal(row)
            old_until = _end(row.old_key_until)
        return key, old_until

    def _upgrade_digest(self, name: str, old: str, keyed: str) -> None:
        """A sealed pre-issue-17 row, used with its key: the unkeyed digest becomes keyed."""
        with self.policy.changing() as change:
            row = change.session.get(Principal, name)
            usable = row is not None and change.base.counts(row) and self.usable(row)
            if row is not None and row.key_hash == old and usable:
                row.key_hash = keyed
                change.principal(row)
