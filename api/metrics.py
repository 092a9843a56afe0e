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
from vault.errors import ServiceUnavailable


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
        try:
            damaged = self.runtime.vault.damaged_count()
        except ServiceUnavailable:
            damaged = None  # the database is down: /readyz says so; no stale figure
        if damaged is not None:
            yield GaugeMetricFamily(
                "pii_vault_damaged_subjects",
                "Subjects whose key is missing though never shredded (data lost; alert on > 0)",
                value=damaged,
            )
        yield CounterMetricFamily(
            "pii_vault_audit_anchor_failures",
            "Audit anchors that could not be written (each is retried)",
            value=self.runtime.audit.anchor_failures,
        )


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
