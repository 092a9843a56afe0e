"""Prometheus metrics: requests and latencies by endpoint, decisions, Vault calls, DEK cache.

Each app has its own registry (tests build many apps). Under gunicorn every
worker exposes its own counters; scrape per worker or aggregate upstream.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
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
        for (frm, to, reason), count in cluster.failovers.items():
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


class _RuntimeCollector(Collector):
    """Reads the live counters the vault already keeps, at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
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


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pii_vault_http_requests",
            "HTTP requests",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pii_vault_http_request_duration_seconds",
            "HTTP request latency",
            ["endpoint", "method"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "pii_vault_decisions",
            "Access decisions per field, by outcome",
            ["action", "outcome"],
            registry=self.registry,
        )
        self._decision_children: dict[tuple[str, str], Any] = {}
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
