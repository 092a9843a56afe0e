"""Service sign-in with OIDC (issue 22): a JWT from the configured issuer names a principal.

A service that already has a workload identity (an OpenBao AppRole, a Kubernetes service
account federated to an issuer) sends ``Authorization: Bearer <JWT>`` instead of an API
key. The token is checked by joserfc — signature against the issuer's JWKS (found by
OIDC discovery), ``iss``, ``aud``, ``exp`` (required), ``nbf``/``iat`` — and one claim
(``PII_VAULT_SERVICE_OIDC_CLAIM``, default ``pii_vault_principal``) names a ``svc:``
principal. The token never grants a role: the vault's own principal row does, with its
grant tag, its disable switch and its region, exactly as for an API key.

Keys are fetched once and again only for a key id not seen yet (a rotation at the
issuer), at most every ``REFRESH_SECONDS``; an issuer that cannot be reached when a key
is needed is ``identity_provider_unavailable`` (503), never a pass.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, cast

import requests
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from access.errors import AuthenticationFailed, IdentityProviderUnavailable

# Asymmetric only: an HMAC "key" from a JWKS would be public, and "none" is no signature.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA")
REFRESH_SECONDS = 30.0
TIMEOUT = 5.0
LEEWAY = 30  # seconds of clock difference with the issuer
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def looks_like_jwt(text: str) -> bool:
    return len(text) < 16_384 and _JWT.fullmatch(text) is not None


class ServiceTokens:
    """Verifies service JWTs of one issuer; thread-safe, one per worker."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        claim: str = "pii_vault_principal",
        *,
        timeout: float = TIMEOUT,
        leeway: int = LEEWAY,
    ) -> None:
        self.issuer, self.audience, self.claim, self.timeout = issuer, audience, claim, timeout
        self._http = requests.Session()
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = 0.0
        self._registry = jwt.JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )

    def __repr__(self) -> str:
        return f"ServiceTokens({self.issuer!r}, audience={self.audience!r})"

    def principal_name(self, token: str) -> str:
        """The principal the verified token names; AuthenticationFailed for any bad token."""
        if not looks_like_jwt(token):
            raise AuthenticationFailed()
        try:
            kid = jws.extract_compact(token.encode("ascii")).headers().get("kid")
        except (JoseError, ValueError, TypeError):
            raise AuthenticationFailed() from None
        keys = self._key_set(kid)  # outside the try: an unreachable issuer is a 503
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
            self._registry.validate(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError):
            raise AuthenticationFailed() from None
        name = decoded.claims.get(self.claim)
        if not isinstance(name, str) or not name.startswith("svc:"):
            raise AuthenticationFailed()  # people sign in through the console, not here
        return name

    def check_reachable(self) -> None:
        """At start-up and in /readyz: the issuer answered discovery with its keys within
        ``REFRESH_SECONDS`` (asked again if not, so a probe costs the issuer little)."""
        with self._lock:
            if self._keys is not None and time.monotonic() - self._fetched < REFRESH_SECONDS:
                return
        self._key_set(None, force=True)

    def _key_set(self, kid: Any, *, force: bool = False) -> KeySet:
        with self._lock:  # one fetch at a time; the others wait for its keys
            have = self._keys
            recent = time.monotonic() - self._fetched < REFRESH_SECONDS
            # A known kid, or an unknown one fetched for recently (refused by the signature).
            if have is not None and not force and (kid is None or recent or _has(have, kid)):
                return have
            self._keys = self._fetch()
            self._fetched = time.monotonic()
            return self._keys

    def _fetch(self) -> KeySet:
        try:
            found = self._get(f"{self.issuer}/.well-known/openid-configuration")
            if found.get("issuer") != self.issuer or not isinstance(found.get("jwks_uri"), str):
                raise IdentityProviderUnavailable(
                    f"the identity provider at {self.issuer} names another issuer or no keys"
                )
            return KeySet.import_key_set(cast(Any, self._get(found["jwks_uri"])))
        except (JoseError, ValueError, TypeError) as exc:
            raise IdentityProviderUnavailable(
                f"the identity provider at {self.issuer} sent keys that are not a JWKS"
            ) from exc

    def _get(self, url: str) -> dict[str, Any]:
        try:
            r = self._http.get(url, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise IdentityProviderUnavailable(
                f"the identity provider at {self.issuer} did not answer ({type(exc).__name__})"
            ) from exc
        if r.status_code != 200:
            raise IdentityProviderUnavailable(
                f"the identity provider at {self.issuer} answered {r.status_code}"
            )
        body = r.json()
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return body


def _has(keys: KeySet, kid: Any) -> bool:
    try:
        keys.get_by_kid(kid)
    except (ValueError, KeyError, JoseError):
        return False
    return True
