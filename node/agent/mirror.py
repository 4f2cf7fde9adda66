"""In-memory mirrors of the kinds every allocation reads, kept current by list + watch.

Re-reading a pool's claims from the store on each ADD would cost O(allocated) per call; the
mirror costs one "changes since revision" query per kind instead, and stays right when other
processes write the same store (the store's atomic claim is the arbiter either way).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from spidernet.control.store.base import (
    CLAIM,
    Event,
    EventType,
    Expired,
    Key,
    Listing,
    Store,
    Stored,
)

T = TypeVar("T")


@dataclass
class Mirror(Generic[T]):
    """Objects of one kind, decoded by `decode` (None drops an object the mirror should skip)."""

    store: Store
    kind: str
    decode: Callable[[Stored], T | None]
    items: dict[Key, T] = field(default_factory=dict)
    revision: str = ""

    def relist(self) -> None:
        """Read every object again and watch from the listing's revision."""
        self.load(self.store.list(self.kind))

    def load(self, listing: Listing) -> None:
        """Replace the objects with a listing's, and watch from its revision."""
        self.items = {}
        for obj in listing.items:
            value = self.decode(obj)
            if value is not None:
                self.items[obj.key] = value
        self.revision = listing.revision
        self.relisted()

    def relisted(self) -> None:
        """Hook for subclasses that keep indexes."""

    def applied(self, key: Key, value: T | None) -> None:
        """Hook for subclasses that keep indexes: `key` now holds `value` (None: gone)."""

    def sync(self) -> None:
        """Apply the changes since the last sync (relisting when the store has forgotten)."""
        if not self.revision:
            self.relist()
            return
        try:
            events, self.revision = self.store.changes(self.kind, self.revision)
        except Expired:
            self.relist()
            return
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        """One change, as the store reported it."""
        key = event.obj.key
        value = None if event.type is EventType.DELETED else self.decode(event.obj)
        self.put(key, value)

    def put(self, key: Key, value: T | None) -> None:
        """`key` now holds `value` (None: gone), as a change or this process's own write."""
        if value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value
        self.applied(key, value)


def claim_ip(obj: Stored) -> dict[str, Any] | None:
    """A claim's body (the pool is the key's namespace, the address its name)."""
    return dict(obj.body)


class ClaimMirror(Mirror[dict[str, Any]]):
    """Claims, indexed by pool as sets of integer addresses."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, CLAIM, claim_ip)
        self.by_pool: dict[str, set[int]] = {}

    def relisted(self) -> None:
        self.by_pool = {}
        for key in self.items:
            self.by_pool.setdefault(key.namespace, set()).add(int(ipaddress.ip_address(key.name)))

    def applied(self, key: Key, value: dict[str, Any] | None) -> None:
        ips = self.by_pool.setdefault(key.namespace, set())
        ip = int(ipaddress.ip_address(key.name))
        if value is None:
            ips.discard(ip)
        else:
            ips.add(ip)

    def taken(self, pool: str) -> set[int]:
        """The claimed addresses of `pool` (a live set; do not modify)."""
        return self.by_pool.setdefault(pool, set())
