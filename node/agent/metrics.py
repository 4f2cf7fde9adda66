"""Prometheus metrics of the control service (names after Spiderpool's, §7.1, snake_case).

The registry is the service's own, not prometheus-client's global one, so tests can run
several services in one process. Pool gauges are collected on scrape from the allocator's
mirrors; nothing is kept twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Spiderpool's buckets (0.1 s ... 15 s) are too coarse for a local store; finer ones first.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 1, 3, 5, 7, 10, 15)

# (pool, total usable addresses, allocated addresses)
PoolStats = Callable[[], Iterable[tuple[str, int, int]]]


class _Pools(Collector):
    def __init__(self, stats: PoolStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        total = GaugeMetricFamily(
            "spidernet_ippool_total_ips", "Usable addresses of a pool", labels=["pool"]
        )
        used = GaugeMetricFamily(
            "spidernet_ippool_allocated_ips", "Allocated addresses of a pool", labels=["pool"]
        )
        for pool, n_total, n_used in self.stats():
            total.add_metric([pool], n_total)
            used.add_metric([pool], n_used)
        yield total
        yield used


class Metrics:
    """Counters and histograms the IPAM core updates."""

    def __init__(self, pool_stats: PoolStats | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.allocations = Counter(
            "spidernet_ipam_allocation_counts", "Successful ADD allocations", registry=r
        )
        self.allocation_failures = Counter(
            "spidernet_ipam_allocation_failure_counts",
            "Failed ADD allocations by reason",
            ["reason"],
            registry=r,
        )
        self.allocation_conflicts = Counter(
            "spidernet_ipam_allocation_conflict_counts",
            "Claims lost to a concurrent writer and retried",
            registry=r,
        )
        self.detections = Counter(
            "spidernet_ipam_detection_counts",
            "ADD-time probes that found a conflicting address or a silent gateway",
            ["kind"],
            registry=r,
        )
        self.ip_conflicts = Counter(
            "spidernet_ip_conflict_counts",
            "Claims on a pod's address from another MAC, seen by the conflict watch",
            ["link"],
            registry=r,
        )
        self.releases = Counter("spidernet_ipam_release_counts", "DEL/GC releases", registry=r)
        self.release_failures = Counter(
            "spidernet_ipam_release_failure_counts", "Failed releases", registry=r
        )
        self.allocation_seconds = Histogram(
            "spidernet_ipam_allocation_duration_seconds",
            "Time to serve an ADD",
            buckets=BUCKETS,
            registry=r,
        )
        self.release_seconds = Histogram(
            "spidernet_ipam_release_duration_seconds",
            "Time to serve a DEL",
            buckets=BUCKETS,
            registry=r,
        )
        # Every forwarded plugin call, as its runtime waited for it (the plugin's work in the
        # service; not the forwarder's start-up): what each ADD of a pod start costs.
        self.cni_seconds = Histogram(
            "spidernet_cni_request_duration_seconds",
            "Time the service took for one forwarded CNI call, by plugin, verb and outcome",
            ["plugin", "command", "outcome"],
            buckets=BUCKETS,
            registry=r,
        )
        self.gc_releases = Counter(
            "spidernet_ipam_gc_release_counts",
            "Endpoints the embedded GC released because their network namespace was gone",
            registry=r,
        )
        self.busy = Counter(
            "spidernet_service_busy_counts",
            "Requests refused with error 11 because the service's queue was full",
            registry=r,
        )
        if pool_stats is not None:
            r.register(_Pools(pool_stats))

    def expose(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
