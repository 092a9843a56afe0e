"""gunicorn's gthread worker, but a request reaches a thread only once it has arrived whole
(issue 18: sixteen slowloris connections stalled /healthz and the API for 40 s).

gthread hands a connection to a thread at its first byte; the thread then blocks
reading the rest, so a client sending a byte a second holds a thread, and
``workers x threads`` such clients hold them all. Here the worker's event loop reads
each request's head and body itself (non-blocking, as bytes arrive) and gives the
connection to a thread only when the request is complete, with the bytes read put
back in front of gunicorn's own parser. Bounds, per worker:

- a request must arrive within ``read_timeout`` seconds of its first byte (headers and
  body together; ``PII_VAULT_REQUEST_READ_TIMEOUT``, 10 s), else 408 and closed;
- at most ``max_reading`` connections may be mid-request at once
  (``PII_VAULT_MAX_READING_CONNECTIONS``, 256): beyond that the slowest is dropped;
- a head over 64 KiB or a body over the body limit goes to gunicorn/Flask at once,
  which refuse it (431/400, 413) without reading on.

A client that sends ``Expect: 100-continue`` gets its thread once the head is in (it
waits for the interim reply before sending its body); that body is then read in the
thread, bounded by gunicorn's timeouts. Threads are left for requests that have
arrived, so ``/healthz`` answers under a slowloris of any size within these bounds.
This is where gunicorn's internals are touched (``ThreadWorker.accept``,
``on_client_socket_readable``, ``murder_pending``, ``handle``; gunicorn 27); issue 21
may replace the server, and this requirement moves with it.
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import socket
import time
from collections import OrderedDict
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

MAX_HEAD = 64 * 1024
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*(?:\r\n|$)")
_TIMEOUT_REPLY = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def complete(buffer: bytes | bytearray, max_body: int) -> bool:
    """Whether ``buffer`` holds a whole request (or one to refuse without reading on)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return len(buffer) > MAX_HEAD
    head = bytes(buffer[:end]).lower()
    body = len(buffer) - end - 4
    if b"\r\nexpect:" in head and b"100-continue" in head:
        return True  # the client waits for "100 Continue" before its body
    if b"\r\ntransfer-encoding:" in head and b"chunked" in head:
        return buffer.endswith(b"0\r\n\r\n") or body > max_body
    match = _LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    return body >= length or length > max_body


class PrereadWorker(ThreadWorker):  # type: ignore[misc]
    read_timeout: float = 10.0
    max_reading: int = 256
    max_body: int = 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading: OrderedDict[TConn, float] = OrderedDict()  # conn -> deadline
        self.dropped = 0

    # -- connections still sending their request: the event loop's, not a thread's --

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._start_reading(TConn(self.cfg, client, address, listener.getsockname()))

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection's next request: read like a new one."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn)
        self._read_some(conn)

    def _start_reading(self, conn: TConn) -> None:
        while len(self._reading) >= self.max_reading:
            self._drop(next(iter(self._reading)), reply=True)  # the one reading longest
        conn.preread = bytearray()
        conn.sock.setblocking(False)
        self._reading[conn] = time.monotonic() + self.read_timeout
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _readable(self, conn: TConn, _sock: socket.socket) -> None:
        self._read_some(conn)

    def _read_some(self, conn: TConn) -> None:
        try:
            chunk = conn.sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not chunk:
            self._drop(conn)  # the client went away
            return
        conn.preread += chunk
        if complete(conn.preread, self.max_body):
            self.poller.unregister(conn.sock)
            del self._reading[conn]
            conn.data_ready = True
            self.enqueue_req(conn)

    def _drop(self, conn: TConn, *, reply: bool = False) -> None:
        self._reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        if reply:
            with contextlib.suppress(OSError):
                conn.sock.send(_TIMEOUT_REPLY, socket.MSG_DONTWAIT)
        self.dropped += 1
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self._reading:
            conn, deadline = next(iter(self._reading.items()))
            if deadline > now:
                break
            self._drop(conn, reply=True)

    # -- in a thread: the request has arrived -----------------------------------------

    def handle(self, conn: TConn) -> Any:
        buffered = getattr(conn, "preread", None)
        if buffered is not None:
            conn.preread = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(buffered))
        return super().handle(conn)
