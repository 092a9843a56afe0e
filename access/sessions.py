"""Console sessions, server-side: what a signed-in person's browser session holds.

The browser gets a random 256-bit id; only its SHA-256 is stored, so a database
dump or backup holds no usable session. A session idle longer than the timeout is
gone (checked on every load, and swept by ``purge_idle``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete

from access.models import ConsoleSession
from vault.transactions import Transactions


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredSession:
    data: dict[str, Any]
    created_at: dt.datetime


class SessionStore:
    def __init__(self, tx: Transactions, *, idle_timeout: float = 900.0) -> None:
        if idle_timeout <= 0:
            raise ValueError("the idle timeout must be positive")
        self.tx = tx
        self.idle_timeout = idle_timeout

    def load(self, session_id: str) -> StoredSession | None:
        """The session, touched; None if unknown or idle past the timeout (then deleted)."""
        if not session_id or len(session_id) > 128:
            return None
        now = dt.datetime.now(dt.UTC)
        with self.tx.begin() as session:
            row = session.get(ConsoleSession, _hash(session_id))
            if row is None:
                return None
            if (now - _aware(row.last_seen)).total_seconds() > self.idle_timeout:
                session.delete(row)
                return None
            row.last_seen = now
            return StoredSession(json.loads(row.data), _aware(row.created_at))

    def save(self, session_id: str | None, data: dict[str, Any]) -> str:
        """Store ``data`` under ``session_id`` (a new random id if None); returns the id."""
        now = dt.datetime.now(dt.UTC)
        session_id = session_id or secrets.token_urlsafe(32)
        with self.tx.begin() as session:
            row = session.get(ConsoleSession, _hash(session_id))
            if row is None:
                row = ConsoleSession(id_hash=_hash(session_id), created_at=now)
                session.add(row)
            row.data = json.dumps(data, separators=(",", ":"))
            row.principal = data.get("principal")
            row.last_seen = now
        return session_id

    def delete(self, session_id: str) -> None:
        with self.tx.begin() as session:
            session.execute(
                delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(session_id))
            )

    def purge_idle(self) -> None:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.idle_timeout)
        with self.tx.begin() as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.last_seen < cutoff))
