"""The allocator's view of the store: pools, reserved addresses and claims, mirrored."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from spidernet.control.model.documents import parse
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import IPPool, ReservedIP
from spidernet.control.store.base import Store, Stored

from .mirror import ClaimMirror, Mirror


def _pool(obj: Stored) -> IPPool | None:
    res = parse(obj.body)
    return res if isinstance(res, IPPool) else None


def _reserved(obj: Stored) -> ReservedIP | None:
    res = parse(obj.body)
    return res if isinstance(res, ReservedIP) else None


class PoolView:
    """Mirrors of SpiderIPPool, SpiderReservedIP and IPClaim, synced on demand.

    `parallel`: sync the three mirrors at once, each in a thread of its own. For a store whose
    catch-up waits (the Kubernetes store's watch waits `watch_idle` on a kind that is quiet
    while others are written), a sync then costs one wait instead of three. The store must be
    safe to share between threads.
    """

    def __init__(self, store: Store, *, parallel: bool = False) -> None:
        self.parallel = parallel
        self._pools = Mirror(store, IPPool.KIND, _pool)
        self._reserved = Mirror(store, ReservedIP.KIND, _reserved)
        self.claims = ClaimMirror(store)
        self.pools: dict[str, IPPool] = {}
        self.reserved: dict[int, IntervalSet] = {}

    def sync(self) -> None:
        """Catch up with the store."""
        mirrors = (self._pools, self._reserved, self.claims)
        if self.parallel:
            with ThreadPoolExecutor(len(mirrors), thread_name_prefix="mirror") as workers:
                for done in [workers.submit(m.sync) for m in mirrors]:
                    done.result()  # (raises what the sync raised)
        else:
            for mirror in mirrors:
                mirror.sync()
        self.pools = {p.name: p for p in self._pools.items.values()}
        merged: dict[int, IntervalSet] = {4: IntervalSet(), 6: IntervalSet()}
        for r in self._reserved.items.values():
            merged[r.ip_version] = merged[r.ip_version].union(r.ips)
        self.reserved = merged

    def stats(self) -> Iterator[tuple[str, int, int]]:
        """(pool, usable, allocated) for every pool, for the metrics endpoint."""
        for name, pool in sorted(self.pools.items()):
            yield name, pool.total, len(self.claims.taken(name))
