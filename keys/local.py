"""Embedded key provider for development and unit tests. Not for production.

Keys live in their own SQLite file, each wrapped under a master key taken from
``PII_VAULT_LOCAL_MASTER_KEY`` (urlsafe base64 of 32 bytes) or from a 0600 key
file created beside it. It mirrors transit's behaviour: versioned subject keys,
data keys returned wrapped, hard deletion (with SQLite ``secure_delete``), an
HMAC key for blind indexes and an Ed25519 key (PyNaCl) for signatures. Nothing
ever protects this file as well as Vault protects its barrier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from nacl import bindings
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey
from nacl.utils import random as nacl_random

from keys.errors import (
    KeyDestroyed,
    KeyProviderConfigError,
    KeyProviderError,
    KeyUnavailable,
    UnwrapFailed,
)
from keys.provider import AnchorStore, DataKey

MASTER_KEY_ENV = "PII_VAULT_LOCAL_MASTER_KEY"
_NONCE = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_PREFIX = "local:v"


def load_master_key(home: Path, env_value: str | None = None) -> bytes:
    """The master key from the environment, else from ``home/master.key`` (created 0600)."""
    if env_value:
        try:
            key = base64.urlsafe_b64decode(env_value.encode("ascii"))
        except (binascii.Error, ValueError) as exc:
            raise KeyProviderConfigError(f"{MASTER_KEY_ENV} is not valid base64") from exc
        if len(key) != 32:
            raise KeyProviderConfigError(f"{MASTER_KEY_ENV} must decode to 32 bytes")
        return key
    path = home / "master.key"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyProviderConfigError(
                f"{path} is readable by others (mode {mode:o}); chmod 600 it"
            ) from None
        raw = path.read_bytes().strip()
        try:
            key = base64.urlsafe_b64decode(raw)
        except (binascii.Error, ValueError) as exc:
            raise KeyProviderConfigError(f"{path} does not hold a valid key") from exc
        if len(key) != 32:
            raise KeyProviderConfigError(f"{path} does not hold a 32-byte key") from None
        return key
    key = nacl_random(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.urlsafe_b64encode(key) + b"\n")
    return key


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = nacl_random(_NONCE)
    return nonce + bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < _NONCE + 16:
        raise UnwrapFailed()
    try:
        return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            blob[_NONCE:], aad, blob[:_NONCE], key
        )
    except CryptoError as exc:
        raise UnwrapFailed() from exc


class LocalKeyProvider:
    """KeyBackend over an embedded SQLite keystore."""

    name = "local"

    def __init__(self, path: str | os.PathLike[str], master_key: bytes) -> None:
        if len(master_key) != 32:
            raise KeyProviderConfigError("local master key must be 32 bytes")
        self._path = Path(path)
        self._master = master_key
        self._lock = threading.RLock()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            if not self._path.exists():
                os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(
                self._path, timeout=10, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS subject_keys ("
                " subject_id TEXT NOT NULL, version INTEGER NOT NULL, wrapped BLOB NOT NULL,"
                " PRIMARY KEY (subject_id, version))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS service_keys (name TEXT PRIMARY KEY, wrapped BLOB)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS subject_key_created ("
                " subject_id TEXT PRIMARY KEY, created REAL NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS subject_key_rotated ("
                " subject_id TEXT PRIMARY KEY, rotated REAL NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        self._service_key("index")  # version 1 of the index key, created on first open
        self._signing_key = SigningKey(self._service_key("signing"))

    @classmethod
    def open(
        cls, home: str | os.PathLike[str], master_key_b64: str | None = None
    ) -> LocalKeyProvider:
        home = Path(home)
        return cls(home / "keys.db", load_master_key(home, master_key_b64))

    # -- plumbing ---------------------------------------------------------

    def _kek_aad(self, subject_id: str, version: int) -> bytes:
        return f"pii-vault/local/kek/{subject_id}/{version}".encode()

    def _dek_aad(self, subject_id: str) -> bytes:
        return f"pii-vault/local/dek/{subject_id}".encode()

    def _service_key(self, name: str) -> bytes:
        aad = f"pii-vault/local/service/{name}".encode()
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute(
                        "SELECT wrapped FROM service_keys WHERE name = ?", (name,)
                    ).fetchone()
                    if row is None:
                        key = nacl_random(32)
                        self._db.execute(
                            "INSERT INTO service_keys (name, wrapped) VALUES (?, ?)",
                            (name, _seal(self._master, key, aad)),
                        )
                        self._db.execute("COMMIT")
                        return key
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        try:
            return _open(self._master, bytes(row[0]), aad)
        except UnwrapFailed as exc:
            raise KeyProviderConfigError("local master key does not match the keystore") from exc

    def _subject_keys(self, subject_id: str) -> dict[int, bytes]:
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT version, wrapped FROM subject_keys WHERE subject_id = ?",
                    (subject_id,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        keys: dict[int, bytes] = {}
        for version, wrapped in rows:
            try:
                keys[int(version)] = _open(
                    self._master, bytes(wrapped), self._kek_aad(subject_id, int(version))
                )
            except UnwrapFailed as exc:
                raise KeyProviderError("local keystore entry is corrupt") from exc
        return keys

    def _add_version(self, subject_id: str, version: int) -> None:
        wrapped = _seal(self._master, nacl_random(32), self._kek_aad(subject_id, version))
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO subject_keys (subject_id, version, wrapped) VALUES (?, ?, ?)",
                    (subject_id, version, wrapped),
                )
        except sqlite3.IntegrityError as exc:
            raise KeyProviderError("subject key version already exists") from exc
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def _wrap(self, subject_id: str, version: int, kek: bytes, dek: bytes) -> str:
        blob = _seal(kek, dek, self._dek_aad(subject_id))
        return f"{_PREFIX}{version}:{base64.b64encode(blob).decode('ascii')}"

    def _unwrap(self, subject_id: str, keys: dict[int, bytes], wrapped: str) -> bytes:
        try:
            prefix, version_text, body = wrapped.split(":", 2)
            version = int(version_text.removeprefix("v"))
            blob = base64.b64decode(body.encode("ascii"), validate=True)
        except (ValueError, binascii.Error) as exc:
            raise UnwrapFailed() from exc
        if prefix != "local" or version not in keys:
            raise UnwrapFailed()
        dek = _open(keys[version], blob, self._dek_aad(subject_id))
        if len(dek) != 32:
            raise UnwrapFailed()
        return dek

    def _existing(self, subject_id: str) -> dict[int, bytes]:
        keys = self._subject_keys(subject_id)
        if not keys:
            raise KeyDestroyed("subject key does not exist")
        return keys

    # -- KeyBackend -------------------------------------------------------

    def check(self) -> None:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def create_subject_key(self, subject_id: str) -> None:
        if not self._subject_keys(subject_id):
            self._add_version(subject_id, 1)
            try:
                with self._lock:
                    self._db.execute(
                        "INSERT OR REPLACE INTO subject_key_created VALUES (?, ?)",
                        (subject_id, time.time()),
                    )
            except sqlite3.Error as exc:
                raise KeyUnavailable("local keystore unavailable") from exc

    def subject_key_ids(self) -> list[str]:
        try:
            with self._lock:
                rows = self._db.execute("SELECT DISTINCT subject_id FROM subject_keys").fetchall()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return [str(r[0]) for r in rows]

    def subject_key_created(self, subject_id: str) -> float | None:
        if not self._subject_keys(subject_id):
            return None
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT created FROM subject_key_created WHERE subject_id = ?", (subject_id,)
                ).fetchone()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return float(row[0]) if row else 0.0  # made before creation times were kept: old

    def subject_key_exists(self, subject_id: str) -> bool:
        return bool(self._subject_keys(subject_id))

    def generate_data_key(self, subject_id: str) -> DataKey:
        keys = self._existing(subject_id)
        version = max(keys)
        dek = nacl_random(32)
        return DataKey(plaintext=dek, wrapped=self._wrap(subject_id, version, keys[version], dek))

    def unwrap_data_key(self, subject_id: str, wrapped: str) -> bytes:
        return self._unwrap(subject_id, self._existing(subject_id), wrapped)

    def rotate_subject_key(self, subject_id: str) -> None:
        keys = self._existing(subject_id)
        self._add_version(subject_id, max(keys) + 1)
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO subject_key_rotated (subject_id, rotated)"
                    " VALUES (?, ?)",
                    (subject_id, time.time()),
                )
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def subject_key_rotated(self, subject_id: str) -> float | None:
        created = self.subject_key_created(subject_id)
        if created is None:
            return None
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT rotated FROM subject_key_rotated WHERE subject_id = ?", (subject_id,)
                ).fetchone()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return float(row[0]) if row else created

    def trim_subject_key(self, subject_id: str) -> None:
        latest = max(self._existing(subject_id))
        try:
            with self._lock:
                self._db.execute(
                    "DELETE FROM subject_keys WHERE subject_id = ? AND version < ?",
                    (subject_id, latest),
                )
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def rewrap_data_keys(self, subject_id: str, wrapped: Sequence[str]) -> list[str]:
        keys = self._existing(subject_id)
        latest = max(keys)
        return [
            self._wrap(subject_id, latest, keys[latest], self._unwrap(subject_id, keys, w))
            for w in wrapped
        ]

    def destroy_subject_key(self, subject_id: str) -> None:
        try:
            with self._lock:
                self._db.execute("DELETE FROM subject_keys WHERE subject_id = ?", (subject_id,))
                self._db.execute(
                    "DELETE FROM subject_key_created WHERE subject_id = ?", (subject_id,)
                )
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def _index_keys(self) -> dict[int, bytes]:
        """Every live index-key version (read each time: another process may have rotated)."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT name, wrapped FROM service_keys"
                    " WHERE name = 'index' OR name LIKE 'index.v%'"
                ).fetchall()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        keys = {}
        for name, wrapped in rows:
            version = 1 if name == "index" else int(name.removeprefix("index.v"))
            aad = f"pii-vault/local/service/{name}".encode()
            try:
                keys[version] = _open(self._master, bytes(wrapped), aad)
            except UnwrapFailed as exc:
                raise KeyProviderConfigError(
                    "local master key does not match the keystore"
                ) from exc
        return keys

    def blind_index(self, messages: Sequence[bytes], version: int | None = None) -> list[str]:
        keys = self._index_keys()
        if not keys:
            raise KeyProviderConfigError("blind-index key missing")
        version = max(keys) if version is None else version
        if version not in keys:
            raise KeyProviderError("index key version not available (retired?)")
        key = keys[version]
        return [
            f"v{version}:" + base64.b64encode(hmac.new(key, m, hashlib.sha256).digest()).decode()
            for m in messages
        ]

    def grant_key(self) -> bytes:
        """The keystore's grant key (the keystore file stands in for Vault: not the database)."""
        return self._service_key("grants")

    def rotate_index_key(self) -> int:
        version = max(self._index_keys(), default=0) + 1
        self._service_key(f"index.v{version}")
        return version

    def retire_index_keys_before(self, version: int) -> None:
        doomed = ["index" if v == 1 else f"index.v{v}" for v in self._index_keys() if v < version]
        try:
            with self._lock:
                for name in doomed:
                    self._db.execute("DELETE FROM service_keys WHERE name = ?", (name,))
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signing_key.sign(message).signature)

    def signing_public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    def refresh_auth(self) -> None:
        """Nothing expires: the master key is the local provider's credential."""

    @property
    def auth_state(self) -> None:
        return None

    def anchor_store(self) -> AnchorStore:
        from keys.anchors import LocalAnchors

        return LocalAnchors(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()
