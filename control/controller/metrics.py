"""The controller's Prometheus metrics (`spidernet controller --metrics-address`).

Every replica exports them; only the Lease holder reclaims and reconciles, so the GC and
pass metrics move on the leader alone, and `spidernet_controller_leader` says which one it
is. The process collectors add CPU, memory, open files and start time.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)


class ControllerMetrics:
    """Counters, gauges and histograms the controller's loop, GC and webhook update."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.leader = Gauge(
            "spidernet_controller_leader", "1 while this replica holds the Lease", registry=r
        )
        self.reclaims = Counter(
            "spidernet_controller_gc_reclaims",
            "SpiderEndpoints and IPClaims the GC reclaimed, by reason",
            ["reason"],
            registry=r,
        )
        self.reclaimed_addresses = Counter(
            "spidernet_controller_gc_reclaimed_addresses",
            "Addresses the GC gave back to their pools",
            registry=r,
        )
        self.orphans = Gauge(
            "spidernet_controller_gc_orphan_claims",
            "IPClaims no endpoint lists, waiting out --orphan-grace (last pass)",
            registry=r,
        )
        self.pass_seconds = Histogram(
            "spidernet_controller_pass_seconds",
            "Duration of one reconciler's pass",
            ["reconciler"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.pass_failures = Counter(
            "spidernet_controller_pass_failures",
            "Passes that ended early (the API server unavailable or refusing)",
            ["reconciler"],
            registry=r,
        )
        self.webhook_reviews = Counter(
            "spidernet_controller_webhook_reviews",
            "Admission reviews answered, by kind and verdict",
            ["kind", "allowed"],
            registry=r,
        )

    def reviewed(self, kind: str, allowed: bool) -> None:
        """Count one admission review answered (webhook.ReviewCount)."""
        self.webhook_reviews.labels(kind, "true" if allowed else "false").inc()

    def expose(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve `/metrics` on `host:port` (0: any free port) from a thread."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    """The HTTP server of `ControllerMetrics.serve`; `port` is the one bound."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port = int(server.server_port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
