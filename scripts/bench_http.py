"""HTTP benchmark: pii-vault against calling OpenBao directly, in one run (issue 11).

Starts a dev-mode OpenBao and `pii-vault serve --workers W` itself, on SQLite and
PostgreSQL, seeds subjects, warms the data-key cache, then measures with C client
threads (keep-alive connections):

* batch detokenize (400 tokens per request), fields/s
* single-token detokenize, requests/s, p50/p99 (and p99 at concurrency 4)
* create a subject with 3 fields, /s

against, at the same concurrency, OpenBao's own rate of ``transit/decrypt`` (one per
field: the naive design) and of creating a transit key plus a data key (the
irreducible cost of a per-subject key). Prints a Markdown report.

    python scripts/bench_http.py --seconds 10 --workers 2 4 --databases sqlite postgresql
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
from sqlalchemy import create_engine, text

from access.runtime import open_runtime
from api.demo.openbao import ManagedOpenBao, free_port
from api.demo.serve import ServedVault, transit_env
from vault.config import Settings
from vault.db import normalize_url

POSTGRES = os.environ.get(
    "PII_VAULT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BATCH = 400
# Keep-alive connections stay with the worker that accepted them: with 2 clients both
# could land on one worker (one core) and the run measures that. Reconnecting every
# few requests spreads them, as a load balancer's many connections would.
RECONNECT_EVERY = 20
TOKENIZE_SIZES = (1, 10, 100)  # new subjects per /v1/tokenize request


def phone() -> str:
    return "+44207" + str(uuid.uuid4().int)[:7]


TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> tuple[float, int, str]:
    """(CPU seconds, process group, command name) of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[2]), name


class CpuMeter:
    """CPU seconds spent per party during a phase: the server (its process group),
    OpenBao, PostgreSQL (every ``postgres`` process) and the benchmark's own client
    threads. Tells whether a phase is bound by the machine's two cores, and whose."""

    def __init__(self, openbao_pid: int, server_group: int | None = None) -> None:
        self.openbao_pid, self.server_group = openbao_pid, server_group

    def sample(self) -> dict[str, float]:
        out = {"server": 0.0, "openbao": 0.0, "postgresql": 0.0}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cpu, group, name = _proc_cpu(int(entry))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if int(entry) == self.openbao_pid:
                out["openbao"] += cpu
            elif self.server_group is not None and group == self.server_group:
                out["server"] += cpu
            elif name == "postgres":
                out["postgresql"] += cpu
        t = os.times()
        out["client"] = t.user + t.system
        out["wall"] = time.monotonic()
        return out

    @staticmethod
    def per_unit(before: dict[str, float], after: dict[str, float], units: float) -> str:
        """'server 1.2 / OpenBao 0.3 / PostgreSQL 0.1 / client 0.4 ms per unit, cores 1.9'."""
        d = {k: after[k] - before[k] for k in before}
        busy = sum(v for k, v in d.items() if k != "wall") / max(d["wall"], 1e-9)
        parts = " / ".join(
            f"{label} {d[k] / max(units, 1) * 1000:.2f}"
            for k, label in (
                ("server", "server"),
                ("openbao", "OpenBao"),
                ("postgresql", "PostgreSQL"),
                ("client", "client"),
            )
        )
        return f"{parts} ms; {busy:.2f} cores busy"


def run_clients(
    clients: int, seconds: float, op: Callable[[Any], int], meter: CpuMeter | None = None
) -> tuple[float, list[float]]:
    """Each client runs ``op(state)`` (units done) until time is up: (units/s, latencies).

    With ``meter``, the phase's CPU per unit is kept in ``run_clients.cpu`` (last phase)."""
    latencies: list[float] = []
    units = [0] * clients
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        state: dict[str, Any] = {}
        mine: list[float] = []
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            units[i] += op(state)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    before = meter.sample() if meter is not None else None
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if meter is not None and before is not None:
        CPU_REPORT.append(CpuMeter.per_unit(before, meter.sample(), sum(units)))
    return sum(units) / elapsed, latencies


CPU_REPORT: list[str] = []


class LockWaits:
    """Samples pg_stat_activity while a phase runs: how many of the server's backends are
    active, and how many of those wait on a lock (the audit head row, above all). Tells
    whether a flat curve is the head row or the CPU."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(normalize_url(url))
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = text(
            "SELECT count(*) FILTER (WHERE state = 'active'), "
            "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') "
            "FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        # Autocommit: inside one transaction pg_stat_activity is a snapshot taken once.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self._stop.wait(0.01):
                active, waiting = conn.execute(query).one()
                self.samples.append((int(active), int(waiting)))

    def __enter__(self) -> LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()

    def summary(self) -> str:
        if not self.samples:
            return "-"
        n = len(self.samples)
        active = sum(a for a, _ in self.samples) / n
        waiting = sum(w for _, w in self.samples) / n
        share = sum(1 for _, w in self.samples if w) / n
        return (
            f"{active:.2f} active backends, {waiting:.2f} waiting on a lock "
            f"({share:.0%} of samples)"
        )


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key

    def post(self, state: dict[str, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn = state.get("conn")
        state["n"] = state.get("n", 0) + 1
        if conn is not None and state["n"] % RECONNECT_EVERY == 0:
            conn.close()  # a new connection now and then: gunicorn workers each get a share
            conn = None
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        payload = json.dumps(body)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        try:
            conn.request("POST", path, payload, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError):
            state.pop("conn", None)
            conn.close()
            raise
        if resp.status >= 300:
            raise RuntimeError(f"{path}: {resp.status} {data[:200]!r}")
        return json.loads(data)  # type: ignore[no-any-return]


def get(port: int, state: dict[str, Any], path: str) -> None:
    """One unauthenticated GET on a keep-alive connection (the framework floor)."""
    conn = state.get("conn")
    state["n"] = state.get("n", 0) + 1
    if conn is not None and state["n"] % RECONNECT_EVERY == 0:
        conn.close()
        conn = None
    if conn is None:
        conn = state["conn"] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status}")


def openbao_baselines(
    bao: ManagedOpenBao, token: str, clients: int, seconds: float
) -> dict[str, Any]:
    root = bao.client()
    setup = f"bench-{uuid.uuid4().hex[:6]}"
    root.secrets.transit.create_key(setup, mount_point="transit")
    wrapped = root.secrets.transit.generate_data_key(
        setup, key_type="wrapped", mount_point="transit"
    )
    ciphertext = wrapped["data"]["ciphertext"]

    def decrypt(state: dict[str, Any]) -> int:
        c = state.setdefault("c", hvac.Client(url=bao.addr, token=bao.root_token))
        c.secrets.transit.decrypt_data(setup, ciphertext, mount_point="transit")
        return 1

    def create(state: dict[str, Any]) -> int:
        c = state.setdefault("c", hvac.Client(url=bao.addr, token=bao.root_token))
        name = f"bench-{uuid.uuid4().hex}"
        c.secrets.transit.create_key(name, mount_point="transit")
        c.secrets.transit.generate_data_key(name, key_type="plaintext", mount_point="transit")
        return 1

    meter = CpuMeter(bao.pid)
    decrypt_rate, _ = run_clients(clients, seconds, decrypt, meter)
    create_rate, _ = run_clients(clients, seconds, create, meter)
    return {"decrypt": decrypt_rate, "create": create_rate, "cpu": CPU_REPORT[-2:]}


def bench_server(
    bao: ManagedOpenBao,
    token: str,
    database: str,
    workers: int,
    clients: int,
    seconds: float,
    work: Path,
    http_server: str = "gunicorn",
) -> dict[str, Any]:
    home = work / f"home-{database}-{workers}-{http_server}"
    env = transit_env(
        work,
        bao.addr,
        token,
        home=home,
        PII_VAULT_LOOKUP_FAILURE_BUDGET="1000000",
        PII_VAULT_READ_BUDGET="100000000/1000000000",  # the benchmark reads far past a day's
        PII_VAULT_DEK_CACHE_SIZE="65536",
    )
    schema = None
    if database == "postgresql":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with create_engine(normalize_url(POSTGRES)).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        env["PII_VAULT_DATABASE_URL"] = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    runtime = open_runtime(Settings.from_env(env), migrate=True)
    runtime.policy.seed_default()
    reg = runtime.principals.create("svc:reg", ["registration-service"])[1]
    chk = runtime.principals.create("svc:chk", ["checkout-service"])[1]
    runtime.close()
    port = free_port()
    server = ServedVault(env, port, workers=workers, server=http_server).start()
    try:
        writer, reader = Client(port, reg), Client(port, chk)
        tokens: list[str] = []
        state: dict[str, Any] = {}
        for _ in range(5):  # 1,000 subjects with a phone each
            records = [
                {"external_id": uuid.uuid4().hex, "fields": {"phone": phone()}} for _ in range(200)
            ]
            out = writer.post(
                state, "/v1/tokenize", {"purpose": "account_registration", "records": records}
            )
            tokens += [r["tokens"]["phone"] for r in out["results"]]
        if schema is not None:
            with create_engine(normalize_url(POSTGRES)).begin() as conn:
                conn.execute(text("ANALYZE"))
        for i in range(0, len(tokens), BATCH):  # warm every worker's cache (several passes)
            for _ in range(workers * 2):
                reader.post(
                    state,
                    "/v1/detokenize",
                    {"purpose": "order_fulfillment", "tokens": tokens[i : i + BATCH]},
                )
        counter = {"i": 0}

        def batch(st: dict[str, Any]) -> int:
            counter["i"] = (counter["i"] + 1) % (len(tokens) // BATCH)
            start = counter["i"] * BATCH
            reader.post(
                st,
                "/v1/detokenize",
                {"purpose": "order_fulfillment", "tokens": tokens[start : start + BATCH]},
            )
            return BATCH

        def single(st: dict[str, Any]) -> int:
            counter["i"] = (counter["i"] + 1) % len(tokens)
            reader.post(
                st,
                "/v1/detokenize",
                {"purpose": "order_fulfillment", "tokens": [tokens[counter["i"]]]},
            )
            return 1

        def create(st: dict[str, Any]) -> int:
            writer.post(
                st,
                "/v1/subjects",
                {
                    "purpose": "account_registration",
                    "external_id": uuid.uuid4().hex,
                    "fields": {
                        "phone": phone(),
                        "full_name": "Bench Mark",
                        "email": f"{uuid.uuid4().hex[:10]}@example.com",
                    },
                },
            )
            return 1

        def floor(st: dict[str, Any]) -> int:
            get(port, st, "/healthz")  # no authentication, no database: gunicorn + Flask only
            return 1

        assert server.process is not None
        meter = CpuMeter(bao.pid, server.process.pid)
        floor_rate, floor_lat = run_clients(clients, seconds, floor, meter)
        batch_rate, _ = run_clients(clients, seconds, batch, meter)

        def tokenize_new(size: int) -> Callable[[dict[str, Any]], int]:
            def op(st: dict[str, Any]) -> int:
                records = [
                    {"external_id": uuid.uuid4().hex, "fields": {"phone": phone()}}
                    for _ in range(size)
                ]
                writer.post(
                    st, "/v1/tokenize", {"purpose": "account_registration", "records": records}
                )
                return size

            return op

        tokenize_rates = {
            size: run_clients(clients, seconds / 2, tokenize_new(size))[0]
            for size in TOKENIZE_SIZES
        }
        if database == "postgresql":
            with LockWaits(POSTGRES) as waits:
                single_rate, single_lat = run_clients(clients, seconds, single, meter)
            lock_waits = waits.summary()
        else:
            single_rate, single_lat = run_clients(clients, seconds, single, meter)
            lock_waits = "-"
        _, single4_lat = run_clients(4, seconds, single)
        create_rate, create_lat = run_clients(clients, seconds, create, meter)
        return {
            "tokenize": tokenize_rates,
            "lock_waits": lock_waits,
            "cpu": CPU_REPORT[-4:],
            "floor": floor_rate,
            "floor_p50": pct(floor_lat, 0.5),
            "batch": batch_rate,
            "single": single_rate,
            "single_p50": pct(single_lat, 0.5),
            "single_p99": pct(single_lat, 0.99),
            "single4_p99": pct(single4_lat, 0.99),
            "create": create_rate,
            "create_p50": pct(create_lat, 0.5),
            "create_p99": pct(create_lat, 0.99),
        }
    finally:
        server.stop()
        if schema is not None:
            with create_engine(normalize_url(POSTGRES)).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--servers", nargs="+", default=["gunicorn"], help="gunicorn granian")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pii-bench-http-"))
    with ManagedOpenBao(work / "bao") as bao:
        token = bao.bootstrap()
        base = openbao_baselines(bao, token, args.clients, args.seconds)
        print(
            f"# bench_http — {platform.node()}, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, {args.clients} clients, {args.seconds:.0f} s each"
        )
        print(
            f"\nOpenBao directly: transit/decrypt {base['decrypt']:,.0f}/s; "
            f"create key + data key {base['create']:,.0f}/s\n"
        )
        print(
            "| database | workers | batch fields/s (xnaive) | single req/s (xnaive) | "
            "single p50/p99 ms | p99 @c4 ms | create /s (xOpenBao) | create p50/p99 ms | "
            "floor: /healthz req/s (p50 ms) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        waits: list[str] = []
        tokenize: list[str] = []
        cpu = [
            f"| OpenBao directly | transit/decrypt | {base['cpu'][0]} |",
            f"| OpenBao directly | create key + data key | {base['cpu'][1]} |",
        ]
        for database, workers, http_server in (
            (d, w, h) for d in args.databases for w in args.workers for h in args.servers
        ):
            r = bench_server(
                bao, token, database, workers, args.clients, args.seconds, work, http_server
            )
            if len(args.servers) > 1:
                database = f"{database} ({http_server})"
            for phase, line in zip(
                ("/healthz", "batch (per field)", "single", "create"), r["cpu"], strict=True
            ):
                cpu.append(f"| {database}, {workers} workers | {phase} | {line} |")
            tokenize.append(
                f"| {database} | {workers} | "
                + " | ".join(f"{r['tokenize'][n]:,.0f}" for n in TOKENIZE_SIZES)
                + " |"
            )
            if r["lock_waits"] != "-":
                waits.append(f"| {workers} | {r['lock_waits']} |")
            print(
                f"| {database} | {workers} "
                f"| {r['batch']:,.0f} ({r['batch'] / base['decrypt']:.1f}x) "
                f"| {r['single']:,.0f} ({r['single'] / base['decrypt']:.2f}x) "
                f"| {r['single_p50']:.1f} / {r['single_p99']:.1f} | {r['single4_p99']:.1f} "
                f"| {r['create']:,.0f} ({r['create'] / base['create']:.2f}x) "
                f"| {r['create_p50']:.1f} / {r['create_p99']:.1f} "
                f"| {r['floor']:,.0f} ({r['floor_p50']:.1f}) |",
                flush=True,
            )
        print("\nCPU per operation (ms of CPU time by each party during the phase):\n")
        print("| run | phase | server / OpenBao / PostgreSQL / client ms; cores busy |")
        print("|---|---|---|")
        print("\n".join(cpu))
        print("\nNew subjects per second through /v1/tokenize, by records per request:\n")
        print("| database | workers | " + " | ".join(str(n) for n in TOKENIZE_SIZES) + " |")
        print("|---|---|" + "---|" * len(TOKENIZE_SIZES))
        print("\n".join(tokenize))
        if waits:
            print("\nPostgreSQL during single detokenize (pg_stat_activity every 10 ms):\n")
            print("| workers | backends |")
            print("|---|---|")
            print("\n".join(waits))


if __name__ == "__main__":
    main()
