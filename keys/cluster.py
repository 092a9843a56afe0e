"""Talking to an OpenBao/Vault *cluster*: several addresses, read-your-writes, bounded waits.

An OpenBao 2.x standby serves reads from its own copy of the data, which trails
the active node by tens of milliseconds (a key created on the leader was "not
found" on a follower 60-94 ms later, issue 24). Writes are forwarded to the active
node. So every call here carries the newest consistency index this process has
seen (``X-Vault-Index``, returned by every write) with ``X-Vault-Inconsistent:
forward-active-node``: a node that has not applied our own writes yet forwards the
request to the active node instead of answering from stale state (measured: 0 of
30 dependent calls failed this way, against 5-9 of 30 without; an up-to-date node
answers itself, at no cost). Another *process*'s writes are not covered by our
index: a "not found" for a subject key is therefore asked again at the active node
(``authority``, ``pinned``) before anyone may conclude the key is gone (``keys.transit``).

Several addresses (``PII_VAULT_VAULT_ADDRS``): calls stick to one healthy node and
move to the next on a connection error, a connect timeout, a sealed node (503) or
a standby without a leader; every move is logged and counted. A read timeout does
not move the same call on (a hung leader hangs every node that forwards to it,
so a retry would only double the wait) but the next call starts elsewhere.

Bounded waits: separate connect and read timeouts; a circuit breaker that, after
``BREAKER_FAILURES`` calls in a row failed on every node or timed out, fails calls
fast for ``BREAKER_SECONDS`` and then lets one trial call through (half-open);
and *lanes*, which keep at least one server thread free of Vault calls (both in
``keys.bounded``).

A little past 400 lines: routing, the consistency index, the authority check and the
health probe all read the same per-cluster state (addresses, current node); the breaker
and lanes, which do not, already live in ``keys.bounded``.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import hvac
import requests
from hvac.adapters import JSONAdapter

from keys.bounded import LANES, Breaker
from keys.errors import KeyProviderConfigError, KeyUnavailable

log = logging.getLogger(__name__)

SERVING = frozenset({"active", "standby"})  # node states that can answer calls
PROBE_INTERVAL = 2.0  # seconds between background health probes

INDEX_HEADER = "X-Vault-Index"
INCONSISTENT_HEADER = "X-Vault-Inconsistent"


# -- consistency ----------------------------------------------------------------------


def _index_value(header: str) -> tuple[str, int] | None:
    """OpenBao's index: base64 of {"cluster": id, "value": "<raft index>"}."""
    try:
        body = json.loads(base64.b64decode(header, validate=True))
        return str(body["cluster"]), int(body["value"])
    except (ValueError, KeyError, TypeError):
        return None


class ConsistencyIndex:
    """The newest index this process has seen, per cluster id (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._best: tuple[str, int, str] | None = None  # cluster, value, header

    def seen(self, header: str | None) -> None:
        if not header:
            return
        parsed = _index_value(header)
        if parsed is None:
            return
        cluster, value = parsed
        with self._lock:
            best = self._best
            if best is None or best[0] != cluster or value > best[1]:
                self._best = (cluster, value, header)

    @property
    def header(self) -> str | None:
        best = self._best
        return None if best is None else best[2]


# -- the cluster -------------------------------------------------------------------------


@dataclass
class NodeHealth:
    addr: str
    state: str  # active | standby | sealed | uninitialized | unreachable | error
    leader: bool = False  # the node knows an active node


@dataclass
class ClusterHealth:
    """What the last probe saw; ``reason`` is None when a create would work."""

    nodes: list[NodeHealth]
    reason: str | None
    checked_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return self.reason is None


def parse_addrs(text: str) -> tuple[str, ...]:
    addrs = tuple(a.strip().rstrip("/") for a in text.split(",") if a.strip())
    for addr in addrs:
        if not addr.startswith(("http://", "https://")):
            raise KeyProviderConfigError(f"Vault address must start with http(s)://: {addr!r}")
    if len(set(addrs)) != len(addrs):
        raise KeyProviderConfigError("PII_VAULT_VAULT_ADDRS names an address twice")
    return addrs


_pinned: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pii_vault_vault_pinned", default=None
)


class VaultCluster:
    """One OpenBao/Vault cluster as this process sees it: its addresses, the node calls
    stick to, the consistency index, the breaker, and what the last probe saw."""

    def __init__(
        self,
        addrs: Sequence[str],
        *,
        connect_timeout: float = 1.0,
        timeout: float = 5.0,
        breaker: Breaker | None = None,
    ) -> None:
        if not addrs:
            raise KeyProviderConfigError("VAULT_ADDR is not set")
        self.addrs = tuple(a.rstrip("/") for a in addrs)
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.index = ConsistencyIndex()
        self.breaker = breaker or Breaker()
        self.failovers: Counter[tuple[str, str, str]] = Counter()
        self._current = 0
        self._lock = threading.Lock()
        self._health: ClusterHealth | None = None
        self._probe_token_of: Callable[[], str | None] | None = None
        self._probe_path: str | None = None
        self._prober: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"VaultCluster({', '.join(self.addrs)})"

    # -- routing ---------------------------------------------------------------

    @property
    def current(self) -> str:
        return self.addrs[self._current]

    def order(self) -> list[int]:
        start, n = self._current, len(self.addrs)
        return [(start + i) % n for i in range(n)]

    def failover_counts(self) -> dict[tuple[str, str, str], int]:
        """A copy taken under the lock: a scrape iterating the live Counter while a request
        thread adds a new (from, to, reason) raised 'dictionary changed size' (a 500 from
        /metrics right after a node was killed, seen once in CI)."""
        with self._lock:
            return dict(self.failovers)

    def moved(self, to: int, reason: str) -> None:
        """Calls now go to node ``to`` (it answered after ``reason`` elsewhere)."""
        with self._lock:
            old = self._current
            if old == to:
                return
            self._current = to
            self.failovers[(self.addrs[old], self.addrs[to], reason)] += 1
        log.warning(
            "vault: calls moved from %s to %s (%s)", self.addrs[old], self.addrs[to], reason
        )

    @contextlib.contextmanager
    def pinned(self, addr: str) -> Iterator[None]:
        """Calls made inside go to ``addr`` only (the active node, to confirm an answer)."""
        token = _pinned.set(addr.rstrip("/"))
        try:
            yield
        finally:
            _pinned.reset(token)

    def authority(self) -> str | None:
        """Where an authoritative answer comes from. None: the node we talk to is (not an
        HA cluster, or the active node named by its own address); else the active node's
        address. KeyUnavailable when no node is active: nothing can be confirmed then."""
        current = self.current
        try:
            body = requests.get(
                f"{current}/v1/sys/leader", timeout=(self.connect_timeout, self.timeout)
            ).json()
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise KeyUnavailable(
                "key provider unavailable: cannot ask Vault for its leader"
            ) from exc
        if not body.get("ha_enabled"):
            return None
        leader = str(body.get("leader_address") or "").rstrip("/")
        if not leader:
            raise KeyUnavailable("key provider unavailable: no active Vault node to confirm with")
        return None if leader == current else leader

    def skip(self, frm: int, reason: str) -> None:
        """The next call starts after node ``frm`` (it timed out)."""
        if len(self.addrs) > 1:
            self.moved((frm + 1) % len(self.addrs), reason)

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(
            url=self.addrs[0],
            token=token,
            timeout=(self.connect_timeout, self.timeout),
            adapter=ClusterAdapter,
            cluster=self,
        )

    # -- health ----------------------------------------------------------------

    def _node(self, addr: str) -> NodeHealth:
        timeout = (self.connect_timeout, self.connect_timeout)
        try:
            resp = requests.get(
                f"{addr}/v1/sys/health",
                params={"standbyok": "true", "perfstandbyok": "true"},
                timeout=timeout,
            )
            body = resp.json()
        except requests.exceptions.RequestException:
            return NodeHealth(addr, "unreachable")
        except ValueError:
            return NodeHealth(addr, "error")
        if not body.get("initialized", False):
            return NodeHealth(addr, "uninitialized")
        if body.get("sealed"):
            return NodeHealth(addr, "sealed")
        if not body.get("standby"):
            return NodeHealth(addr, "active", leader=True)
        # A standby that lost quorum still names its last leader: the leader counts only if
        # it answers as active itself.
        try:
            named = str(
                requests.get(f"{addr}/v1/sys/leader", timeout=timeout).json()["leader_address"]
            )
        except (requests.exceptions.RequestException, ValueError, KeyError, TypeError):
            named = ""
        knows = bool(named) and self._active(named.rstrip("/"))
        return NodeHealth(addr, "standby", leader=knows)

    def _active(self, addr: str) -> bool:
        try:
            resp = requests.get(
                f"{addr}/v1/sys/health", timeout=(self.connect_timeout, self.connect_timeout)
            )
            body = resp.json()
        except (requests.exceptions.RequestException, ValueError):
            return False
        return bool(body.get("initialized")) and not body.get("sealed") and not body.get("standby")

    def probe(self, *, real_call: bool = True) -> ClusterHealth:
        """Every node's health (a cheap unauthenticated call each, connect-timeout bound),
        then (``real_call``) one authenticated call through a healthy node that knows a
        leader: what a serving process checks; a CLI command checks the nodes only (`init`
        runs before a shard's service token exists)."""
        nodes = [self._node(a) for a in self.addrs]
        serving = [n for n in nodes if n.state in SERVING]
        reason: str | None = None
        if not serving:
            states = {n.state for n in nodes}
            reason = (
                "sealed"
                if states <= {"sealed", "unreachable"} and "sealed" in states
                else "unreachable"
                if states == {"unreachable"}
                else "not serving: " + ", ".join(sorted(states))
            )
        elif not any(n.leader for n in serving):
            reason = "no leader"
        elif (
            real_call
            and (token := self._probe_token_of() if self._probe_token_of else None)
            and self._probe_path
        ):
            node = next(n for n in serving if n.leader)
            reason = self._real_call(node.addr, token, self._probe_path)
        health = ClusterHealth(nodes, reason)
        self._health = health
        return health

    def _real_call(self, addr: str, token: str, path: str) -> str | None:
        """The authenticated call. (Raft's quorum is not asked: autopilot's per-server health
        flips during every leader change, measured, so it would report false outages. An
        active node that lost its quorum keeps saying it is active until it steps down,
        ~10 s with default timings; that window is documented, not hidden.)"""
        try:
            resp = requests.get(
                f"{addr}{path}",
                headers={"X-Vault-Token": token, "X-Vault-Request": "true"},
                timeout=(self.connect_timeout, self.timeout),
            )
        except requests.exceptions.RequestException:
            return "real call failed"
        return None if resp.status_code == 200 else f"real call refused ({resp.status_code})"

    @property
    def health(self) -> ClusterHealth | None:
        """The last probe's result (the background prober keeps it fresh while serving)."""
        return self._health

    def set_probe(self, token_of: Callable[[], str | None], path: str) -> None:
        """The real call the probe makes: GET ``path`` with the token ``token_of()`` gives.
        The first backend on a cluster sets it (the primary, before shards on its cluster)."""
        if self._probe_path is not None:
            return
        self._probe_token_of = token_of
        self._probe_path = path

    @property
    def probing(self) -> bool:
        return self._prober is not None and self._prober.is_alive()

    def start_probing(self, interval: float = PROBE_INTERVAL) -> None:
        """Probe in the background (one daemon thread per cluster per process), so that
        readiness reads a cached answer and never waits on Vault itself."""
        if self.probing:
            return
        self._stop.clear()
        self.probe()

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.probe()
                except Exception:  # pragma: no cover - a probe never kills the prober
                    log.exception("vault: health probe failed")

        self._prober = threading.Thread(target=run, name="pii-vault-probe", daemon=True)
        self._prober.start()

    def stop_probing(self) -> None:
        self._stop.set()


class ClusterAdapter(JSONAdapter):  # type: ignore[misc]
    """hvac's JSON adapter, sent to the cluster's nodes with failover, the consistency
    index, the breaker and the lanes. Thread-safe: the address is chosen per call."""

    def __init__(self, *args: Any, cluster: VaultCluster, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        # The environment's proxy settings are read once, not on every call: with
        # ``trust_env`` requests looks up ~/.netrc and the proxy variables per request
        # (9% of a key creation's client time, py-spy, issue 21).
        if not self._kwargs.get("proxies"):
            self._kwargs["proxies"] = requests.utils.get_environ_proxies(cluster.addrs[0])
        self.session.trust_env = False

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        raise_exception: bool = True,
        **kwargs: Any,
    ) -> Any:
        cluster = self.cluster
        while "//" in url:
            url = url.replace("//", "/")
        url = "/" + url.lstrip("/")
        headers = dict(headers or {})
        if self.request_header:
            headers["X-Vault-Request"] = "true"
        if self.token:
            headers["X-Vault-Token"] = self.token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        wrap_ttl = kwargs.pop("wrap_ttl", None)
        if wrap_ttl:
            headers["X-Vault-Wrap-TTL"] = str(wrap_ttl)
        index = cluster.index.header
        if index:
            headers[INDEX_HEADER] = index
            headers[INCONSISTENT_HEADER] = "forward-active-node"
        options = {**self._kwargs, **kwargs}
        options["timeout"] = (cluster.connect_timeout, cluster.timeout)
        cluster.breaker.before()
        LANES.take()
        failed: str | None = None
        last: requests.Response | None = None
        error: requests.exceptions.RequestException | None = None
        pin = _pinned.get()
        for node in [-1] if pin else cluster.order():
            try:
                response = self.session.request(
                    method=method,
                    url=f"{pin or cluster.addrs[node]}{url}",
                    headers=headers,
                    allow_redirects=self.allow_redirects,
                    **options,
                )
            except requests.exceptions.ReadTimeout:
                cluster.breaker.failure()
                if not pin:
                    cluster.skip(node, "timeout")
                raise
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                error, failed = exc, failed or "unreachable"
                continue
            if _node_cannot_serve(response):
                last, failed = response, failed or _why(response)
                continue
            if failed is not None and not pin:
                cluster.moved(node, failed)
            cluster.breaker.success()
            cluster.index.seen(response.headers.get(INDEX_HEADER))
            if not response.ok and raise_exception and not self.ignore_exceptions:
                self._raise_for_error(method, url, response)
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    pass
            return response
        cluster.breaker.failure()
        if last is not None:
            if raise_exception and not self.ignore_exceptions:
                self._raise_for_error(method, url, last)
            return last
        assert error is not None
        raise error


def _node_cannot_serve(response: requests.Response) -> bool:
    """Sealed (503), or a standby that knows no active node (500 'not active but active
    cluster node not found'): another node may serve the call."""
    if response.status_code == 503:
        return True
    if response.status_code == 500:
        text = response.text.lower()
        return "active cluster node not found" in text or "node not active" in text
    return False


def _why(response: requests.Response) -> str:
    return "sealed" if response.status_code == 503 else "no leader"


def clusters_of(backend: object) -> list[VaultCluster]:
    """The Vault clusters a key backend talks to (none for the local provider)."""
    clusters = getattr(backend, "clusters", None)
    return list(clusters()) if callable(clusters) else []
