"""The audit stream (issue 22): every committed audit event, in order, to the SIEM.

Sinks read the log from a cursor kept per sink in the database (``audit_stream_cursors``),
never from the request path: a request commits its event and goes on; a background
thread in one process at a time (a lease on the cursor row) sends what is past the
cursor, oldest first, and moves the cursor only after the sink took the batch. So every
event is delivered at least once and in sequence order; a sink that is down keeps its
cursor, lags (``pii_vault_audit_stream_lag_events``, ``/readyz`` detail) and catches
up when it is back. Nothing is dropped and no request waits on a sink.

Events are sent as the log holds them (``seq`` and the chain ``hash`` included; never a
value — the log has none): a SIEM can check that sequence numbers are contiguous,
which is how a cursor advanced with SQL would show.

Two sinks: syslog (RFC 5424 over TCP with octet-counting framing, RFC 6587; or UDP) and
HTTP (JSON lines, ``X-PII-Vault-Signature: sha256=<HMAC of the body>``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from access.audit import AuditLog
from access.errors import AccessConfigError as ConfigError
from access.models import AuditStreamCursor
from vault.errors import DatabaseUnavailable, cause

log = logging.getLogger(__name__)

BATCH = 500
LEASE_SECONDS = 30.0
TIMEOUT = 5.0
_FACILITY = 13  # RFC 5424 "log audit"
_ENTERPRISE = "32473"  # RFC 5612's documentation number: no private number is registered


class SinkUnavailable(Exception):
    """The sink did not take the batch; the cursor stays where it was."""


class Sink(Protocol):
    name: str

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        """Deliver ``events`` (oldest first) or raise SinkUnavailable."""
        ...


def _printable(text: str, limit: int) -> str:
    """RFC 5424 header fields: printable US-ASCII without spaces, or NILVALUE."""
    out = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return out or "-"


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def rfc5424(event: dict[str, Any], hostname: str, procid: str) -> bytes:
    """One event as an RFC 5424 message; the event itself, as JSON, is the MSG."""
    severity = 5 if event.get("decision") == "deny" else 6  # notice for a refusal, else info
    sd = (
        f'[pii-vault@{_ENTERPRISE} seq="{int(event["seq"])}" '
        f'decision="{_sd_value(str(event.get("decision", "")))}" '
        f'principal="{_sd_value(str(event.get("principal", "")))}"]'
    )
    header = " ".join(
        [
            f"<{_FACILITY * 8 + severity}>1",
            _printable(str(event.get("ts", "")), 64),
            _printable(hostname, 255),
            "pii-vault",
            _printable(procid, 128),
            _printable(str(event.get("action", "")), 32),
            sd,
        ]
    )
    body = json.dumps(event, separators=(",", ":"), sort_keys=True)
    return f"{header} {body}".encode()


class SyslogSink:
    """``tcp://host:port`` (RFC 6587 octet counting) or ``udp://host:port``."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("tcp", "udp") or not parts.hostname or not parts.port:
            raise ConfigError("a syslog sink is tcp://HOST:PORT or udp://HOST:PORT")
        self.name = f"syslog:{parts.hostname}:{parts.port}"
        self.scheme, self.address, self.timeout = (
            parts.scheme,
            (parts.hostname, parts.port),
            timeout,
        )
        self.hostname = socket.gethostname()
        self._sock: socket.socket | None = None

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        messages = [rfc5424(e, self.hostname, str(os.getpid())) for e in events]
        try:
            if self.scheme == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    for m in messages:
                        udp.sendto(m, self.address)
                return
            sock = self._connected()
            sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in messages))
        except OSError as exc:
            self.close()
            raise SinkUnavailable(f"{self.name}: {type(exc).__name__}") from exc

    def _connected(self) -> socket.socket:
        """The open connection if the server has not closed it since the last batch (a
        restarted rsyslog: the kernel would accept one more write into a dead socket)."""
        if self._sock is not None:
            try:
                self._sock.setblocking(False)
                closed = self._sock.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            finally:
                if self._sock is not None:
                    self._sock.settimeout(self.timeout)
            if closed:
                self.close()
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=self.timeout)
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class HttpSink:
    """POST of JSON lines, signed with HMAC-SHA256 under a shared secret."""

    def __init__(self, url: str, secret: str, *, timeout: float = TIMEOUT) -> None:
        if not secret:
            raise ConfigError("an HTTP audit sink needs a signing secret")
        parts = urlsplit(url)
        self.name = f"http:{parts.hostname}:{parts.port or ''}{parts.path}"[:64]
        self.url, self.timeout = url, timeout
        self._secret = secret.encode()
        self._http = requests.Session()

    def __repr__(self) -> str:  # never the secret
        return f"HttpSink({self.url!r})"

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        body = b"".join(
            json.dumps(e, separators=(",", ":"), sort_keys=True).encode() + b"\n" for e in events
        )
        signature = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-ndjson",
            "X-PII-Vault-Signature": f"sha256={signature}",
            "X-PII-Vault-Seq": f"{events[0]['seq']}-{events[-1]['seq']}",
        }
        try:
            r = self._http.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise SinkUnavailable(f"{self.name}: {type(exc).__name__}") from exc
        if not 200 <= r.status_code < 300:
            raise SinkUnavailable(f"{self.name}: answered {r.status_code}")


def verify_signature(body: bytes, header: str, secret: str) -> bool:
    """For receivers: whether ``header`` is this body's signature under ``secret``."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


@dataclass
class SinkState:
    delivered: int = 0  # the cursor: the last seq the sink took
    failures: int = 0
    last_error: str | None = None
    holder: bool = False  # this process holds the lease


@dataclass
class AuditStreamer:
    """Moves each sink's cursor forward; one thread per process, one lease per sink."""

    audit: AuditLog
    sessions: sessionmaker[Session]
    sinks: list[Sink]
    interval: float = 1.0
    batch: int = BATCH
    lease: float = LEASE_SECONDS
    clock: Callable[[], float] = time.time
    me: str = field(default_factory=lambda: f"{os.getpid()}:{uuid.uuid4().hex[:12]}")
    state: dict[str, SinkState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for sink in self.sinks:
            self.state.setdefault(sink.name, SinkState())

    def run_once(self) -> int:
        """One round over every sink; the number of events delivered."""
        sent = 0
        for sink in self.sinks:
            state = self.state[sink.name]
            cursor = self._lease(sink.name)
            state.holder = cursor is not None
            if cursor is None:
                continue  # another process delivers this sink
            state.delivered = cursor
            while not self._stop.is_set():
                events = self.audit.after(cursor, self.batch)
                if not events:
                    break
                try:
                    sink.send(events)
                except SinkUnavailable as exc:
                    state.failures += 1
                    if state.last_error is None:
                        log.warning("audit sink %s is down; it will lag and catch up", exc)
                    state.last_error = str(exc)
                    break
                if state.last_error is not None:
                    log.info("audit sink %s is back", sink.name)
                    state.last_error = None
                cursor = int(events[-1]["seq"])
                if not self._advance(sink.name, cursor):
                    state.holder = False
                    break  # the lease went to another process: it re-sends from its cursor
                state.delivered = cursor
                sent += len(events)
        return sent

    def lag(self) -> dict[str, int]:
        """Events committed but not yet taken, per sink (as this process last saw it)."""
        try:
            newest = self.audit.newest_seq()
            with self.sessions.begin() as session:
                cursors = {c.sink: c.seq for c in session.scalars(select(AuditStreamCursor))}
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable("database unavailable: audit stream cursors") from exc
        return {s.name: max(0, newest - cursors.get(s.name, 0)) for s in self.sinks}

    def _lease(self, sink: str) -> int | None:
        """The sink's cursor if this process holds (or just took) its lease; else None."""
        now = self.clock()
        with self.sessions.begin() as session:
            taken = session.execute(
                update(AuditStreamCursor)
                .where(AuditStreamCursor.sink == sink)
                .where(
                    (AuditStreamCursor.holder == self.me) | (AuditStreamCursor.lease_until < now)
                )
                .values(holder=self.me, lease_until=now + self.lease)
                .returning(AuditStreamCursor.seq)
            ).scalar_one_or_none()
            if taken is not None:
                return int(taken)
            if session.get(AuditStreamCursor, sink) is not None:
                return None
        try:  # a new sink starts at the beginning of the log: every event, once
            with self.sessions.begin() as session:
                session.add(
                    AuditStreamCursor(
                        sink=sink, seq=0, holder=self.me, lease_until=now + self.lease
                    )
                )
        except IntegrityError:
            return None  # another process created it a moment ago
        return 0

    def _advance(self, sink: str, seq: int) -> bool:
        with self.sessions.begin() as session:
            moved = session.execute(
                update(AuditStreamCursor)
                .where(AuditStreamCursor.sink == sink, AuditStreamCursor.holder == self.me)
                .where(AuditStreamCursor.seq < seq)
                .values(seq=seq, lease_until=self.clock() + self.lease)
            )
            return bool(getattr(moved, "rowcount", 0))

    def start(self) -> AuditStreamer:
        if self._thread is None and self.sinks:
            self._thread = threading.Thread(target=self._run, name="pii-vault-audit-stream")
            self._thread.daemon = True
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the database is down: try again next round
                log.warning("audit stream round failed: %s", cause(exc))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()


def build_sinks(syslog: str | None, http: str | None, http_secret: str | None) -> list[Sink]:
    """The configured sinks; bad configuration raises at start-up."""
    sinks: list[Sink] = []
    if syslog:
        sinks.append(SyslogSink(syslog))
    if http:
        sinks.append(HttpSink(http, http_secret or ""))
    return sinks
