"""Prometheus metrics: requests and latencies by endpoint, decisions, Vault calls, DEK cache.

Each app has its own registry (tests build many apps). Under ``pii-vault serve`` every
worker is a process of its own and a scrape lands on any one of them, so the server sets
``PROMETHEUS_MULTIPROC_DIR`` (issue 22: counters used to jump between scrapes):
prometheus-client's multiprocess mode keeps every worker's counters and histograms in
files there and ``/metrics`` reports their sum. The counters the vault keeps itself
(Vault calls, cache hits, refusals...) are mirrored into multiprocess counters by each
worker (at every scrape it answers and every few seconds). Gauges read from the
database or Vault's health are the answering worker's reading; ``dek_cache_entries``
is the answering worker's own cache.
"""

from __future__ import annotations

import atexit
import collections
import glob
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from access.decisions import FieldDecision
from access.runtime import Runtime
from keys.bounded import LANES
from keys.cluster import SERVING, clusters_of
from vault.errors import ServiceUnavailable
from vault.retention import overdue_count


def _vault_cluster_metrics(runtime: Runtime) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Failovers between Vault nodes, the circuit breaker, lanes, and each node's state."""
    clusters = clusters_of(runtime.backend)
    if not clusters:
        return
    moves = CounterMetricFamily(
        "pii_vault_vault_failovers",
        "Times calls moved from one Vault node to another, by reason",
        labels=["from_node", "to_node", "reason"],
    )
    opened = CounterMetricFamily(
        "pii_vault_vault_breaker_opened", "Times the Vault circuit breaker opened", labels=["node"]
    )
    rejected = CounterMetricFamily(
        "pii_vault_vault_breaker_rejected",
        "Vault calls failed fast by the open circuit breaker",
        labels=["node"],
    )
    state = GaugeMetricFamily(
        "pii_vault_vault_node_up",
        "1 if the node's last probe found it serving (active or standby), by state",
        labels=["node", "state"],
    )
    for cluster in clusters:
        for (frm, to, reason), count in cluster.failover_counts().items():
            moves.add_metric([frm, to, reason], count)
        first = cluster.addrs[0]
        opened.add_metric([first], cluster.breaker.opened)
        rejected.add_metric([first], cluster.breaker.rejected)
        health = cluster.health
        for node in health.nodes if health is not None else ():
            state.add_metric([node.addr, node.state], 1 if node.state in SERVING else 0)
    yield moves
    yield opened
    yield rejected
    yield state
    yield CounterMetricFamily(
        "pii_vault_vault_lane_rejections",
        "Requests failed fast because every request thread was waiting on Vault",
        value=LANES.rejected,
    )


log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_MIRROR_SECONDS = 5.0


def prepare_multiprocess(directory: str | None = None) -> str:
    """In the server's master, before any worker starts: the directory the workers' metric
    files go in (the operator's ``PROMETHEUS_MULTIPROC_DIR``, else a private temporary
    one), emptied of an earlier run's files, and set for the workers to inherit."""
    path = directory or os.environ.get(MULTIPROC_ENV) or ""
    if not path:
        path = tempfile.mkdtemp(prefix="pii-metrics-")
        master = os.getpid()  # forked workers inherit atexit hooks: only the master removes it

        def remove() -> None:
            if os.getpid() == master:
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(remove)
    os.makedirs(path, mode=0o700, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = path
    return path


_values_pid = 0


def _multiprocess_values() -> bool:
    """Whether this process runs under a multiprocess server; if so, metric values go to
    files from here on (prometheus-client picks its value class at import, which in a
    worker happened before the directory was known to it)."""
    global _values_pid
    if not os.environ.get(MULTIPROC_ENV):
        return False
    if _values_pid != os.getpid():
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        _values_pid = os.getpid()
    return True


class _RuntimeCollector(Collector):
    """Reads the live counters the vault already keeps, at scrape time."""

    def __init__(self, runtime: Runtime, *, counters: bool = True) -> None:
        self.runtime = runtime
        self.counters = counters  # False: gauges only (counters come from the mirror)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for family in self._collect():
            if self.counters or not isinstance(family, CounterMetricFamily):
                yield family

    def _collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        vault = self.runtime.vault
        yield CounterMetricFamily(
            "pii_vault_key_provider_calls",
            "Calls made to the key provider (Vault)",
            value=self.runtime.key_calls.count,
        )
        stats = vault.cache.stats
        yield CounterMetricFamily(
            "pii_vault_dek_cache_hits", "Data-key cache hits", value=stats.hits
        )
        yield CounterMetricFamily(
            "pii_vault_dek_cache_misses", "Data-key cache misses", value=stats.misses
        )
        yield GaugeMetricFamily(
            "pii_vault_dek_cache_entries", "Data keys cached now", value=len(vault.cache)
        )
        yield CounterMetricFamily(
            "pii_vault_failed_lookup_budget_trips",
            "Detokenize requests refused because the caller's failed-lookup budget was spent",
            value=self.runtime.budget.trips,
        )
        auth = self.runtime.backend.auth_state
        if auth is not None:
            yield CounterMetricFamily(
                "pii_vault_vault_auth_failures",
                "Vault token renewals or logins that failed (alert on any increase)",
                value=auth.failures,
            )
            yield CounterMetricFamily(
                "pii_vault_vault_auth_renewals", "Vault token renewals", value=auth.renewals
            )
            ttl = auth.ttl()
            if ttl is not None:
                yield GaugeMetricFamily(
                    "pii_vault_vault_token_ttl_seconds", "Seconds the Vault token has left", ttl
                )
        overdue: int | None
        damaged: int | None
        try:
            damaged = self.runtime.vault.damaged_count()
            overdue = overdue_count(self.runtime.vault.tx)
        except ServiceUnavailable:
            damaged = overdue = None  # the database is down: /readyz says so; no stale figure
        if overdue is not None:
            yield GaugeMetricFamily(
                "pii_vault_values_overdue",
                "Values past their retention period not yet purged (never returned by a read; "
                "alert when it stays above 0)",
                value=overdue,
            )
        if damaged is not None:
            yield GaugeMetricFamily(
                "pii_vault_damaged_subjects",
                "Subjects whose key is missing though never shredded (data lost; alert on > 0)",
                value=damaged,
            )
        yield from _vault_cluster_metrics(self.runtime)
        stream = self.runtime.stream
        if stream is not None:
            lag = GaugeMetricFamily(
                "pii_vault_audit_stream_lag_events",
                "Audit events committed but not yet taken by the sink (alert when it grows)",
                labels=["sink"],
            )
            try:
                for sink, behind in stream.lag().items():
                    lag.add_metric([sink], behind)
                yield lag
            except ServiceUnavailable:
                pass  # the database is down: no stale figure
        yield CounterMetricFamily(
            "pii_vault_audit_anchor_failures",
            "Audit anchors that could not be written (each is retried)",
            value=self.runtime.audit.anchor_failures,
        )
        forged = CounterMetricFamily(
            "pii_vault_forged_grants",
            "Grant rows refused for a tag that does not verify (written with SQL; alert on > 0)",
            labels=["kind"],
        )
        for kind in ("principal", "rule", "rule_set", "state", "stale_principal"):
            forged.add_metric([kind], self.runtime.policy.seal.forged[kind])
        yield forged
        refused = CounterMetricFamily(
            "pii_vault_budget_refusals",
            "Reveals (per person per purpose per day) and console searches (per person per "
            "minute) refused for a spent budget; alert on any reveal refusal",
            labels=["kind"],
        )
        for kind in ("reveal", "search"):
            refused.add_metric([kind], self.runtime.usage.refusals[kind])
        yield refused


class _Mirror:
    """The vault's own counters of this worker, carried into multiprocess counters (by
    increments: a worker's files keep counting after it is gone, as a counter should)."""

    def __init__(self, runtime: Runtime) -> None:
        self._source = _RuntimeCollector(runtime)
        self._counters: dict[str, Counter] = {}
        self._seen: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            for family in self._source.collect():
                if not isinstance(family, CounterMetricFamily) or not family.samples:
                    # Not made before its first sample: its label names come from that
                    # sample. A family first seen empty (the Vault failovers, until one
                    # happens) got a counter without labels, and its first sample then
                    # raised ValueError in every scrape (a 500 from /metrics in CI).
                    continue
                labels = list(family.samples[0].labels)
                counter = self._counters.get(family.name)
                if counter is None:
                    counter = self._counters[family.name] = Counter(
                        family.name, family.documentation, labels, registry=None
                    )
                for sample in family.samples:
                    if not sample.name.endswith("_total"):
                        continue  # the _created sample
                    key = (family.name, tuple(sample.labels[k] for k in labels))
                    delta = sample.value - self._seen.get(key, 0.0)
                    if delta > 0:
                        (counter.labels(*key[1]) if labels else counter).inc(delta)
                        self._seen[key] = sample.value

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(_MIRROR_SECONDS):
            try:
                self.refresh()
            except Exception:  # a metric must never take a worker down
                log.warning("metrics: this worker's counters were not mirrored", exc_info=True)


class _MultiprocessRegistry(CollectorRegistry):
    """What a scrape of any worker reports: every worker's counters, summed."""

    def __init__(self, runtime: Runtime, mirror: _Mirror) -> None:
        super().__init__()
        self._mirror = mirror
        multiprocess.MultiProcessCollector(self)  # type: ignore[no-untyped-call]
        self.register(_RuntimeCollector(runtime, counters=False))

    def collect(self) -> Iterator[Any]:
        self._mirror.refresh()  # this worker's own counters are current in the files
        yield from super().collect()


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        shared = _multiprocess_values()
        own = None if shared else CollectorRegistry()
        self.requests = Counter(
            "pii_vault_http_requests",
            "HTTP requests",
            ["endpoint", "method", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "pii_vault_http_request_duration_seconds",
            "HTTP request latency",
            ["endpoint", "method"],
            registry=own,
        )
        self.decisions = Counter(
            "pii_vault_decisions",
            "Access decisions per field, by outcome",
            ["action", "outcome"],
            registry=own,
        )
        self._decision_children: dict[tuple[str, str], Any] = {}
        self.stop = threading.Event()
        self.registry: CollectorRegistry
        if own is None:
            mirror = _Mirror(runtime)
            self.registry = _MultiprocessRegistry(runtime, mirror)
            threading.Thread(
                target=mirror.run, args=(self.stop,), name="pii-vault-metrics", daemon=True
            ).start()
        else:
            self.registry = own
            self.registry.register(_RuntimeCollector(runtime))
        runtime.decider.listeners.append(self.record_decision)

    def record_decision(self, action: str, decisions: Sequence[FieldDecision]) -> None:
        """One increment per distinct outcome (a batch's 400 decisions cost a few calls)."""
        counts = collections.Counter(
            d.redaction if d.visible else f"denied_{d.reason}" for d in decisions
        )
        for outcome, n in counts.items():
            child = self._decision_children.get((action, outcome))
            if child is None:
                child = self._decision_children[(action, outcome)] = self.decisions.labels(
                    action, outcome
                )
            child.inc(n)
