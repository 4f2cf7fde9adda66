"""The IPAM core's garbage collection (a part of IpamCore, node/agent/ipam.py): the CNI GC
verb's pass over this node's endpoints of one network, and the embedded store's pass over
those whose sandbox namespace is gone (orphans.py judges; this releases)."""

from __future__ import annotations

import abc
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from spidernet.cni.config import Attachment
from spidernet.control.store.base import Conflict, NotFound, Store, Stored
from spidernet.node import netns

from . import endpoints as ep
from . import orphans
from .conflicts import ConflictWatch
from .ipam_errors import store_errors
from .metrics import Metrics
from .workloads import stateful_valid

_log = logging.getLogger("spidernet.gc")


class Collecting(abc.ABC):
    """The GC passes of the IPAM core, over the core's store, lock, node and release."""

    store: Store
    node: str
    metrics: Metrics
    watch: ConflictWatch | None
    _lock: threading.Lock
    _clock: Callable[[], float]

    @abc.abstractmethod
    def _drop(self, current: Stored, nics: Sequence[str]) -> list[dict[str, Any]]:
        """Release the entries of `nics` of the endpoint `current` (IpamCore's); the entries
        released."""

    def gc(self, network: str, keep: Sequence[Attachment]) -> None:
        """Free addresses of `network` on this node whose attachment is not in `keep`."""
        valid = {(a.container_id, a.ifname) for a in keep}
        with self._lock, store_errors(f"collect garbage of network {network}"):
            for obj in self.store.list(ep.KIND).items:
                doc = obj.body
                if doc.get("status", {}).get("current", {}).get("node") != self.node:
                    continue
                container = ep.container_of(doc)
                nets = ep.networks_of(doc)
                drop = [
                    nic
                    for nic, net in nets.items()
                    if net == network and (container, nic) not in valid
                ]
                if drop and not stateful_valid(self.store, doc):
                    self._drop(obj, drop)

    def collect(
        self,
        collector: orphans.Collector,
        *,
        scan: Callable[[], frozenset[str]] = netns.live_identities,
        release: bool = True,
        grace_s: float | None = None,
    ) -> list[orphans.Verdict]:
        """One pass of the embedded GC (orphans.py): judge this node's endpoints against the
        namespaces the host holds (`scan`, run after the listing) and, with `release`,
        release the orphans, each only if its endpoint is still the version judged."""
        with self._lock, store_errors("collect orphaned addresses"):
            listed = {obj.key: obj for obj in self.store.list(ep.KIND).items}
            live = scan()
            verdicts = collector.judge(
                listed.values(),
                node=self.node,
                live=live,
                now=self._clock(),
                stateful=lambda doc: stateful_valid(self.store, doc),
                grace_s=grace_s,
            )
            if not release:
                return verdicts
            for verdict in verdicts:
                if verdict.state != orphans.ORPHAN:
                    continue
                current = listed[verdict.key]
                try:
                    # Every configured NIC dropped: _drop releases all of the endpoint.
                    self._drop(current, ep.attached_of(current.body))
                except (Conflict, NotFound):
                    continue  # changed since it was judged: the next pass looks again
                collector.remember(time.time(), verdict)
                self.metrics.gc_releases.inc()
                _log.warning(
                    "gc: released %s/%s (container %s, %s): %s",
                    verdict.key.namespace,
                    verdict.key.name,
                    verdict.container,
                    ", ".join(verdict.addresses),
                    verdict.reason,
                )
                if self.watch is not None:
                    self.watch.untrack({ipaddress.ip_address(a) for a in verdict.addresses})
        return verdicts
