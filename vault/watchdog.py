"""A client-side bound on every PostgreSQL wait, for what server timeouts cannot see.

``lock_timeout`` and ``statement_timeout`` bound waits the server knows about.
A network path that swallows a reply (a hung proxy, a half-open connection, a
COMMIT whose answer never comes) leaves libpq blocked in ``recv`` forever: no
server timer fires and TCP keepalives are answered by whatever sits in between.
This watchdog arms a deadline whenever a connection waits on the server (a
statement, a commit, a rollback) and, past it, shuts the connection's socket
down: the blocked call fails at once with a connection error, which callers
turn into 503 ``database_unavailable`` (or ``audit_unavailable``), and the pool
discards the connection.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

log = logging.getLogger(__name__)


def _dbapi(conn: Any) -> Any:
    """The DBAPI connection under a SQLAlchemy one, or None once it is invalidated (its
    ``connection`` property would raise then, inside SQLAlchemy's own error handling)."""
    if conn is None or conn.invalidated or conn.closed:
        return None
    return conn.connection.dbapi_connection


class Watchdog:
    def __init__(self, bound: float, *, tick: float = 0.25) -> None:
        self.bound = bound
        self.tick = tick
        self.fired = 0
        self._armed: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def install(self, engine: Engine) -> None:
        """Watch every wait on ``engine``; replaces ``pool_pre_ping`` (whose ping no event
        covers) with a ping made under the watchdog when a connection is checked out."""

        @event.listens_for(engine, "checkout")
        def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            self.arm(dbapi_connection)
            try:
                dbapi_connection.execute("SELECT 1")
            except Exception as exc:  # stale or cut: the pool retries with a new connection
                raise DisconnectionError("database connection lost") from exc
            finally:
                self.disarm(dbapi_connection)

        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn: Any, *_: Any) -> None:
            self.arm(_dbapi(conn))

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn: Any, *_: Any) -> None:
            self.disarm(_dbapi(conn))

        @event.listens_for(engine, "handle_error")
        def _error(context: Any) -> None:
            self.disarm(_dbapi(context.connection))

        @event.listens_for(engine, "commit")
        def _commit(conn: Any) -> None:
            self.arm(_dbapi(conn))

        @event.listens_for(engine, "rollback")
        def _rollback(conn: Any) -> None:
            self.arm(_dbapi(conn))

        @event.listens_for(engine, "checkin")
        def _checkin(dbapi_connection: Any, _record: Any) -> None:
            self.disarm(dbapi_connection)

        @event.listens_for(engine, "reset")
        def _reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
            self.arm(dbapi_connection)  # the pool's rollback-on-return waits on the server too

    def arm(self, dbapi_connection: Any) -> None:
        if dbapi_connection is None:
            return
        with self._lock:
            self._armed[id(dbapi_connection)] = (time.monotonic() + self.bound, dbapi_connection)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="pii-vault-db-watchdog", daemon=True
                )
                self._thread.start()

    def disarm(self, dbapi_connection: Any) -> None:
        if dbapi_connection is None:
            return
        with self._lock:
            self._armed.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            with self._lock:
                late = [c for deadline, c in self._armed.values() if deadline <= now]
                for connection in late:
                    self._armed.pop(id(connection), None)
            for connection in late:
                self._cut(connection)

    def _cut(self, dbapi_connection: Any) -> None:
        """Shut the socket down under the blocked call (the fd stays libpq's to close)."""
        try:
            fd = dbapi_connection.pgconn.socket
            sock = socket.socket(fileno=fd)
        except Exception:  # closed meanwhile: nothing is waiting any more
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
            self.fired += 1
            log.warning("database did not answer within %.0f s: connection cut", self.bound)
        except OSError:
            pass
        finally:
            sock.detach()
