"""Principals (services and people): their roles, regions, recipients and profiles.

A principal's roles feed the policy engine, so every change here bumps the
policy revision. Every row carries a grant tag (``access/grants.py``) checked
wherever a row is used, and the row must be the one the sealed grant state names
(``access/grant_state.py``): a principal inserted, edited or restored with SQL
authenticates no one. Every change is an audit event, recorded before it is made.
Their API keys (issue, verify, rotate) are ``access/api_keys.py``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from access.api_keys import KEY_PREFIX, ApiKeys, PrincipalInfo
from access.conditions.recipient import KINDS
from access.errors import (
    AuthenticationFailed,
    GrantsTampered,
    InvalidRequest,
    PrincipalExists,
    PrincipalNotFound,
)
from access.facts import Recipient
from access.models import Principal
from access.policy_store import PolicyStore
from access.purposes import REGION
from access.service_tokens import ServiceTokens, looks_like_jwt
from vault.crypto import open_with_secret, seal_with_secret
from vault.errors import DecryptionError
from vault.transactions import Transactions

__all__ = ["KEY_PREFIX", "PrincipalInfo", "Principals"]

_PRINCIPAL_NAME = re.compile(r"^(svc|user):[a-z0-9][a-z0-9._-]{0,62}$")
_PROFILE = b"pii-vault/principal-profile/v1"


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
    def __init__(
        self, tx: Transactions, policy: PolicyStore, tokens: ServiceTokens | None = None
    ) -> None:
        self.tx = tx
        self.policy = policy
        self.seal = policy.seal
        self.on_change = policy.on_change
        self.keys = ApiKeys(tx, policy)
        self.tokens = tokens
        self._usable = self.keys.usable
        self.rotate_key = self.keys.rotate

    def authenticate(self, credential: str | None) -> PrincipalInfo:
        """An API key, or (with ``PII_VAULT_SERVICE_OIDC_ISSUER``) a service's JWT naming a
        principal. Either way the roles are the vault's row's; one error for every refusal."""
        if credential is None or credential.startswith(KEY_PREFIX) or self.tokens is None:
            return self.keys.authenticate(credential)
        if not looks_like_jwt(credential):
            raise AuthenticationFailed()
        name = self.tokens.principal_name(credential)
        with self.tx.begin(read_only=True) as session:
            principal = self._usable(session.get(Principal, name))
            if principal is None or principal.disabled:
                raise AuthenticationFailed()  # unknown, disabled, forged or edited: no one
            return PrincipalInfo.of(principal)

    def create(
        self,
        name: str,
        roles: Sequence[str],
        actor: str = "operator",
        *,
        region: str | None = None,
        recipient: Recipient | None = None,
        expires: dt.timedelta | None = None,
    ) -> tuple[PrincipalInfo, str]:
        """Create a principal; returns its API key, which is shown once and stored hashed.
        ``region``: where it works from, if not the deployment's region (policy §7);
        ``recipient``: who it is if not internal (policy §3(1)); ``expires``: the key's
        lifetime (None: until rotated)."""
        if not _PRINCIPAL_NAME.fullmatch(name):
            raise InvalidRequest("principal name must look like svc:NAME or user:NAME")
        if expires is not None and expires <= dt.timedelta(0):
            raise InvalidRequest("a key's expiry is > 0")
        region = _region(region)
        recipient = _recipient(recipient)
        known = set(self.policy.current().roles)
        unknown = [r for r in roles if r not in known]
        if not roles or unknown:
            raise InvalidRequest(
                f"unknown role(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(sorted(known))}"
            )
        key_id, digest, key = self.keys.issue()
        now = dt.datetime.now(dt.UTC)
        unique_roles = tuple(dict.fromkeys(roles))
        row = Principal(
            name=name,
            key_id=key_id,
            key_hash=digest,
            roles=",".join(unique_roles),
            disabled=False,
            created_at=now,
            region=region,
            key_expires_at=now + expires if expires is not None else None,
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
        if expires is not None:
            detail["expires_seconds"] = str(int(expires.total_seconds()))
        self.on_change(actor, "principal_create", detail)
        try:
            with self.policy.changing() as change:
                change.principal(row)
                change.session.add(row)
                change.session.flush()
        except IntegrityError as exc:
            raise PrincipalExists(f"principal {name} already exists") from exc
        return PrincipalInfo(name, unique_roles, False, now, region), key

    def list(self) -> list[PrincipalInfo]:
        with self.tx.begin() as session:
            return [
                PrincipalInfo.of(p)
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
                key_id, digest, _unused = self.keys.issue()  # a person signs in, never by key
                principal = Principal(
                    name=name,
                    key_id=key_id,
                    key_hash=digest,
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
