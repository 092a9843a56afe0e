"""A small TCP fault proxy for tests: put it in front of PostgreSQL or OpenBao.

Modes (switchable while connections are open):
``pass``   forward both ways;
``hang``   forward nothing any more, keep every socket open (a black hole);
``reset``  cut every open connection with a TCP reset and reset new ones;
``slow``   forward, each chunk after ``delay`` seconds;
``drop_after_commit``  forward a client's COMMIT, then swallow the server's reply and
           cut that connection (the commit happened; the client cannot know). With
           ``commit_after`` set, only the COMMIT of a transaction that sent those bytes
           (e.g. ``b"INSERT INTO subjects"``).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from contextlib import suppress

MODES = ("pass", "hang", "reset", "slow", "drop_after_commit")


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.delay = 0.2
        self.commits_dropped = 0
        self.commit_after: bytes | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, mode: str, delay: float = 0.2, commit_after: bytes | None = None) -> None:
        assert mode in MODES, mode
        self.mode, self.delay, self.commit_after = mode, delay, commit_after
        if mode == "reset":
            with self._lock:
                pairs, self._pairs = self._pairs, []
            for pair in pairs:
                for sock in pair:
                    _reset(sock)

    def close(self) -> None:
        self._stopped = True
        self.set("reset")
        with suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "reset":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        commit_sent = False
        marked = False  # this transaction sent ``commit_after``
        try:
            while not self._stopped:
                if self.mode == "hang":
                    time.sleep(0.05)
                    continue
                readable, _, _ = select.select([client, upstream], [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError
                    if self.mode == "hang":
                        continue  # swallowed: it never arrives
                    if self.mode == "slow":
                        time.sleep(self.delay)
                    if sock is client:
                        if self.commit_after is not None and self.commit_after in data:
                            marked = True
                        if self.mode == "drop_after_commit" and _is_commit(data):
                            if self.commit_after is None or marked:
                                commit_sent = True
                            marked = False
                        upstream.sendall(data)
                    else:
                        if commit_sent:
                            self.commits_dropped += 1
                            self.mode = "pass"  # one ambiguous commit per switch
                            _reset(client)
                            raise ConnectionError
                        client.sendall(data)
        except (OSError, ValueError, ConnectionError):
            pass  # a socket closed under us (reset mode, proxy closing): the pair is done
        finally:
            for sock in (client, upstream):
                with suppress(OSError):
                    sock.close()
            with self._lock, suppress(ValueError):
                self._pairs.remove((client, upstream))


def _is_commit(data: bytes) -> bool:
    """A PostgreSQL simple-query message whose text is COMMIT."""
    return data[:1] == b"Q" and b"COMMIT" in data[5:].upper()


def _reset(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.close()
