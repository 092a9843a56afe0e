"""The per-worker counter mirror (api/metrics.py) against a family that starts empty.

CI (and three local runs of the HA suite) saw /metrics answer 500 right after a Vault
node was killed: the failover family had no samples when the mirror first saw it, so
its counter was made without label names, and the first failover's labelled sample
then raised ValueError at every scrape."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily

from api.metrics import _Mirror


class _Source:
    def __init__(self) -> None:
        self.moves: list[tuple[list[str], float]] = []

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "pii_vault_test_moves", "moves", labels=["from_node", "reason"]
        )
        for labels, value in self.moves:
            family.add_metric(labels, value)
        yield family


def test_a_family_that_starts_empty_is_mirrored_once_it_has_samples() -> None:
    mirror = _Mirror.__new__(_Mirror)
    source = _Source()
    mirror._source = source  # type: ignore[assignment]
    mirror._counters, mirror._seen, mirror._lock = {}, {}, threading.Lock()
    mirror.refresh()  # no failover yet
    source.moves.append((["http://a", "unreachable"], 2.0))
    mirror.refresh()  # raised ValueError here before
    source.moves.append((["http://b", "sealed"], 1.0))
    mirror.refresh()
    counter = mirror._counters["pii_vault_test_moves"]
    values = {
        tuple(s.labels.values()): s.value
        for metric in counter.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert values == {("http://a", "unreachable"): 2.0, ("http://b", "sealed"): 1.0}
