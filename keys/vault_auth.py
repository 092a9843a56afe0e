"""How the service authenticates to Vault, and keeps doing so for as long as it runs.

A service token expires: a periodic token after its period unless renewed, any
token at its max TTL. Every worker therefore renews its own token before it
expires (at a third of its lease left, checked before calls and at every
maintenance tick), and with AppRole it logs in again when renewal is refused or
the token is revoked (AppRole is the usual way a service authenticates: a role id
in its configuration, a secret id delivered to it, both from the environment or
from files). A failed renewal is recorded and surfaces in ``/readyz`` and metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import hvac

from keys.errors import KeyProviderConfigError, KeyProviderError
from keys.hvac_errors import provider_error, vault_errors

log = logging.getLogger(__name__)

RENEW_AT = 1 / 3  # renew when this share of the lease is left


@dataclass
class AuthState:
    method: str
    ok: bool = True
    expires_at: float | None = None  # None: the token does not expire
    renewals: int = 0
    logins: int = 0
    failures: int = 0

    def ttl(self) -> float | None:
        return None if self.expires_at is None else max(0.0, self.expires_at - time.time())


def read_secret_file(path: str, what: str) -> str:
    """The one reader of a secret kept in a file (AppRole ids, shard tokens, every
    ``*_FILE`` setting): stripped, never empty, its contents never in an error."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KeyProviderConfigError(f"cannot read {what} ({path})") from exc
    if not text:
        raise KeyProviderConfigError(f"{what} ({path}) is empty")
    return text


class VaultAuth(Protocol):
    state: AuthState

    def start(self, client: hvac.Client) -> None:
        """Authenticate ``client`` (log in, or learn the given token's lease)."""

    def refresh(self, client: hvac.Client, *, force: bool = False) -> None:
        """Renew (or log in again) if the lease is running out; record a failure."""

    def relogin(self, client: hvac.Client) -> bool:
        """After a 403: log in afresh if this method can; True if it did."""


class _Lease:
    """Lease bookkeeping shared by both methods."""

    state: AuthState
    _lock: threading.Lock
    _lease: float | None

    def _set_lease(self, seconds: float | None) -> None:
        self._lease = seconds if seconds else None
        self.state.expires_at = None if not seconds else time.time() + float(seconds)

    def _due(self) -> bool:
        ttl = self.state.ttl()
        return ttl is not None and self._lease is not None and ttl < self._lease * RENEW_AT

    def _renew(self, client: hvac.Client) -> None:
        with vault_errors(invalid=provider_error("Vault refused to renew the token")):
            resp: Any = client.auth.token.renew_self()
        self._set_lease(float(resp["auth"]["lease_duration"]))
        self.state.renewals += 1
        log.info("Vault token renewed (%s): lease %s s", self.state.method, self._lease)

    def refresh(self, client: hvac.Client, *, force: bool = False) -> None:
        """Renew when due (the method's own ``_refresh``); a failure is recorded, not raised."""
        if not (force or self._due()):
            return  # the common case: no lock taken
        with self._lock:
            if not (force or self._due()):
                return
            try:
                self._refresh(client)
                self.state.ok = True
            except KeyProviderError:
                self._failed()
                log.error(
                    "Vault %s renewal failed; token expires in %s s; retried at the next tick",
                    self.state.method,
                    self.state.ttl(),
                )

    def _refresh(self, client: hvac.Client) -> None:
        raise NotImplementedError

    def _failed(self) -> None:
        self.state.ok = False
        self.state.failures += 1


class TokenAuth(_Lease):
    """A token given to the service (VAULT_TOKEN): renewed, never replaced."""

    def __init__(self, token: str) -> None:
        if not token:
            raise KeyProviderConfigError("VAULT_TOKEN is not set")
        self.token = token
        self.state = AuthState("token")
        self._lock = threading.Lock()
        self._lease = None
        self._renewable = False
        self._learned = False  # the token's lease has been looked up

    def start(self, client: hvac.Client) -> None:
        client.token = self.token
        try:
            self._learn(client)
        except KeyProviderError:
            # Unknown lease (Vault down at start-up): due at once, learned at the next refresh.
            self.state.expires_at, self._lease = time.time(), 1.0

    def _learn(self, client: hvac.Client) -> None:
        with vault_errors():
            data: Any = client.auth.token.lookup_self()["data"]
        self._renewable = bool(data.get("renewable"))
        self._set_lease(float(data.get("ttl") or 0))
        self._learned = True

    def _refresh(self, client: hvac.Client) -> None:
        if not self._learned:
            self._learn(client)
            if not self._due():
                return
        if not self._renewable:
            raise KeyProviderError("the Vault token is not renewable")
        self._renew(client)

    def relogin(self, client: hvac.Client) -> bool:
        return False  # a given token cannot be replaced by the service itself


class AppRoleAuth(_Lease):
    """AppRole: role id and secret id (values, or files read at every login)."""

    def __init__(
        self,
        role_id: str | None = None,
        secret_id: str | None = None,
        *,
        role_id_file: str | None = None,
        secret_id_file: str | None = None,
        mount: str = "approle",
    ) -> None:
        if not (role_id or role_id_file) or not (secret_id or secret_id_file):
            raise KeyProviderConfigError(
                "AppRole needs VAULT_ROLE_ID (or _FILE) and VAULT_SECRET_ID (or _FILE)"
            )
        self._role_id, self._secret_id = role_id, secret_id
        self._role_id_file, self._secret_id_file = role_id_file, secret_id_file
        self.mount = mount
        self.state = AuthState("approle")
        self._lock = threading.Lock()
        self._lease = None

    def __repr__(self) -> str:  # never the secret id
        return f"AppRoleAuth(mount={self.mount!r})"

    @staticmethod
    def _read(value: str | None, path: str | None, name: str) -> str:
        return value or read_secret_file(str(path), f"the {name} file")

    def start(self, client: hvac.Client) -> None:
        self._login(client)

    def _login(self, client: hvac.Client) -> None:
        role = self._read(self._role_id, self._role_id_file, "VAULT_ROLE_ID")
        secret = self._read(self._secret_id, self._secret_id_file, "VAULT_SECRET_ID")
        refused = lambda: KeyProviderConfigError("Vault refused the AppRole login")  # noqa: E731
        with vault_errors(invalid=refused, denied=refused, missing=refused):
            resp: Any = client.auth.approle.login(role, secret, mount_point=self.mount)
        client.token = resp["auth"]["client_token"]
        self._set_lease(float(resp["auth"]["lease_duration"] or 0))
        self.state.logins += 1
        self.state.ok = True
        log.info("Vault AppRole login at mount %s: lease %s s", self.mount, self._lease)

    def _refresh(self, client: hvac.Client) -> None:
        try:
            self._renew(client)
            if self._due():  # renewal capped by the max TTL: a fresh login instead
                self._login(client)
        except KeyProviderError:
            self._login(client)

    def relogin(self, client: hvac.Client) -> bool:
        with self._lock:
            try:
                self._login(client)
            except KeyProviderError:
                self._failed()
                return False
            return True
