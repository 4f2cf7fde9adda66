"""The allocator's view of the store: pools, reserved addresses and claims, mirrored."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from spidernet.control.model.documents import parse
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import IPPool, ReservedIP
from spidernet.control.store.base import CLAIM, Delete, Store, Stored, Write

from .follow import Feed, Follower
from .mirror import ClaimMirror, Mirror


def _pool(obj: Stored) -> IPPool | None:
    res = parse(obj.body)
    return res if isinstance(res, IPPool) else None


def _reserved(obj: Stored) -> ReservedIP | None:
    res = parse(obj.body)
    return res if isinstance(res, ReservedIP) else None


class PoolView:
    """Mirrors of SpiderIPPool, SpiderReservedIP and IPClaim, synced on demand; or, once
    `follow` is called (the Kubernetes agent), the claims kept current by a live watch and
    the pools and reserved addresses listed at each sync.

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
        # Held while the claims are read or changed: by a Follower's thread, by the
        # allocator's reads (`claims.taken` is a live set) and by `wrote`.
        self.lock = threading.Lock()
        self._follower: Follower | None = None

    def follow(self, feed: Feed) -> None:
        """Keep the claims current with a live watch from now on (follow.py): a sync then
        lists the pools and the reserved addresses, a few small objects, and leaves the
        claims to the watch."""
        self._follower = Follower(self.claims, feed, self.lock)
        self._follower.start()

    def close(self) -> None:
        """Stop the live watch, if any."""
        if self._follower is not None:
            self._follower.close()
            self._follower = None

    def wrote(self, writes: Sequence[Write]) -> None:
        """This process's own committed writes, put into the claims mirror at once."""
        with self.lock:
            for w in writes:
                if w.key.kind == CLAIM:
                    self.claims.put(w.key, None if isinstance(w, Delete) else dict(w.body))

    def sync(self) -> None:
        """Catch up with the store."""
        if self._follower is not None:
            self._sync_followed()
            return
        mirrors = (self._pools, self._reserved, self.claims)
        if self.parallel:
            with ThreadPoolExecutor(len(mirrors), thread_name_prefix="mirror") as workers:
                for done in [workers.submit(m.sync) for m in mirrors]:
                    done.result()  # (raises what the sync raised)
        else:
            for mirror in mirrors:
                mirror.sync()
        self._derive()

    def _sync_followed(self) -> None:
        with ThreadPoolExecutor(2, thread_name_prefix="mirror") as workers:
            for done in [workers.submit(m.relist) for m in (self._pools, self._reserved)]:
                done.result()
        if not self.claims.revision:  # (before the watch's own first list)
            with self.lock:
                if not self.claims.revision:
                    self.claims.relist()
        self._derive()

    def _derive(self) -> None:
        self.pools = {p.name: p for p in self._pools.items.values()}
        merged: dict[int, IntervalSet] = {4: IntervalSet(), 6: IntervalSet()}
        for r in self._reserved.items.values():
            merged[r.ip_version] = merged[r.ip_version].union(r.ips)
        self.reserved = merged

    def stats(self) -> Iterator[tuple[str, int, int]]:
        """(pool, usable, allocated) for every pool, for the metrics endpoint."""
        with self.lock:
            rows = [(n, p.total, len(self.claims.taken(n))) for n, p in sorted(self.pools.items())]
        yield from rows
