"""Prometheus metrics, in a registry of our own (no process-global state), exposed at ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class Metrics:
    """Every metric the gateway exports. One instance per process, passed to whoever records."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.instances_received = Counter(
            "gateway_instances_received_total", "Instances stored and acknowledged", registry=self.registry
        )
        self.bytes_received = Counter(
            "gateway_bytes_received_total",
            "Bytes of instances stored and acknowledged",
            registry=self.registry,
        )
        self.store_failures = Counter(
            "gateway_store_failures_total",
            "C-STORE requests answered with a failure",
            ["reason"],
            registry=self.registry,
        )
        self.index_commits = Counter(
            "gateway_index_commits_total",
            "Index transactions committed for received instances (a group commit counts once)",
            registry=self.registry,
        )
        self.associations = Counter(
            "gateway_associations_total", "Association requests", ["result"], registry=self.registry
        )
        self.stage_duration = Histogram(
            "gateway_stage_duration_seconds",
            "Time a pipeline stage took",
            ["stage", "outcome"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )

    def add_queue_collector(self, depth: Callable[[], dict[tuple[str, str], int]]) -> None:
        """Report queue depth by stage and state, read from the index at scrape time."""
        self.registry.register(_QueueCollector(depth))


class _QueueCollector(Collector):
    def __init__(self, depth: Callable[[], dict[tuple[str, str], int]]) -> None:
        self._depth = depth

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "gateway_jobs", "Pipeline jobs by stage and state", labels=["stage", "state"]
        )
        for (stage, state), count in sorted(self._depth().items()):
            family.add_metric([stage, state], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return []
