"""Write-once storage for audit anchors, outside the database.

An anchor is a signed record of the audit chain's head (and of every event
hash since the previous anchor), stored under the sequence number of the
anchor before it. The store only ever creates: with Vault, the service token
may create and read anchors in a KV v2 mount but not overwrite, delete,
destroy or change metadata (``keys/policy.hcl``), so someone holding the
database and the service token cannot rewrite history that was anchored.
Keying each anchor by its predecessor means at most one anchor can follow
another: two processes racing to anchor resolve by create-only semantics, and
the anchors form one chain that a deleted link visibly breaks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hv

from keys.errors import AnchorNotFound, KeyProviderError, KeyUnavailable
from keys.hvac_errors import vault_errors

ANCHOR_MOUNT = "pii-audit-anchors"  # KV v2: create-only for the service token

_FOLDER = "anchors"
IDENTITY_PATH = "identity"  # the audit log's pinned identity: written by init, read by the service


def _folder(log: str) -> str:
    if not log.replace("-", "").isalnum():
        raise KeyProviderError("invalid audit log id")
    return f"{_FOLDER}/{log}"


def _path(log: str, key: int) -> str:
    return f"{_folder(log)}/{key:020d}"


RECORD_KINDS = ("shreds", "shred-seq", "grants")  # PublishedRecords' folders under each log


def _record_path(log: str, kind: str, name: str = "") -> str:
    if kind not in RECORD_KINDS:
        raise KeyProviderError("unknown kind of published record")
    if name and not name.replace("-", "").isalnum():
        raise KeyProviderError("invalid record name")
    return f"{_folder(log)}/{kind}" + (f"/{name}" if name else "")


def _not_found() -> KeyProviderError:
    return AnchorNotFound("no anchor there")


T = TypeVar("T")


def _settled(call: Callable[[], T], attempts: int = 50) -> T:
    """A mount enabled moments ago answers "waiting for the primary to upgrade" at a standby
    for a moment (issue 24, seen again by issue 17's init through a follower): retried for
    up to ~10 s, then it counts like any other refusal."""
    for attempt in range(attempts):
        try:
            return call()
        except hv.InvalidRequest as exc:
            if "upgrad" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


class _SettledKv:
    """The KV v2 client, each call through ``_settled``."""

    def __init__(self, kv: Any) -> None:
        self._kv = kv

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._kv, name)
        return lambda *args, **kwargs: _settled(lambda: method(*args, **kwargs))


class KvAnchors:
    """AnchorStore in an OpenBao/Vault KV v2 mount, written create-only."""

    def __init__(self, client: hvac.Client, mount: str = ANCHOR_MOUNT) -> None:
        self._kv = _SettledKv(client.secrets.kv.v2)
        self._mount = mount

    def put(self, log: str, key: int, record: dict[str, Any]) -> bool:
        """Create the anchor that follows ``key``; False if one already exists there."""
        try:
            with vault_errors():
                self._kv.create_or_update_secret(
                    _path(log, key), secret=record, cas=0, mount_point=self._mount
                )
            return True
        except KeyUnavailable:
            raise
        except KeyProviderError:
            # Refused: by check-and-set, or by the policy (no "update" on an existing
            # anchor). Either way, if an anchor is there, someone else wrote it first.
            if self.get(log, key) is not None:
                return False
            raise

    def get(self, log: str, key: int) -> dict[str, Any] | None:
        try:
            with vault_errors(missing=_not_found):
                resp = self._kv.read_secret_version(
                    _path(log, key), mount_point=self._mount, raise_on_deleted_version=True
                )
                return dict(resp["data"]["data"])
        except AnchorNotFound:
            return None

    def keys(self, log: str) -> list[int]:
        try:
            with vault_errors(missing=_not_found):
                resp = self._kv.list_secrets(_folder(log), mount_point=self._mount)
                return sorted(int(k) for k in resp["data"]["keys"] if str(k).isdigit())
        except AnchorNotFound:
            return []

    def logs(self) -> list[str]:
        try:
            with vault_errors(missing=_not_found):
                resp = self._kv.list_secrets(_FOLDER, mount_point=self._mount)
                return sorted(str(k).rstrip("/") for k in resp["data"]["keys"])
        except AnchorNotFound:
            return []

    def identity(self) -> dict[str, Any] | None:
        try:
            with vault_errors(missing=_not_found):
                resp = self._kv.read_secret_version(
                    IDENTITY_PATH, mount_point=self._mount, raise_on_deleted_version=True
                )
                return dict(resp["data"]["data"])
        except AnchorNotFound:
            return None

    def pin_identity(self, record: dict[str, Any]) -> bool:
        try:
            with vault_errors():
                self._kv.create_or_update_secret(
                    IDENTITY_PATH, secret=record, cas=0, mount_point=self._mount
                )
            return True
        except KeyUnavailable:
            raise
        except KeyProviderError:
            if self.identity() is not None:
                return False
            raise

    # -- published records (PublishedRecords) ---------------------------------------

    def publish(self, log: str, kind: str, name: str, record: dict[str, Any]) -> bool:
        try:
            with vault_errors():
                self._kv.create_or_update_secret(
                    _record_path(log, kind, name), secret=record, cas=0, mount_point=self._mount
                )
            return True
        except KeyUnavailable:
            raise
        except KeyProviderError:
            if self.published(log, kind, name) is not None:
                return False
            raise

    def published(self, log: str, kind: str, name: str) -> dict[str, Any] | None:
        try:
            with vault_errors(missing=_not_found):
                resp = self._kv.read_secret_version(
                    _record_path(log, kind, name),
                    mount_point=self._mount,
                    raise_on_deleted_version=True,
                )
                return dict(resp["data"]["data"])
        except AnchorNotFound:
            return None

    def published_names(self, log: str, kind: str) -> list[str]:
        try:
            with vault_errors(missing=_not_found):
                resp = self._kv.list_secrets(_record_path(log, kind), mount_point=self._mount)
                return sorted(str(k) for k in resp["data"]["keys"])
        except AnchorNotFound:
            return []


class LocalAnchors:
    """AnchorStore in the local keystore file, for development and tests (insert-only)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS audit_anchors"
                " (log TEXT NOT NULL, key INTEGER NOT NULL, record TEXT, PRIMARY KEY (log, key))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS published_records (log TEXT NOT NULL, kind TEXT"
                " NOT NULL, name TEXT NOT NULL, record TEXT, PRIMARY KEY (log, kind, name))"
            )

    def put(self, log: str, key: int, record: dict[str, Any]) -> bool:
        try:
            with self._lock:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO audit_anchors (log, key, record) VALUES (?, ?, ?)",
                    (log, key, json.dumps(record, sort_keys=True)),
                )
                return cursor.rowcount == 1
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def get(self, log: str, key: int) -> dict[str, Any] | None:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT record FROM audit_anchors WHERE log = ? AND key = ?", (log, key)
                ).fetchone()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return None if row is None else dict(json.loads(row[0]))

    def keys(self, log: str) -> list[int]:
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT key FROM audit_anchors WHERE log = ? ORDER BY key", (log,)
                ).fetchall()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return [int(r[0]) for r in rows]

    def logs(self) -> list[str]:
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT DISTINCT log FROM audit_anchors WHERE log != ? ORDER BY log",
                    (_IDENTITY_LOG,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return [str(r[0]) for r in rows]

    def identity(self) -> dict[str, Any] | None:
        return self.get(_IDENTITY_LOG, 0)

    def pin_identity(self, record: dict[str, Any]) -> bool:
        return self.put(_IDENTITY_LOG, 0, record)

    def publish(self, log: str, kind: str, name: str, record: dict[str, Any]) -> bool:
        _record_path(log, kind, name)  # the same names as in Vault
        try:
            with self._lock:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO published_records (log, kind, name, record)"
                    " VALUES (?, ?, ?, ?)",
                    (log, kind, name, json.dumps(record, sort_keys=True)),
                )
                return cursor.rowcount == 1
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc

    def published(self, log: str, kind: str, name: str) -> dict[str, Any] | None:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT record FROM published_records WHERE log = ? AND kind = ? AND name = ?",
                    (log, kind, name),
                ).fetchone()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return None if row is None else dict(json.loads(row[0]))

    def published_names(self, log: str, kind: str) -> list[str]:
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT name FROM published_records WHERE log = ? AND kind = ? ORDER BY name",
                    (log, kind),
                ).fetchall()
        except sqlite3.Error as exc:
            raise KeyUnavailable("local keystore unavailable") from exc
        return [str(r[0]) for r in rows]


_IDENTITY_LOG = "_identity"  # local keystore only: a reserved log holding the identity
