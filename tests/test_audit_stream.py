"""Issue 22 (6): every committed audit event reaches the SIEM, in order, at least once.

Real peers: Debian's rsyslog (imtcp, RFC 5424 re-emitted to a file) and an HTTP
receiver that checks the signature; both are taken down and brought back while events
keep being committed. A request never waits on a sink.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from access.audit_stream import AuditStreamer, HttpSink, SyslogSink, verify_signature
from access.runtime import Runtime, compose
from api.demo.openbao import free_port
from tests.conftest import Database, new_local_provider
from tests.helpers import ALICE

SECRET = "siem-shared-secret-for-tests"
_SEQ = re.compile(r'\[pii-vault@32473 seq="(\d+)"')


# -- the peers ---------------------------------------------------------------------------


@dataclass
class Rsyslog:
    directory: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.directory / "audit.log"

    def start(self) -> None:
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        conf = self.directory / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{self.directory}")\n'
            'module(load="imtcp")\n'
            f'input(type="imtcp" port="{self.port}" address="127.0.0.1" ruleset="pii")\n'
            'ruleset(name="pii") {\n'
            f'  action(type="omfile" file="{self.out}" '
            'template="RSYSLOG_SyslogProtocol23Format")\n'
            "}\n"
        )
        self.proc = subprocess.Popen(
            [binary, "-n", "-f", str(conf), "-i", str(self.directory / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("rsyslogd did not listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def seqs(self, wanted: int, timeout: float = 10.0) -> list[int]:
        """The seq of every line rsyslog wrote, in file order, once ``wanted`` are there."""
        deadline = time.monotonic() + timeout
        found: list[int] = []
        while time.monotonic() < deadline:
            text = self.out.read_text() if self.out.exists() else ""
            found = [int(m.group(1)) for m in _SEQ.finditer(text)]
            if len(set(found)) >= wanted:
                return found
            time.sleep(0.1)
        return found


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    if not (shutil.which("rsyslogd") or Path("/usr/sbin/rsyslogd").exists()):
        pytest.fail("rsyslogd is required (apt-get install rsyslog; .ci/run installs it)")
    directory = tmp_path / "rsyslog"
    directory.mkdir()
    server = Rsyslog(directory, free_port())
    server.start()
    yield server
    server.stop()


@dataclass
class Receiver:
    """An HTTP sink's far end: keeps what it was sent when the signature holds."""

    url: str = ""
    down: bool = False
    hang: threading.Event = field(default_factory=threading.Event)
    bodies: list[bytes] = field(default_factory=list)
    bad_signatures: int = 0

    def seqs(self) -> list[int]:
        return [json.loads(line)["seq"] for body in self.bodies for line in body.splitlines()]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.hang.is_set():
                time.sleep(3)
            if state.down:
                self.send_response(503)
            elif not verify_signature(body, self.headers.get("X-PII-Vault-Signature", ""), SECRET):
                state.bad_signatures += 1
                self.send_response(401)
            else:
                state.bodies.append(body)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/audit"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


@pytest.fixture
def rt(local_runtime: Runtime) -> Runtime:
    return local_runtime


def _streamer(rt: Runtime, *sinks: Any, **kw: Any) -> AuditStreamer:
    from sqlalchemy.orm import sessionmaker

    return AuditStreamer(rt.audit, sessionmaker(rt.vault.engine), list(sinks), **kw)


def _events(rt: Runtime, n: int) -> None:
    """``n`` principals and a subject each: grant changes, creates (audited)."""
    from access.events import Caller

    for i in range(n):
        name = f"svc:reg-{i}-{time.monotonic_ns() % 10**8}"
        rt.principals.create(name, ["registration-service"])
        rt.guard.create_subject(
            Caller(name, request_id=f"r{i}"),
            "account_registration",
            {"email": f"p{i}.{ALICE['email']}", "full_name": ALICE["full_name"]},
        )


def _no_values(text: str) -> None:
    assert ALICE["email"] not in text and ALICE["full_name"] not in text


# -- the tests ---------------------------------------------------------------------------


def test_rsyslog_receives_every_event_in_order_and_catches_up_after_a_restart(
    rt: Runtime, rsyslog: Rsyslog
) -> None:
    sink = SyslogSink(f"tcp://127.0.0.1:{rsyslog.port}")
    streamer = _streamer(rt, sink)
    _events(rt, 5)
    assert streamer.run_once() == rt.audit.newest_seq()
    first = rt.audit.newest_seq()
    assert rsyslog.seqs(first) == list(range(1, first + 1))
    assert streamer.lag() == {sink.name: 0}

    rsyslog.stop()  # down: events keep being committed, the sink lags
    _events(rt, 3)
    assert streamer.run_once() == 0
    newest = rt.audit.newest_seq()
    assert streamer.lag() == {sink.name: newest - first}
    assert streamer.state[sink.name].last_error is not None

    rsyslog.start()  # back: it catches up from its cursor
    assert streamer.run_once() == newest - first
    seqs = rsyslog.seqs(newest)
    assert seqs == list(range(1, newest + 1))  # every event, in order, none twice here
    text = rsyslog.out.read_text()
    _no_values(text)
    line = text.splitlines()[0]
    assert re.match(r"^<11[0-9]>1 \d{4}-\d\d-\d\dT\S+ \S+ pii-vault \d+ \S+ \[pii-vault@", line)
    event = json.loads(line[line.index("] {") + 2 :])
    assert event["seq"] == 1 and "hash" in event
    streamer.stop()


def test_the_http_sink_is_signed_and_a_sink_that_is_down_lags_and_catches_up(
    rt: Runtime, receiver: Receiver
) -> None:
    sink = HttpSink(receiver.url, SECRET)
    streamer = _streamer(rt, sink, batch=4)
    _events(rt, 3)
    receiver.down = True
    assert streamer.run_once() == 0
    assert streamer.lag()[sink.name] == rt.audit.newest_seq()
    receiver.down = False
    newest = rt.audit.newest_seq()
    assert streamer.run_once() == newest
    assert receiver.seqs() == list(range(1, newest + 1))
    assert all(len(body.splitlines()) <= 4 for body in receiver.bodies)  # in batches
    _no_values(b"".join(receiver.bodies).decode())
    # Someone else's secret: refused by the receiver, so the cursor does not move.
    _events(rt, 1)
    wrong = HttpSink(receiver.url + "-2", "not-the-secret")  # a sink of its own
    other = _streamer(rt, wrong)
    assert other.run_once() == 0 and receiver.bad_signatures == 1


def test_one_process_delivers_a_sink_and_another_takes_over_when_its_lease_ends(
    rt: Runtime, receiver: Receiver
) -> None:
    now = [1000.0]
    first = _streamer(rt, HttpSink(receiver.url, SECRET), clock=lambda: now[0], lease=30)
    second = _streamer(rt, HttpSink(receiver.url, SECRET), clock=lambda: now[0], lease=30)
    _events(rt, 2)
    assert first.run_once() > 0
    _events(rt, 1)
    assert second.run_once() == 0  # the lease is the first process's
    now[0] += 31  # the first process died
    assert second.run_once() > 0
    newest = rt.audit.newest_seq()
    assert receiver.seqs() == list(range(1, newest + 1))


def test_a_hanging_sink_never_holds_a_request(rt: Runtime, receiver: Receiver) -> None:
    receiver.hang.set()
    streamer = _streamer(rt, HttpSink(receiver.url, SECRET), interval=0.05).start()
    try:
        _events(rt, 1)
        time.sleep(0.3)  # the streamer is now waiting on the receiver
        started = time.monotonic()
        _events(rt, 1)
        assert time.monotonic() - started < 2.5  # not the receiver's 3 s
    finally:
        receiver.hang.clear()
        streamer.stop()
    assert receiver.seqs() == sorted(set(receiver.seqs()))


def test_runtime_streams_in_the_background_and_readyz_shows_the_lag(
    database: Database, tmp_path: Path, receiver: Receiver
) -> None:
    from api.app import AppConfig, create_app
    from vault.config import Settings

    provider = new_local_provider(tmp_path / "keys")
    runtime = compose(database.engine, provider, audit_sinks=[HttpSink(receiver.url, SECRET)])
    runtime.policy.seed_default()
    assert runtime.stream is not None
    runtime.stream.interval = 0.1
    client = create_app(AppConfig(Settings(home=tmp_path), runtime=runtime)).test_client()
    receiver.down = True
    _events(runtime, 2)
    runtime.start_maintenance()
    try:
        deadline = time.monotonic() + 5
        while runtime.stream.state and time.monotonic() < deadline:
            sink = client.get("/readyz").json["audit_stream"][0]
            if sink["state"] == "down":
                break
            time.sleep(0.1)
        body = client.get("/readyz")
        assert body.status_code == 200  # a lagging sink does not stop the service
        sink = body.json["audit_stream"][0]
        assert sink["state"] == "down" and sink["lag"] == runtime.audit.newest_seq()
        metrics = client.get("/metrics").text
        assert "pii_vault_audit_stream_lag_events{" in metrics
        receiver.down = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(receiver.seqs()) < runtime.audit.newest_seq():
            time.sleep(0.1)
        assert receiver.seqs() == list(range(1, runtime.audit.newest_seq() + 1))
    finally:
        runtime.close()
        provider.close()
