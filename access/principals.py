"""Principals (services and people) and their API keys, stored as keyed digests.

A principal's roles feed the policy engine, so every change here bumps the
policy revision. Every row carries a grant tag (``access/grants.py``) checked
wherever a row is used, and the row must be the one the sealed grant state names
(``access/grant_state.py``): a principal inserted, edited or restored with SQL
authenticates no one. Every change is an audit event, recorded before it is made.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from access.conditions.recipient import KINDS
from access.errors import (
    AuthenticationFailed,
    GrantsTampered,
    InvalidRequest,
    PrincipalExists,
    PrincipalNotFound,
)
from access.facts import Recipient
from access.grants import DIGEST_VERSION, TagMismatch
from access.models import Principal
from access.policy_store import PolicyStore
from access.purposes import REGION
from vault.crypto import open_with_secret, seal_with_secret
from vault.errors import DecryptionError
from vault.transactions import Transactions

KEY_PREFIX = "pvk_"
_PRINCIPAL_NAME = re.compile(r"^(svc|user):[a-z0-9][a-z0-9._-]{0,62}$")
_PROFILE = b"pii-vault/principal-profile/v1"
_VERIFIED_MAX = 4096  # cached verified keys per worker
_KEY = re.compile(r"^pvk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class PrincipalInfo:
    name: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: dt.datetime
    region: str | None = None  # None: the deployment's region (policy §7)


def _legacy_digest(secret: str) -> str:
    """Before issue 17: unkeyed SHA-256 (rows sealed by `init` keep it until first use)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _recipient(recipient: Recipient | None) -> Recipient | None:
    """A named recipient, checked; None (or internal without a name): internal."""
    if recipient is None or (recipient.internal and not recipient.name):
        return None
    if recipient.kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}")
    if not recipient.name or len(recipient.name) > 200 or not recipient.name.isprintable():
        raise InvalidRequest("a recipient is named (--recipient, 1-200 characters)")
    country = _region(recipient.country)
    agreement = (recipient.agreement or "").strip() or None
    if agreement is not None and (len(agreement) > 128 or not agreement.isprintable()):
        raise InvalidRequest("agreement is a reference of at most 128 characters")
    return Recipient(recipient.kind, recipient.name.strip(), country, agreement)


def _region(region: str | None) -> str | None:
    if region is None or region == "":
        return None
    code = str(region).upper()
    if not REGION.fullmatch(code):
        raise InvalidRequest("region must be a short region code such as CN or DE")
    return code


class Principals:
    def __init__(self, tx: Transactions, policy: PolicyStore) -> None:
        self.tx = tx
        self.policy = policy
        self.seal = policy.seal
        self.on_change = policy.on_change
        # key id -> (the engine it was verified under, the key's digest, who): issue 21.
        self._verified: dict[str, tuple[object, str, PrincipalInfo]] = {}

    def _digest(self, secret: str) -> str:
        return self.seal.key_digest(secret)

    def _usable(self, principal: Principal | None) -> Principal | None:
        """The row if its grant tag verifies; None (and counted) if it was forged or edited."""
        if principal is None:
            return None
        try:
            self.seal.check_principal(principal)
        except TagMismatch:
            return None
        return principal if self.policy.counts(principal) else None

    def create(
        self,
        name: str,
        roles: Sequence[str],
        actor: str = "operator",
        *,
        region: str | None = None,
        recipient: Recipient | None = None,
    ) -> tuple[PrincipalInfo, str]:
        """Create a principal; returns its API key, which is shown once and stored hashed.
        ``region``: where it works from, if not the deployment's region (policy §7);
        ``recipient``: who it is if not internal (policy §3(1))."""
        if not _PRINCIPAL_NAME.fullmatch(name):
            raise InvalidRequest("principal name must look like svc:NAME or user:NAME")
        region = _region(region)
        recipient = _recipient(recipient)
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
        row = Principal(
            name=name,
            key_id=key_id,
            key_hash=self._digest(secret),
            roles=",".join(unique_roles),
            disabled=False,
            created_at=now,
            region=region,
        )
        if recipient is not None:
            row.kind, row.recipient = recipient.kind, recipient.name
            row.recipient_country, row.agreement = recipient.country, recipient.agreement
        with self.tx.begin(read_only=True) as session:
            if session.get(Principal, name) is not None:
                raise PrincipalExists(f"principal {name} already exists")
        detail = {"name": name, "roles": row.roles, **({"region": region} if region else {})}
        if recipient is not None:
            detail |= {f"recipient_{k}": v for k, v in recipient.as_dict().items() if v}
        self.on_change(actor, "principal_create", detail)
        try:
            with self.policy.changing() as change:
                change.principal(row)
                change.session.add(row)
                change.session.flush()
        except IntegrityError as exc:
            raise PrincipalExists(f"principal {name} already exists") from exc
        return PrincipalInfo(name, unique_roles, False, now, region), (
            f"{KEY_PREFIX}{key_id}.{secret}"
        )

    def list(self) -> list[PrincipalInfo]:
        with self.tx.begin() as session:
            return [
                PrincipalInfo(p.name, tuple(p.roles.split(",")), p.disabled, p.created_at, p.region)
                for p in session.scalars(select(Principal).order_by(Principal.name))
            ]

    def disable(self, name: str, actor: str = "operator") -> None:
        """A disabled row grants nothing, so it is re-tagged even if it failed its tag."""
        with self.tx.begin() as session:
            if session.get(Principal, name) is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
        self.on_change(actor, "principal_disable", {"name": name})
        with self.policy.changing() as change:
            principal = change.session.get(Principal, name)
            if principal is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
            principal.disabled = True
            principal.disabled_at = dt.datetime.now(dt.UTC)
            change.principal(principal)

    def enable(self, name: str, actor: str = "operator") -> None:
        """Undo ``disable``. Only a row whose tag verifies: re-tagging a forged or edited row
        would bless whatever roles SQL gave it."""
        with self.tx.begin(read_only=True) as session:
            principal = session.get(Principal, name)
            if principal is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
            if self._usable(principal) is None:
                raise GrantsTampered(
                    f"principal {name[:128]} fails its grant tag; see 'pii-vault audit grants'"
                )
            if not principal.disabled:
                return
        self.on_change(actor, "principal_enable", {"name": name})
        with self.policy.changing() as change:
            principal = change.session.get(Principal, name)
            if principal is None:
                raise PrincipalNotFound(f"no principal {name[:128]}")
            if not change.base.counts(principal) or self._usable(principal) is None:
                raise GrantsTampered(f"principal {name[:128]} fails its grant tag")
            principal.disabled = False
            principal.disabled_at = None
            change.principal(principal)

    def remember(self, name: str, display_name: str, email: str) -> None:
        """Keep a person's display name and email (from their ID token), sealed, for the
        console to show beside the stable id; not grant material, so no grant change."""
        profile = {"name": display_name[:200], "email": email[:200]}
        with self.tx.begin() as session:
            row = session.get(Principal, name)
            if row is None:
                return
            if row.profile is not None:
                try:
                    if self._open_profile(row.profile) == profile:
                        return
                except (DecryptionError, ValueError, binascii.Error):
                    pass  # not ours: replaced
            sealed = seal_with_secret(
                self.seal.profile_secret(), _PROFILE, json.dumps(profile).encode("utf-8")
            )
            row.profile = base64.b64encode(sealed).decode("ascii")

    def _open_profile(self, text: str) -> dict[str, str]:
        blob = base64.b64decode(text.encode("ascii"), validate=True)
        return dict(json.loads(open_with_secret(self.seal.profile_secret(), _PROFILE, blob)))

    def profiles(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """name -> {"name", "email"} for the people among ``names`` who have a profile."""
        wanted = sorted({n for n in names if n.startswith("user:")})
        if not wanted:
            return {}
        out: dict[str, dict[str, str]] = {}
        with self.tx.begin(read_only=True) as session:
            rows = session.scalars(select(Principal).where(Principal.name.in_(wanted))).all()
        for row in rows:
            if row.profile:
                try:
                    out[row.name] = self._open_profile(row.profile)
                except (DecryptionError, ValueError, binascii.Error):
                    continue
        return out

    def sign_in_user(
        self, name: str, roles: Sequence[str], region: str | None = None
    ) -> PrincipalInfo:
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
        roles_text = ",".join(granted)
        try:
            region = _region(region)
        except InvalidRequest:
            raise AuthenticationFailed() from None  # a malformed claim signs no one in
        with self.tx.begin(read_only=True) as session:
            existing = session.get(Principal, name)
            if existing is not None and self._usable(existing) is None:
                raise AuthenticationFailed()  # a forged or edited row: nobody signs in as it
            if existing is not None and existing.disabled:
                raise AuthenticationFailed()
            if existing is not None and existing.roles == roles_text and existing.region == region:
                return PrincipalInfo(name, granted, False, existing.created_at, region)
        action = "principal_create" if existing is None else "principal_roles"
        detail = {"name": name, "roles": roles_text, "by": "identity provider"}
        if region:
            detail["region"] = region
        self.on_change(name, action, detail)
        with self.policy.changing() as change:
            principal = change.session.get(Principal, name)
            if principal is None:
                principal = Principal(
                    name=name,
                    key_id=secrets.token_hex(8),
                    key_hash=self._digest(secrets.token_urlsafe(32)),
                    roles=roles_text,
                    disabled=False,
                    created_at=now,
                    region=region,
                )
                change.session.add(principal)
            elif (
                principal.disabled
                or not change.base.counts(principal)
                or self._usable(principal) is None
            ):
                raise AuthenticationFailed()
            else:
                principal.roles = roles_text
                principal.region = region
            change.principal(principal)
            created = principal.created_at
        return PrincipalInfo(name, granted, False, created, region)

    def is_enabled(self, name: str) -> bool:
        """Whether ``name`` exists and is not disabled (checked on every console request)."""
        with self.tx.begin(read_only=True) as session:
            principal = self._usable(session.get(Principal, name))
            return principal is not None and not principal.disabled

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
        keyed = self._digest(secret)
        engine = self.policy.peek()  # the revision read (one single-row query)
        hit = self._verified.get(key_id)
        if hit is not None and engine is not None and hit[0] is engine:
            if not hmac.compare_digest(hit[1], keyed):
                raise AuthenticationFailed()
            return hit[2]
        with self.tx.begin(read_only=True) as session:  # no write lock (SQLite)
            principal = session.scalar(select(Principal).where(Principal.key_id == key_id))
        expected = principal.key_hash if principal is not None else ""
        legacy = not expected.startswith(f"{DIGEST_VERSION}:")
        ok = hmac.compare_digest(expected, _legacy_digest(secret) if legacy else keyed)
        if principal is None or not ok or principal.disabled:
            raise AuthenticationFailed()
        if self._usable(principal) is None:  # the forgery is logged and counted there
            raise AuthenticationFailed()
        if legacy:
            self._upgrade_digest(principal.name, expected, keyed)
        info = PrincipalInfo(
            principal.name,
            tuple(principal.roles.split(",")),
            False,
            principal.created_at,
            principal.region,
        )
        if not legacy and engine is not None:
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()  # bounded; rebuilt by the next requests
            # Under the engine read *before* the row: if the revision moved meanwhile, the
            # entry never matches (a miss), never the other way round.
            self._verified[key_id] = (engine, keyed, info)
        return info

    def _upgrade_digest(self, name: str, old: str, keyed: str) -> None:
        """A sealed pre-issue-17 row, used with its key: the unkeyed digest becomes keyed."""
        with self.policy.changing() as change:
            row = change.session.get(Principal, name)
            usable = row is not None and change.base.counts(row) and self._usable(row)
            if row is not None and row.key_hash == old and usable:
                row.key_hash = keyed
                change.principal(row)
