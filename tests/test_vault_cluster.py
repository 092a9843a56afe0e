"""The cluster client's parts on one real OpenBao (dev mode) and dead or hung addresses:
failover, the consistency index, the circuit breaker, lanes, the readiness probe, settings
(issue 24). The three-node behaviour is in tests/test_ha_cluster.py."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.demo.openbao import free_port
from keys.bounded import LANE_WAIT, LANES, Breaker, CircuitOpen, Lanes, in_context
from keys.cluster import ConsistencyIndex, VaultCluster, _index_value, parse_addrs
from keys.errors import KeyDestroyed, KeyProviderConfigError, KeyUnavailable
from keys.local import LocalKeyProvider
from keys.provider import DataKey
from keys.transit import TransitKeyProvider
from tests.conftest import OpenBaoServer
from tests.faultproxy import FaultProxy
from vault.config import Settings
from vault.errors import ConfigError, KeyProviderUnavailable

# A real X-Vault-Index from OpenBao 2.7 (a Raft cluster): cluster id and raft index 49.
KNOWN_INDEX = "eyJjbHVzdGVyIjoiMTg2NjZjMTktMDZlOS0yZDMyLTc5MzEtYzI2NmQ1YTM1NTJkIiwidmFsdWUiOiI0OSJ9"


def _index(cluster: str, value: int) -> str:
    return base64.b64encode(json.dumps({"cluster": cluster, "value": str(value)}).encode()).decode()


def test_known_index_decodes() -> None:
    assert _index_value(KNOWN_INDEX) == ("18666c19-06e9-2d32-7931-c266d5a3552d", 49)
    assert _index_value("not base64!") is None
    assert _index_value(base64.b64encode(b"[]").decode()) is None


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=20))
def test_the_newest_index_wins(values: list[int]) -> None:
    index = ConsistencyIndex()
    for v in values:
        index.seen(_index("c1", v))
    assert index.header is not None and _index_value(index.header) == ("c1", max(values))


def test_addresses_are_parsed_strictly() -> None:
    assert parse_addrs(" http://a:1, https://b:2/ ") == ("http://a:1", "https://b:2")
    with pytest.raises(KeyProviderConfigError):
        parse_addrs("a:1")
    with pytest.raises(KeyProviderConfigError):
        parse_addrs("http://a:1,http://a:1")
    base = {"PII_VAULT_KEY_PROVIDER": "transit"}
    with pytest.raises(ConfigError, match="PII_VAULT_VAULT_ADDRS"):
        Settings.from_env({**base, "VAULT_ADDR": "http://a:1,http://b:2"})
    with pytest.raises(ConfigError, match="PII_VAULT_VAULT_TIMEOUT"):
        Settings.from_env({**base, "PII_VAULT_VAULT_TIMEOUT": "0"})
    settings = Settings.from_env(
        {
            **base,
            "PII_VAULT_VAULT_ADDRS": "http://a:1,http://b:2",
            "PII_VAULT_VAULT_TIMEOUT": "3",
            "PII_VAULT_VAULT_CONNECT_TIMEOUT": "0.5",
        }
    )
    assert settings.keys.addrs == ("http://a:1", "http://b:2")
    assert (settings.keys.timeout, settings.keys.connect_timeout) == (3.0, 0.5)


@pytest.mark.openbao
def test_calls_fail_over_from_a_dead_address_and_stick(openbao: OpenBaoServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    cluster = VaultCluster([dead, openbao.addr], connect_timeout=0.5, timeout=5)
    provider = TransitKeyProvider(cluster, openbao.service_token)
    sid = str(uuid.uuid4())
    provider.create_subject_key(sid)
    assert cluster.current == openbao.addr  # moved once, then sticks
    assert cluster.failovers == {(dead, openbao.addr, "unreachable"): 1}
    key = provider.generate_data_key(sid)
    assert provider.unwrap_data_key(sid, key.wrapped) == key.plaintext
    assert sum(cluster.failovers.values()) == 1
    provider.destroy_subject_key(sid)


def test_every_address_dead_is_unavailable_fast() -> None:
    addrs = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    provider = TransitKeyProvider(VaultCluster(addrs, connect_timeout=0.5, timeout=5), "t")
    started = time.monotonic()
    with pytest.raises(KeyUnavailable):
        provider.generate_data_key(str(uuid.uuid4()))
    assert time.monotonic() - started < 3


@pytest.mark.openbao
def test_a_hung_vault_trips_the_breaker(openbao: OpenBaoServer) -> None:
    """Read timeouts (a black hole after connect): three, then calls fail at once; after
    the cool-down one trial call goes through and, Vault back, closes the circuit."""
    port = int(openbao.addr.rsplit(":", 1)[1])
    proxy = FaultProxy("127.0.0.1", port)
    try:
        cluster = VaultCluster(
            [f"http://{proxy.addr}"], connect_timeout=0.5, timeout=0.5, breaker=Breaker(3, 1.0)
        )
        provider = TransitKeyProvider(cluster, openbao.service_token)
        sid = str(uuid.uuid4())
        provider.create_subject_key(sid)
        proxy.set("hang")
        for _ in range(3):
            with pytest.raises(KeyUnavailable):
                provider.generate_data_key(sid)
        assert cluster.breaker.state == "open"
        started = time.monotonic()
        with pytest.raises(CircuitOpen):
            provider.generate_data_key(sid)
        assert time.monotonic() - started < 0.1  # failed fast, no wait on Vault
        proxy.set("pass")
        time.sleep(1.1)
        assert cluster.breaker.state == "half_open"
        provider.generate_data_key(sid)  # the trial call succeeds
        assert cluster.breaker.state == "closed" and cluster.breaker.opened == 1
        provider.destroy_subject_key(sid)
    finally:
        proxy.close()


def test_breaker_half_open_lets_one_trial_through() -> None:
    breaker = Breaker(2, 0.05)
    breaker.failure()
    breaker.before()  # still closed after one failure
    breaker.failure()
    with pytest.raises(CircuitOpen):
        breaker.before()
    time.sleep(0.06)
    breaker.before()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before()  # a second caller while the trial runs
    breaker.failure()  # the trial failed: open again
    with pytest.raises(CircuitOpen):
        breaker.before()


@pytest.fixture
def lanes() -> Iterator[Lanes]:
    lanes = Lanes()
    lanes.configure(1)
    yield lanes


def test_lanes_keep_a_thread_free(lanes: Lanes) -> None:
    """One lane: a request that holds it (waiting on Vault) makes another request needing
    Vault fail fast, while a request needing no Vault call is never touched."""
    holding, release = threading.Event(), threading.Event()

    def first_request() -> None:
        with lanes.request():
            lanes.take()
            holding.set()
            release.wait(5)

    t = threading.Thread(target=first_request)
    t.start()
    holding.wait(5)
    try:
        with lanes.request():
            started = time.monotonic()
            with pytest.raises(KeyUnavailable, match="waiting on Vault"):
                lanes.take()
            assert time.monotonic() - started < LANE_WAIT + 0.2
        lanes.take()  # outside a request (CLI, maintenance): never limited
    finally:
        release.set()
        t.join()
    with lanes.request():
        lanes.take()  # free again
    assert lanes.rejected == 1


def test_a_request_and_its_pool_threads_share_one_lane(lanes: Lanes) -> None:
    with lanes.request():
        lanes.take()
        worker = threading.Thread(target=in_context(lanes.take))
        worker.start()
        worker.join()
    assert lanes.rejected == 0


def test_the_process_lanes_are_unlimited_until_configured() -> None:
    assert LANES.size == 0 or LANES.size >= 1
    with Lanes().request():
        Lanes().take()


def test_probe_of_a_dead_address_says_unreachable() -> None:
    cluster = VaultCluster([f"http://127.0.0.1:{free_port()}"], connect_timeout=0.3)
    health = cluster.probe()
    assert health.reason == "unreachable"
    assert [n.state for n in health.nodes] == ["unreachable"]


@pytest.mark.openbao
def test_probe_of_a_healthy_server_is_ready_and_sealed_says_sealed(
    own_openbao: OpenBaoServer,
) -> None:
    provider = TransitKeyProvider(own_openbao.addr, own_openbao.service_token)
    provider.check()
    cluster = provider.cluster
    cluster.start_probing(interval=0.2)
    try:
        assert cluster.health is not None and cluster.health.ready
        own_openbao.server.seal()
        deadline = time.monotonic() + 10
        while cluster.health is None or cluster.health.reason != "sealed":
            assert time.monotonic() < deadline, cluster.health
            time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(KeyUnavailable, match="sealed"):
            provider.check()  # from the cached probe: no wait
        assert time.monotonic() - started < 0.1
    finally:
        cluster.stop_probing()
        own_openbao.server.unseal()


class _LaggingKeys(LocalKeyProvider):
    """A backend whose new keys are 'not found' for data keys: a standby that never
    catches up within the confirmation window."""

    def generate_data_key(self, subject_id: str) -> DataKey:
        raise KeyDestroyed("subject key does not exist")


def test_not_found_while_creating_is_503_not_410(tmp_path: object) -> None:
    from pathlib import Path

    from vault.db import make_engine, migrate
    from vault.service import VaultService

    home = Path(str(tmp_path))
    engine = make_engine(f"sqlite:///{home / 'v.db'}")
    migrate(engine)
    keys = _LaggingKeys.open(home, None)
    service = VaultService(engine, keys, keys)
    try:
        with pytest.raises(KeyProviderUnavailable, match="not visible in Vault yet"):
            service.create_subject({"email": "a@example.com"})
        with pytest.raises(KeyProviderUnavailable, match="not visible in Vault yet"):
            service.tokenize(
                [service.validator.prepare({"email": "b@example.com"}, external_id="x")]
            )
    finally:
        service.close()


@pytest.mark.openbao
def test_a_single_server_is_its_own_authority(openbao: OpenBaoServer) -> None:
    """Not an HA cluster: its "not found" is final at once (no confirmation round trip)."""
    provider = TransitKeyProvider(openbao.addr, openbao.service_token)
    assert provider.cluster.authority() is None
    started = time.monotonic()
    assert not provider.subject_key_exists(str(uuid.uuid4()))
    assert time.monotonic() - started < 0.5


def test_no_answer_about_the_leader_is_unavailable_not_gone() -> None:
    cluster = VaultCluster([f"http://127.0.0.1:{free_port()}"], connect_timeout=0.3)
    with pytest.raises(KeyUnavailable):
        cluster.authority()


def test_a_scrape_reads_failovers_while_calls_move() -> None:
    """CI saw /metrics answer 500 just after a node was killed: the scrape iterated the
    live failover Counter while a request thread added a new (from, to, reason)."""
    cluster = VaultCluster(["http://127.0.0.1:1", "http://127.0.0.1:2"], connect_timeout=0.5)
    cluster.moved(1, "unreachable")
    for _ in cluster.failover_counts().items():  # a request moves calls mid-scrape
        cluster.moved(0, "sealed")
    assert cluster.failover_counts() == {
        ("http://127.0.0.1:1", "http://127.0.0.1:2", "unreachable"): 1,
        ("http://127.0.0.1:2", "http://127.0.0.1:1", "sealed"): 1,
    }
