"""The node service's conflict watch: the passive watcher (node/detect/watch.py) on the
underlay links the service is told to watch (`spidernet serve --watch-link IF[@NETNS]`),
its watched set kept in step with allocations, and what it sees recorded.

- Watched set: every address of every SpiderEndpoint, at start and after each ADD; released
  addresses are unwatched. The owner is the pod's interface; its MAC is read from the pod's
  namespace when the address is tracked.
- A claim from another MAC is checked again against the owner interface's MAC *now* (the
  coordinator's podMACPrefix changes it after IPAM): when they agree the map is corrected
  and nothing is recorded; otherwise it is a conflict, recorded as
  - the metric `spidernet_ip_conflict_counts{link}`;
  - the pod's SpiderEndpoint annotation `spidernet.io/conflicts` (JSON, the last
    MAX_RECORDED: address, MAC, link, time), which `spidernet get spiderendpoint -o yaml`
    shows;
  - a line on the service's log.

The owner's namespace path is the one its ADD gave: a name in that caller's mount namespace
(node/access/callers.py). The check *now* runs outside any call, in the service's own mount
namespace; when the path does not name there the namespace it named at ADD (the runtime's
mounts differ), no MAC is read from whatever is there: the log says so and the claim is
recorded unchecked. At start the watched set is read from the records, and their paths are
opened in the service's mount namespace (the records hold no more than the path).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spidernet.control.store.base import Conflict as StoreConflict
from spidernet.control.store.base import NotFound, Store
from spidernet.node.access.base import Namespaces
from spidernet.node.detect.watch import Conflict, Watcher, WatchError, open_watcher
from spidernet.node.netlink.errors import NetlinkFailure
from spidernet.node.netns import NetnsGone, identity

from . import endpoints as ep
from .metrics import Metrics

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ANNO_CONFLICTS = ep.ANNO_CONFLICTS
MAX_RECORDED = 10


@dataclass(frozen=True)
class Owner:
    """Where a watched address lives."""

    namespace: str  # the pod's, for its SpiderEndpoint
    name: str
    netns: str
    ifname: str
    mac: str
    # The namespace `netns` named when the address was tracked (st_dev, st_ino).
    ns_id: tuple[int, int] | None = None


def parse_link(text: str) -> tuple[str | None, str]:
    """`IF` or `IF@NETNS` (a name under /run/netns or a path) as (netns path, link)."""
    link, sep, where = text.partition("@")
    if not link or (sep and not where):
        raise ValueError(f"'{text}' is not IF or IF@NETNS")
    if not sep:
        return None, link
    return (where if "/" in where else f"/run/netns/{where}"), link


class ConflictWatch:
    """Watchers on the service's links, the owners of the addresses they watch."""

    def __init__(
        self,
        access: Namespaces,
        store: Store,
        metrics: Metrics,
        log: Callable[[str], object] = lambda m: sys.stderr.write(f"{m}\n"),
    ) -> None:
        self._access = access
        self._store = store
        self._metrics = metrics
        self._log = log
        self._lock = threading.Lock()
        self._watchers: list[Watcher] = []
        self._owners: dict[IPAddress, Owner] = {}

    def open(self, links: Sequence[tuple[str | None, str]]) -> None:
        """Start a watcher on each link; raises WatchError or NetnsGone."""
        for netns, link in links:
            self._watchers.append(
                open_watcher(self._access, netns, link, prefer="auto", log=self._log)
            )

    @property
    def active(self) -> bool:
        return bool(self._watchers)

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        self._watchers.clear()

    # -- the watched set --------------------------------------------------------------------

    def _mac_of(self, netns: str, ifname: str) -> str | None:
        try:
            with self._access.netlink(netns) as nl:
                return nl.link(ifname).mac.lower()
        except (NetlinkFailure, NetnsGone):
            return None

    def track(
        self, namespace: str, name: str, netns: str, ifname: str, addresses: Iterable[IPAddress]
    ) -> None:
        """Watch `addresses` as owned by `ifname` in `netns` (pod `namespace/name`)."""
        if not self._watchers or not netns:
            return
        mac = self._mac_of(netns, ifname)
        if mac is None:
            self._log(f"conflict watch: no '{ifname}' in '{netns}'; its addresses are not watched")
            return
        ns_id = identity(netns)  # as this call's caller sees the path (callers.py)
        with self._lock:
            for address in addresses:
                self._owners[address] = Owner(namespace, name, netns, ifname, mac, ns_id)
                for watcher in self._watchers:
                    watcher.watch(address, mac)

    def untrack(self, addresses: Iterable[IPAddress]) -> None:
        with self._lock:
            for address in addresses:
                if self._owners.pop(address, None) is not None:
                    for watcher in self._watchers:
                        watcher.unwatch(address)

    def sync(self) -> None:
        """Track every address of every SpiderEndpoint (at start)."""
        if not self._watchers:
            return
        for obj in self._store.list(ep.KIND).items:
            doc = obj.body
            meta = doc.get("metadata", {})
            netns = ep.netns_of(doc)
            for entry in ep.entries_of(doc):
                ips = [address.ip for address in ep.interfaces_of(entry)]
                self.track(
                    str(meta.get("namespace", "")),
                    str(meta.get("name", "")),
                    netns,
                    str(entry.get("interface", "")),
                    ips,
                )

    def watched(self) -> Mapping[IPAddress, Owner]:
        with self._lock:
            return dict(self._owners)

    # -- what the watchers see ---------------------------------------------------------------

    def poll(self, timeout_s: float) -> list[Conflict]:
        """Conflicts seen within `timeout_s`, each checked against its owner and recorded."""
        if not self._watchers:
            time.sleep(timeout_s)
            return []
        share = timeout_s / len(self._watchers)
        seen = [c for w in self._watchers for c in w.poll(share)]
        confirmed = []
        for conflict in seen:
            owner = self.watched().get(conflict.address)
            if owner is None:
                continue  # released since
            current = self._current_mac(owner, conflict)
            if current == conflict.rogue_mac.lower():
                # The owner's MAC changed after it was tracked (podMACPrefix): not a rogue.
                self.track(
                    owner.namespace, owner.name, owner.netns, owner.ifname, [conflict.address]
                )
                continue
            confirmed.append(conflict)
            self._record(owner, conflict)
        return confirmed

    def _current_mac(self, owner: Owner, conflict: Conflict) -> str | None:
        """The owner interface's MAC now, or None when it cannot be read from the namespace
        its ADD named (see the module's doc)."""
        here = identity(owner.netns)
        if owner.ns_id is not None and here != owner.ns_id:
            what = (
                "does not exist in the service's mount namespace (the pod is gone, or its "
                "runtime sees other mounts)"
                if here is None
                else "names another network namespace in the service's mount namespace "
                "(the pod's runtime sees other mounts)"
            )
            self._log(
                f"conflict watch: cannot check the claim on {conflict.address} against "
                f"{owner.namespace}/{owner.name}: '{owner.netns}' {what}; recorded unchecked"
            )
            return None
        return self._mac_of(owner.netns, owner.ifname)

    def _record(self, owner: Owner, conflict: Conflict) -> None:
        self._metrics.ip_conflicts.labels(conflict.link).inc()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(conflict.seen_at))
        self._log(
            f"conflict watch: {conflict.address} of {owner.namespace}/{owner.name} "
            f"({owner.ifname}, {owner.mac}) claimed by {conflict.rogue_mac} on {conflict.link}"
        )
        entry = {
            "address": str(conflict.address),
            "mac": conflict.rogue_mac,
            "link": conflict.link,
            "seenAt": stamp,
        }
        key = ep.key_of(owner.namespace, owner.name)
        for _ in range(3):
            try:
                current = self._store.get(key)
            except NotFound:
                return
            doc: dict[str, Any] = json.loads(json.dumps(current.body))
            recorded = ep.conflicts_of(doc)
            annotations = doc.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[ANNO_CONFLICTS] = json.dumps([*recorded, entry][-MAX_RECORDED:])
            try:
                self._store.update(key, doc, current.version)
            except StoreConflict:
                continue
            return


__all__ = ["ANNO_CONFLICTS", "ConflictWatch", "Owner", "WatchError", "parse_link"]
