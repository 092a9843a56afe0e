"""Key provider backed by HashiCorp Vault / OpenBao transit, through hvac.

Subject keys never leave Vault: they are created non-exportable without a
plaintext backup, data keys come from ``transit/datakey/plaintext`` and only
their wrapped form is kept. Every call goes through ``keys.hvac_errors.vault_errors``.

A little past 400 lines: one class per Vault API it implements (subject keys, blind
index, signing, inventory), each method a short call through ``_call``; splitting
it would only spread the one translation and the not-found confirmation apart.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hv

from keys.anchors import ANCHOR_MOUNT, KvAnchors
from keys.claims import claims_in
from keys.cluster import VaultCluster
from keys.errors import (
    KeyDestroyed,
    KeyProviderConfigError,
    KeyProviderError,
    KeyUnavailable,
    UnwrapFailed,
)
from keys.hvac_errors import (
    MISSING_MOUNT,
    REFUSED,
    ErrorFactory,
    config_error,
    destroyed,
    provider_error,
    vault_errors,
)
from keys.provider import AnchorStore, DataKey
from keys.vault_auth import AuthState, TokenAuth, VaultAuth

T = TypeVar("T")

SUBJECT_KEY_PREFIX = "pii-subject-"
INDEX_KEY = "pii-index"
HMAC_BATCH = 200  # inputs per HMAC call: 2 JSON strings each, well under the limit
SIGNING_KEY = "pii-audit"
GRANT_KEY = "pii-grants"  # authenticates grants: principal rows, policy rules, API-key digests
GRANT_KEY_INFO = b"pii-vault/grant-key/v1"
POLICY_NAME = "pii-vault"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _digest(value: str) -> str:
    """Vault's ``vault:v3:<base64>`` as the vault's ``v3:<base64>``."""
    parts = value.split(":", 2)
    if len(parts) != 3 or parts[0] != "vault" or not parts[1].startswith("v"):
        raise KeyProviderError("unexpected response format from key provider")
    return f"{parts[1]}:{_b64(_unb64(parts[2]))}"


def _strip_vault_prefix(value: str) -> bytes:
    # "vault:v1:<base64>" -> raw bytes
    parts = value.split(":", 2)
    if len(parts) != 3 or parts[0] != "vault":
        raise KeyProviderError("unexpected response format from key provider")
    return _unb64(parts[2])


def _rfc3339(text: str) -> float:
    """Vault's timestamps carry nanoseconds; Python parses microseconds."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def check_token(client: hvac.Client, where: str) -> None:
    """A token Vault does not know is said to be that (every valid token may look itself
    up), not "not privileged" nor a policy refusal (issue 23): ``init`` and ``serve``
    ask before anything else."""
    refused = config_error(
        f"the Vault token was refused by Vault at {where}: it is invalid, expired or revoked"
    )
    with vault_errors(denied=refused, missing=refused, invalid=refused):
        client.auth.token.lookup_self()


class TransitKeyProvider:
    """KeyBackend over Vault/OpenBao transit."""

    name = "transit"

    def __init__(
        self,
        addr: str | VaultCluster,
        token: str | None = None,
        *,
        mount: str = "transit",
        anchor_mount: str = ANCHOR_MOUNT,
        timeout: float = 5.0,
        client: hvac.Client | None = None,
        auth: VaultAuth | None = None,
        probe_path: str | None = None,
    ) -> None:
        """``addr``: one address, or a ``VaultCluster`` (several, with failover).
        ``probe_path``: the readiness probe's authenticated call (default: the token's own
        lookup, which any token may make; the factory gives the primary the signing key's
        metadata, which checks mount and policy too).
        ``token``: a service token (renewed while it runs); or ``auth`` (e.g. AppRole)."""
        if not addr:
            raise KeyProviderConfigError("VAULT_ADDR is not set")
        self._auth: VaultAuth = auth if auth is not None else TokenAuth(token or "")
        self._mount = mount
        self._anchor_mount = anchor_mount
        self.cluster = (
            addr
            if isinstance(addr, VaultCluster)
            else VaultCluster([addr], connect_timeout=min(1.0, timeout), timeout=timeout)
        )
        self._client = client or self.cluster.client()
        self._public_key: bytes | None = None
        self._grant_key: bytes | None = None
        self._auth.start(self._client)
        # The readiness probe's real call: the signing key's metadata, with our token.
        self.cluster.set_probe(
            lambda: self._client.token, probe_path or "/v1/auth/token/lookup-self"
        )

    def clusters(self) -> list[VaultCluster]:
        return [self.cluster]

    # -- authentication that lasts ---------------------------------------------

    def refresh_auth(self) -> None:
        """The maintenance tick: renew the token (or log in again) when it is due."""
        self._auth.refresh(self._client)

    @property
    def auth_state(self) -> AuthState:
        return self._auth.state

    # -- the one translation point ------------------------------------------

    def _key_name(self, subject_id: str) -> str:
        return f"{SUBJECT_KEY_PREFIX}{subject_id}"

    def _call(
        self,
        fn: Callable[..., T],
        *args: Any,
        missing: ErrorFactory = MISSING_MOUNT,
        invalid: ErrorFactory = REFUSED,
        confirm_missing: bool = False,
        **kwargs: Any,
    ) -> T:
        """One Vault round trip, through the one translation.

        With ``confirm_missing``, a KeyDestroyed answer counts only from the active node. A
        subject key another process created moments ago may not have reached the standby
        that answered (60-94 ms lag measured; ~10 s while a new leader is elected, issue
        24), and our consistency index does not cover other processes' writes: the call is
        made again at the active node, and with no active node it is 503, never "gone"."""
        try:
            return self._once(fn, *args, missing=missing, invalid=invalid, **kwargs)
        except KeyDestroyed:
            if not confirm_missing:
                raise
            active = self.cluster.authority()
            if active is None:
                raise  # the answer came from the authority itself
        with self.cluster.pinned(active):
            return self._once(fn, *args, missing=missing, invalid=invalid, **kwargs)

    def _once(
        self,
        fn: Callable[..., T],
        *args: Any,
        missing: ErrorFactory,
        invalid: ErrorFactory,
        **kwargs: Any,
    ) -> T:
        """A token about to expire is renewed first; a 403 with AppRole means a revoked
        token: log in again, retry once."""
        self._auth.refresh(self._client)
        with vault_errors(missing=missing, invalid=invalid):
            try:
                return fn(*args, **kwargs)
            except hv.Forbidden as exc:
                if "permission denied" not in str(exc).lower():
                    raise
                if not self._auth.relogin(self._client):
                    raise
            return fn(*args, **kwargs)

    @property
    def _transit(self) -> Any:
        return self._client.secrets.transit

    # -- lifecycle ----------------------------------------------------------

    def check(self) -> None:
        """Ready means a create would work: from the background probe's last answer when it
        runs (readiness never waits on Vault), else from a probe made now."""
        health = (
            self.cluster.health if self.cluster.probing else self.cluster.probe(real_call=False)
        )
        if health is not None and health.reason is not None:
            raise KeyUnavailable(f"key provider unavailable: Vault {health.reason}")

    def verify_auth(self) -> None:
        """``serve``'s start-up: the token (given, or from the AppRole login) is valid now.
        Without this an invalid VAULT_TOKEN was accepted and every request failed later."""
        check_token(self._client, ", ".join(self.cluster.addrs))

    def token_is_root(self) -> bool:
        with vault_errors():
            data: Any = self._client.auth.token.lookup_self()["data"]
        return "root" in (data.get("policies") or [])

    def anchor_store(self) -> AnchorStore:
        return KvAnchors(self._client, self._anchor_mount)

    def close(self) -> None:
        adapter = getattr(self._client, "adapter", None)
        if adapter is not None and hasattr(adapter, "close"):
            adapter.close()

    # -- SubjectKeys ----------------------------------------------------------

    def create_subject_key(self, subject_id: str) -> None:
        self._call(
            self._transit.create_key,
            self._key_name(subject_id),
            key_type="aes256-gcm96",
            exportable=False,
            allow_plaintext_backup=False,
            mount_point=self._mount,
            invalid=provider_error("key provider refused to create the subject key"),
        )

    def subject_key_exists(self, subject_id: str) -> bool:
        return self._exists(subject_id, confirm=True)

    def _exists(self, subject_id: str, *, confirm: bool) -> bool:
        """``confirm=False`` only right after our own write (our consistency index covers it);
        else "absent" is the active node's answer."""
        try:
            self._call(
                self._transit.read_key,
                self._key_name(subject_id),
                mount_point=self._mount,
                missing=destroyed,
                confirm_missing=confirm,
            )
        except KeyDestroyed:
            return False
        return True

    def generate_data_key(self, subject_id: str) -> DataKey:
        resp = self._call(
            self._transit.generate_data_key,
            self._key_name(subject_id),
            key_type="plaintext",
            bits=256,
            mount_point=self._mount,
            missing=destroyed,
            confirm_missing=True,
            invalid=provider_error("key provider refused to generate a data key"),
        )
        try:
            data = resp["data"]
            return DataKey(plaintext=_unb64(data["plaintext"]), wrapped=str(data["ciphertext"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyProviderError("unexpected response from key provider") from exc

    def unwrap_data_key(self, subject_id: str, wrapped: str) -> bytes:
        resp = self._call(
            self._transit.decrypt_data,
            self._key_name(subject_id),
            ciphertext=wrapped,
            mount_point=self._mount,
            missing=destroyed,
            confirm_missing=True,
            invalid=UnwrapFailed,
        )
        try:
            key = _unb64(resp["data"]["plaintext"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UnwrapFailed() from exc
        if len(key) != 32:
            raise UnwrapFailed()
        return key

    def rotate_subject_key(self, subject_id: str) -> None:
        self._call(
            self._transit.rotate_key,
            self._key_name(subject_id),
            mount_point=self._mount,
            missing=destroyed,
            confirm_missing=True,
            invalid=provider_error("key provider refused to rotate the subject key"),
        )

    def rewrap_data_keys(self, subject_id: str, wrapped: Sequence[str]) -> list[str]:
        if not wrapped:
            return []
        resp = self._call(
            self._transit.rewrap_data,
            self._key_name(subject_id),
            ciphertext=None,
            batch_input=[{"ciphertext": w} for w in wrapped],
            mount_point=self._mount,
            missing=destroyed,
            confirm_missing=True,
            invalid=UnwrapFailed,
        )
        try:
            results = resp["data"]["batch_results"]
            if len(results) != len(wrapped) or any(r.get("error") for r in results):
                raise UnwrapFailed()
            return [str(r["ciphertext"]) for r in results]
        except (KeyError, TypeError, AttributeError) as exc:
            raise UnwrapFailed() from exc

    def destroy_subject_key(self, subject_id: str) -> None:
        """Gone means confirmed gone: "not found" on the way (a standby that has not seen the
        key yet) is checked at the active node, and the delete made there, never taken as
        done (issue 24: 395 orphan keys). Raises if the key cannot be shown gone: its key
        intent then stays for the sweep."""
        try:
            self._delete(subject_id)
        except KeyDestroyed:
            active = self.cluster.authority()
            if active is None:
                return  # the active node itself says it is gone: shredding is idempotent
            with self.cluster.pinned(active):
                try:
                    self._delete(subject_id)
                except KeyDestroyed:
                    return
        if self._exists(subject_id, confirm=False):
            raise KeyProviderError("subject key still exists after deletion")

    def _delete(self, subject_id: str) -> None:
        name = self._key_name(subject_id)
        self._call(
            self._transit.update_key_configuration,
            name,
            deletion_allowed=True,
            mount_point=self._mount,
            missing=destroyed,
            invalid=provider_error("key provider refused to allow deletion"),
        )
        self._call(
            self._transit.delete_key,
            name,
            mount_point=self._mount,
            missing=destroyed,
            invalid=provider_error("key provider refused to delete the subject key"),
        )

    # -- KeyInventory ------------------------------------------------------------

    def mount_claims(self) -> dict[str, list[str]]:
        """The deployments that claimed this mount (keys/claims.py): normally exactly one."""
        return {self._mount: claims_in(self._key_names())}

    def subject_key_ids(self) -> list[str]:
        n = len(SUBJECT_KEY_PREFIX)
        return [k[n:] for k in self._key_names() if k.startswith(SUBJECT_KEY_PREFIX)]

    def _key_names(self) -> list[str]:
        try:
            resp = self._call(self._transit.list_keys, mount_point=self._mount, missing=destroyed)
        except KeyDestroyed:
            return []  # no keys at all
        try:
            names = resp["data"]["keys"]
        except (KeyError, TypeError) as exc:
            raise KeyProviderError("unexpected response from key provider") from exc
        return [str(k) for k in names]

    def _key_state(self, subject_id: str) -> dict[str, Any] | None:
        try:
            resp = self._call(
                self._transit.read_key,
                self._key_name(subject_id),
                mount_point=self._mount,
                missing=destroyed,
            )
        except KeyDestroyed:
            return None
        return dict(resp["data"])

    def subject_key_rotated(self, subject_id: str) -> float | None:
        state = self._key_state(subject_id)
        if state is None:
            return None
        try:
            newest = state["keys"][str(state["latest_version"])]
            return float(newest)
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyProviderError("unexpected response from key provider") from exc

    def trim_subject_key(self, subject_id: str) -> None:
        state = self._key_state(subject_id)
        if state is None:
            raise KeyDestroyed("subject key destroyed")
        latest = int(state["latest_version"])
        name = self._key_name(subject_id)
        refused = provider_error("key provider refused to trim the subject key")
        if int(state.get("min_decryption_version", 1)) < latest:
            self._call(  # trimming needs both minimums set; hvac refuses them equal, Vault not
                self._client.adapter.post,
                f"/v1/{self._mount}/keys/{name}/config",
                json={"min_decryption_version": latest, "min_encryption_version": latest},
                missing=destroyed,
                invalid=refused,
            )
        if int(state.get("min_available_version", 0)) < latest:
            self._call(
                self._transit.trim_key,
                name,
                min_version=latest,
                mount_point=self._mount,
                missing=destroyed,
                invalid=refused,
            )

    def subject_key_created(self, subject_id: str) -> float | None:
        try:
            resp = self._call(
                self._transit.read_key,
                self._key_name(subject_id),
                mount_point=self._mount,
                missing=destroyed,
            )
        except KeyDestroyed:
            return None
        try:
            first = resp["data"]["keys"]["1"]  # version 1: Unix time (symmetric keys)
            if isinstance(first, dict):  # asymmetric keys: an object with an RFC 3339 time
                return _rfc3339(str(first["creation_time"]))
            return float(first)
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyProviderError("unexpected response from key provider") from exc

    # -- BlindIndexer ---------------------------------------------------------

    def blind_index(self, messages: Sequence[bytes], version: int | None = None) -> list[str]:
        """HMACs of ``messages``, in order: in calls of ``HMAC_BATCH`` inputs at most
        (OpenBao refuses a JSON body with too many strings, by default about 1,000)."""
        out: list[str] = []
        for start in range(0, len(messages), HMAC_BATCH):
            out.extend(self._hmac_batch(messages[start : start + HMAC_BATCH], version))
        return out

    def _hmac_batch(self, messages: Sequence[bytes], version: int | None) -> list[str]:
        if not messages:
            return []
        missing = config_error("blind-index key or version missing: run `pii-vault init`")
        body: dict[str, Any] = {"batch_input": [{"input": _b64(m)} for m in messages]}
        if version is not None:
            body["key_version"] = version
        resp = self._call(
            self._client.adapter.post,
            f"/v1/{self._mount}/hmac/{INDEX_KEY}/sha2-256",
            json=body,
            missing=missing,
            invalid=provider_error("index key version not available (retired?)"),
        )
        try:
            results = resp["data"]["batch_results"]
            if len(results) != len(messages) or any(r.get("error") for r in results):
                raise KeyProviderError("key provider could not compute the blind index")
            return [_digest(str(r["hmac"])) for r in results]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise KeyProviderError("unexpected response from key provider") from exc

    # -- GrantKeys ----------------------------------------------------------------

    def grant_key(self) -> bytes:
        """HMAC of a fixed label under ``pii-grants`` version 1: a secret only this key can
        make, fetched once per process (the grant MACs then cost no Vault call)."""
        if self._grant_key is None:
            missing = config_error("grant key missing: run `pii-vault init`")
            resp = self._call(
                self._client.adapter.post,
                f"/v1/{self._mount}/hmac/{GRANT_KEY}/sha2-256",
                json={"input": _b64(GRANT_KEY_INFO), "key_version": 1},
                missing=missing,
                invalid=missing,
            )
            try:
                self._grant_key = _strip_vault_prefix(str(resp["data"]["hmac"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise KeyProviderError("unexpected response from key provider") from exc
        return self._grant_key

    # -- IndexKeyAdmin (needs a privileged token) -------------------------------

    def rotate_index_key(self) -> int:
        self._call(self._transit.rotate_key, INDEX_KEY, mount_point=self._mount)
        resp = self._call(self._transit.read_key, INDEX_KEY, mount_point=self._mount)
        return int(resp["data"]["latest_version"])

    def retire_index_keys_before(self, version: int) -> None:
        # A direct call: hvac refuses equal min encryption and decryption versions; Vault not.
        self._call(
            self._client.adapter.post,
            f"/v1/{self._mount}/keys/{INDEX_KEY}/config",
            json={"min_decryption_version": version, "min_encryption_version": version},
        )
        self._call(self._transit.trim_key, INDEX_KEY, min_version=version, mount_point=self._mount)

    # -- Signer -----------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        missing = config_error("signing key missing: run `pii-vault init`")
        resp = self._call(
            self._transit.sign_data,
            SIGNING_KEY,
            hash_input=_b64(message),
            mount_point=self._mount,
            missing=missing,
            invalid=missing,
        )
        try:
            return _strip_vault_prefix(resp["data"]["signature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyProviderError("unexpected response from key provider") from exc

    def signing_public_key(self) -> bytes:
        if self._public_key is None:
            missing = config_error("signing key missing: run `pii-vault init`")
            resp = self._call(
                self._transit.read_key,
                SIGNING_KEY,
                mount_point=self._mount,
                missing=missing,
                invalid=missing,
            )
            try:
                keys = resp["data"]["keys"]
                latest = str(resp["data"]["latest_version"])
                self._public_key = _unb64(keys[latest]["public_key"])
            except (KeyError, TypeError, ValueError) as exc:
                raise KeyProviderError("unexpected response from key provider") from exc
        return self._public_key
