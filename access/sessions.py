"""Console sessions, server-side: what a signed-in person's browser session holds.

The browser gets a random 256-bit id; only its SHA-256 is stored, so a database
dump or backup holds no usable session. What a session holds (principal, roles, the
person's email) is encrypted under a key derived from that id (issue 17), so the
rows show nothing about who is signed in. A session idle longer than the timeout, or
older than its absolute lifetime, is gone (checked on every load, and swept by
``purge_idle``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_

from access.models import ConsoleSession
from vault.crypto import open_with_secret, seal_with_secret
from vault.errors import DecryptionError
from vault.models import aware
from vault.transactions import Transactions

_CONTEXT = b"pii-vault/console-session/v1"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def seal_data(session_id: str, data: dict[str, Any]) -> str:
    """A session's data as its row holds it: sealed under a key derived from the id."""
    plain = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(seal_with_secret(session_id, _CONTEXT, plain)).decode()


def open_data(session_id: str, text: str) -> dict[str, Any]:
    blob = base64.b64decode(text.encode("ascii"), validate=True)
    return dict(json.loads(open_with_secret(session_id, _CONTEXT, blob)))


@dataclass(frozen=True)
class StoredSession:
    data: dict[str, Any]
    created_at: dt.datetime


class SessionStore:
    def __init__(
        self, tx: Transactions, *, idle_timeout: float = 900.0, lifetime: float = 8 * 3600.0
    ) -> None:
        if idle_timeout <= 0 or lifetime <= 0:
            raise ValueError("the idle timeout and the lifetime must be positive")
        self.tx = tx
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime

    def load(self, session_id: str) -> StoredSession | None:
        """The session, touched; None if unknown, idle past the timeout or older than the
        lifetime (then deleted)."""
        if not session_id or len(session_id) > 128:
            return None
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin() as session:
            row = session.get(ConsoleSession, _hash(session_id))
            if row is None:
                return None
            idle = (now - aware(row.last_seen)).total_seconds() > self.idle_timeout
            if idle or (now - aware(row.created_at)).total_seconds() > self.lifetime:
                session.delete(row)
                return None
            row.last_seen = now
            try:
                data = open_data(session_id, row.data)
            except (DecryptionError, ValueError, binascii.Error):
                session.delete(row)  # not ours (or from before encryption): signed out
                return None
            return StoredSession(data, aware(row.created_at))

    def save(self, session_id: str | None, data: dict[str, Any]) -> str:
        """Store ``data`` under ``session_id`` (a new random id if None); returns the id."""
        now = dt.datetime.now(dt.UTC)
        session_id = session_id or secrets.token_urlsafe(32)
        with self.tx.begin() as session:
            row = session.get(ConsoleSession, _hash(session_id))
            if row is None:
                row = ConsoleSession(id_hash=_hash(session_id), created_at=now)
                session.add(row)
            row.data = seal_data(session_id, data)
            row.principal = None  # kept out of the row: who is signed in is no one's business
            row.last_seen = now
        return session_id

    def delete(self, session_id: str) -> None:
        with self.tx.begin() as session:
            session.execute(
                delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(session_id))
            )

    def purge_idle(self) -> None:
        now = dt.datetime.now(dt.UTC)
        idle = now - dt.timedelta(seconds=self.idle_timeout)
        old = now - dt.timedelta(seconds=self.lifetime)
        with self.tx.begin() as session:
            session.execute(
                delete(ConsoleSession).where(
                    or_(ConsoleSession.last_seen < idle, ConsoleSession.created_at < old)
                )
            )
