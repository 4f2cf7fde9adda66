"""The allocator's view of the store: pools, reserved addresses and claims, mirrored."""

from __future__ import annotations

from collections.abc import Iterator

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
    """Mirrors of SpiderIPPool, SpiderReservedIP and IPClaim, synced on demand."""

    def __init__(self, store: Store) -> None:
        self._pools = Mirror(store, IPPool.KIND, _pool)
        self._reserved = Mirror(store, ReservedIP.KIND, _reserved)
        self.claims = ClaimMirror(store)
        self.pools: dict[str, IPPool] = {}
        self.reserved: dict[int, IntervalSet] = {}

    def sync(self) -> None:
        """Catch up with the store."""
        self._pools.sync()
        self._reserved.sync()
        self.claims.sync()
        self.pools = {p.name: p for p in self._pools.items.values()}
        merged: dict[int, IntervalSet] = {4: IntervalSet(), 6: IntervalSet()}
        for r in self._reserved.items.values():
            merged[r.ip_version] = merged[r.ip_version].union(r.ips)
        self.reserved = merged

    def stats(self) -> Iterator[tuple[str, int, int]]:
        """(pool, usable, allocated) for every pool, for the metrics endpoint."""
        for name, pool in sorted(self.pools.items()):
            yield name, pool.total, len(self.claims.taken(name))
