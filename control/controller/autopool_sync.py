"""The auto-pool reconciler's effects: read the applications, subnets, pools, reserved
addresses and claims from the store, let autopool.plan decide, write at the versions read.

Writes go one object at a time (Kubernetes has no transaction over objects). A pool created,
grown or shrunk by another writer in between is Conflict or AlreadyExists: skipped, and looked
at again next pass with fresh reads; any other refusal (the API server's schema or admission
webhook: a label value too long for an application's long name, say) is logged the same way
and does not stop the pass. An agent allocates by creating an IPClaim, without writing
the pool, so a shrink at the pool's version does not exclude an agent that chose an address
from the pool as it was: that claim then lies outside its pool until the next pass puts the
address back, and no other pool gets the addresses a shrink gave back in that same pass
(autopool.py): two pools could claim one address only through an agent whose view of the pool
is older than a whole pass (the agents catch up with a watch before every allocation).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from spidernet.control.allocator.autopools import APP_KINDS
from spidernet.control.model.documents import parse
from spidernet.control.model.errors import ValidationError
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import IPPool, ReservedIP, Subnet
from spidernet.control.store.base import (
    CLAIM,
    Key,
    Store,
    Stored,
    StoreError,
    Unavailable,
)

from . import autopool, autopool_wants

Log = Callable[[str], None]


def _record(obj: Stored) -> object:
    try:
        return parse(obj.body)
    except (ValueError, ValidationError):
        return None


@dataclass
class AutoPools:
    """SpiderSubnet auto pools: made, sized and reclaimed with their applications."""

    name: str = "autopool"

    def snapshot(
        self, store: Store
    ) -> tuple[
        list[autopool_wants.Application],
        dict[str, autopool.SubnetState],
        dict[str, autopool.PoolState],
        dict[int, IntervalSet],
    ]:
        apps = []
        for kind in APP_KINDS:
            for obj in store.list(kind).items:
                app = autopool_wants.application_of(kind, obj.body)
                if app is not None:
                    apps.append(app)
        subnets = {}
        for obj in store.list(Subnet.KIND).items:
            rec = _record(obj)
            if isinstance(rec, Subnet):
                subnets[rec.name] = autopool.SubnetState(rec, obj.body, obj.version)
        in_use: dict[str, set[int]] = {}
        for claim in store.list(CLAIM).items:
            try:
                ip = int(ipaddress.ip_address(claim.key.name))
            except ValueError:
                continue
            in_use.setdefault(claim.key.namespace, set()).add(ip)
        pools = {}
        for obj in store.list(IPPool.KIND).items:
            rec = _record(obj)
            if isinstance(rec, IPPool):
                used = frozenset(in_use.get(rec.name, ()))
                pools[rec.name] = autopool.PoolState(rec, obj.body, obj.version, used)
        reserved = {4: IntervalSet(), 6: IntervalSet()}
        for obj in store.list(ReservedIP.KIND).items:
            rec = _record(obj)
            if isinstance(rec, ReservedIP):
                reserved[rec.ip_version] = reserved[rec.ip_version].union(rec.ips)
        return apps, subnets, pools, reserved

    def reconcile(self, store: Store, now: float, log: Log) -> None:
        plan = autopool.plan(*self.snapshot(store))
        for problem in plan.problems:
            log(f"auto pool: {problem}")
        for c in plan.creates:
            write = partial(store.create, _pool(c.name), c.body)
            if _attempt(log, f"auto pool {c.name}", write):
                log(f"created auto pool {c.name}: {c.why}")
        for r in plan.resizes:
            write = partial(store.update, _pool(r.name), r.body, r.version)
            if _attempt(log, f"auto pool {r.name}", write):
                log(f"resized auto pool {r.name}: {r.why}")
        for d in plan.removes:
            delete = partial(store.delete, _pool(d.name), d.version)
            if _attempt(log, f"auto pool {d.name}", delete):
                log(f"deleted auto pool {d.name}: {d.why}")
        for st in plan.statuses:
            what = f"status of SpiderSubnet {st.name}"
            write = partial(store.update, Key(Subnet.KIND, "", st.name), st.body, st.version)
            if _attempt(log, what, write):
                log(f"{what}: {st.why}")


def _pool(name: str) -> Key:
    return Key(IPPool.KIND, "", name)


def _attempt(log: Log, what: str, write: Callable[[], object]) -> bool:
    """Run one write; a refusal is logged (the next pass reads again and retries), an API
    server that is unavailable ends the pass."""
    try:
        write()
    except Unavailable:
        raise
    except StoreError as e:
        log(f"{what}: skipped until the next pass: {e}")
        return False
    return True
