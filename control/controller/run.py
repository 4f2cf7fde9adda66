"""`spidernet controller`: the effects around the pure decisions of gc.py and lease.py.

One loop, one thread. Each tick the controller renews (or tries to take) its Lease; while it
holds it, it runs every reconciler in `RECONCILERS` order once per `gc_interval` (at once when
it becomes the leader). A reconciler reads what it needs from the store, decides purely and
writes with the versions it read: an object that changed in between is Conflict, skipped until
the next pass. A store that is unavailable skips the pass; the loop goes on. SIGTERM (or
`stop`) ends the loop after the current step and releases the Lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from spidernet.control.controller import gc
from spidernet.control.controller.autopool_sync import AutoPools
from spidernet.control.controller.cidrs_sync import CoordinatorStatus
from spidernet.control.controller.lease import (
    DEFAULT_DURATION_S,
    Step,
    released,
    spec_for,
    state_of,
    step,
)
from spidernet.control.controller.metrics import ControllerMetrics
from spidernet.control.controller.multus import reconcile_multus
from spidernet.control.model import events
from spidernet.control.model.documents import parse
from spidernet.control.model.errors import ValidationError
from spidernet.control.model.resources import IPPool
from spidernet.control.store.base import (
    CLAIM,
    Conflict,
    Delete,
    Key,
    NotFound,
    Store,
    Stored,
    StoreError,
    Unavailable,
)
from spidernet.control.store.kube import KubeStore
from spidernet.control.store.kube_gateways import KubeMultusApi

DEFAULT_GC_INTERVAL_S = 30.0


class LeaseStore(Store, Protocol):
    """A store that also keeps coordination.k8s.io Leases (KubeStore)."""

    def read_lease(self, namespace: str, name: str) -> Stored: ...

    def write_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], expected: str | None
    ) -> Stored: ...


Log = Callable[[str], None]


class Reconciler(Protocol):
    """One pass of one controller concern over the store."""

    name: str

    def reconcile(self, store: Store, now: float, log: Log) -> None: ...


@dataclass
class GarbageCollector:
    """Reclaims leaked endpoints and claims (gc.decide), deleting at the versions read."""

    policy: gc.Policy = field(default_factory=gc.Policy)
    name: str = "gc"
    orphan_since: dict[Key, float] = field(default_factory=dict)
    reclaimed: int = 0
    metrics: ControllerMetrics | None = None

    def snapshot(self, store: Store) -> gc.Snapshot:
        """What the decision needs, read from the store, in the order an ADD writes it
        backwards: endpoints, then claims and pods. An ADD writes its claims before its
        endpoint (and its pod exists before both), so every claim a listed endpoint names
        was there to be listed after it; listed the other way round, an ADD between the two
        lists left its endpoint reclaimed without its claims, which waited out the orphan
        grace. A claim whose endpoint came after the endpoints' list looks orphaned here,
        but its pod lives, which keeps it (gc.orphans)."""
        eps = store.list(gc.ENDPOINT).items
        claims = tuple(gc.claim_of(s.key, s.version, s.body) for s in store.list(CLAIM).items)
        pods = [gc.pod_of(s.body) for s in store.list("Pod").items]
        sets = [gc.statefulset_of(s.body) for s in store.list("StatefulSet").items]
        return gc.Snapshot(
            claims=claims,
            endpoints=tuple(gc.endpoint_of(s.key, s.version, s.body) for s in eps),
            pods={(p.namespace, p.name): p for p in pods},
            nodes=frozenset(s.key.name for s in store.list("Node").items),
            statefulsets={(s.namespace, s.name): s for s in sets},
            vms=_names(store, "VirtualMachine"),
            vmis=_names(store, "VirtualMachineInstance"),
            ipam_claims=_names(store, "IPAMClaim"),
        )

    def reconcile(self, store: Store, now: float, log: Log) -> None:
        snap = self.snapshot(store)
        orphaned = {c.key for c in gc.orphans(snap)}
        self.orphan_since = {k: self.orphan_since.get(k, now) for k in orphaned}
        if self.metrics is not None:
            self.metrics.orphans.set(len(orphaned))
        for verdict in gc.decide(snap, now, self.orphan_since, self.policy):
            writes = [Delete(verdict.key, verdict.version)]
            writes += [Delete(c.key, c.version) for c in verdict.claims]
            try:
                store.commit(writes)
            except (Conflict, NotFound) as e:
                log(f"skipped {verdict.key} until the next pass: {e}")
                continue
            self.reclaimed += 1
            self.orphan_since.pop(verdict.key, None)
            if self.metrics is not None:
                self.metrics.reclaims.labels(verdict.reason.value).inc()
                gone = len(verdict.claims) + (verdict.key.kind == CLAIM)
                self.metrics.reclaimed_addresses.inc(gone)
            addresses = ", ".join(f"{c.key.namespace}/{c.key.name}" for c in verdict.claims)
            held = f" (addresses {addresses})" if addresses else ""
            log(f"reclaimed {verdict.key} of pod {verdict.pod}{held}: {verdict.reason.value}")
            if isinstance(store, KubeStore):
                _tell_pools(store, verdict, log)


def _names(store: Store, kind: str) -> frozenset[tuple[str, str]]:
    """(namespace, name) of every `kind` object; none when its CRD is not installed."""
    try:
        return frozenset((s.key.namespace, s.key.name) for s in store.list(kind).items)
    except NotFound:
        return frozenset()


def _tell_pools(store: KubeStore, verdict: gc.Reclaim, log: Log) -> None:
    """An `IPReclaimed` Event on each pool the reclaim gave addresses back to."""
    keys = [c.key for c in verdict.claims]
    if verdict.key.kind == CLAIM:  # an orphaned claim, reclaimed alone
        keys.append(verdict.key)
    by_pool: dict[str, list[str]] = {}
    for key in keys:  # a claim's key: namespace = pool, name = address
        by_pool.setdefault(key.namespace, []).append(key.name)
    now = datetime.now(UTC)
    for pool, addresses in by_pool.items():
        message = f"reclaimed {', '.join(addresses)} of pod {verdict.pod}: {verdict.reason.value}"
        event = events.pool_event(pool, "IPReclaimed", message, now)
        try:
            store.post_event(events.CLUSTER_EVENTS_NAMESPACE, event)
        except StoreError as e:
            log(f"event on pool {pool} not posted: {e}")


@dataclass
class PoolStatus:
    """Keeps each SpiderIPPool's status.allocatedIPCount and totalIPCount current."""

    name: str = "pool-status"

    def reconcile(self, store: Store, now: float, log: Log) -> None:
        counts = gc.allocated_counts(
            gc.claim_of(s.key, s.version, s.body) for s in store.list(CLAIM).items
        )
        for pool in store.list(IPPool.KIND).items:
            status = dict(pool.body.get("status") or {})
            wanted = dict(status, allocatedIPCount=counts.get(pool.key.name, 0))
            try:
                record = parse(pool.body)
            except (ValueError, ValidationError):
                record = None
            if isinstance(record, IPPool):
                wanted["totalIPCount"] = record.total
            if wanted == status:
                continue
            body = dict(pool.body, status=wanted)
            try:
                store.update(pool.key, body, pool.version)
            except (Conflict, NotFound) as e:
                log(f"skipped the status of {pool.key} until the next pass: {e}")
                continue
            log(
                f"status of {pool.key}: allocatedIPCount {wanted['allocatedIPCount']}"
                f", totalIPCount {wanted.get('totalIPCount')}"
            )


@dataclass
class MultusNads:
    """The NetworkAttachmentDefinitions of the SpiderMultusConfigs (multus.py); only a store
    on a cluster has them."""

    name: str = "multus"

    def reconcile(self, store: Store, now: float, log: Log) -> None:
        if not isinstance(store, KubeStore):
            return
        for line in reconcile_multus(KubeMultusApi(store)):
            log(f"NetworkAttachmentDefinition {line}")


def reconcilers(policy: gc.Policy, metrics: ControllerMetrics | None = None) -> list[Reconciler]:
    """The controller's concerns, in the order each pass runs them."""
    return [
        GarbageCollector(policy, metrics=metrics),
        AutoPools(),
        PoolStatus(),
        MultusNads(),
        CoordinatorStatus(),
    ]


@dataclass
class Elector:
    """Holds (or waits for) the Lease `namespace/name` as `identity`."""

    store: LeaseStore
    namespace: str
    name: str
    identity: str
    duration_s: int = DEFAULT_DURATION_S
    version: str | None = None
    leading: bool = False

    def tick(self, now: float) -> bool:
        """Renew or try to take the Lease; whether this candidate leads now."""
        try:
            current = self.store.read_lease(self.namespace, self.name)
        except NotFound:
            current = None
        state = state_of(current.body) if current is not None else None
        what = step(state, self.identity, now)
        if what is Step.STAND_BY:
            self.leading = False
            return False
        spec = spec_for(what, state, self.identity, now, self.duration_s)
        try:
            written = self.store.write_lease(
                self.namespace, self.name, spec, current.version if current else None
            )
        except Conflict:
            self.leading = False
            return False
        self.version = written.version
        self.leading = True
        return True

    def release(self, now: float) -> None:
        """Clear the holder, if this candidate still holds the Lease."""
        if not self.leading or self.version is None:
            return
        try:
            current = self.store.read_lease(self.namespace, self.name)
            state = state_of(current.body)
            if state.holder == self.identity:
                self.store.write_lease(
                    self.namespace, self.name, released(state, now), current.version
                )
        except StoreError:
            pass
        self.leading = False


def _stderr(line: str) -> None:
    """The controller's log line, through the process's log handler (text or JSON)."""
    logging.getLogger("spidernet.controller").info(line)


def _failed(metrics: ControllerMetrics | None, part: Reconciler) -> None:
    if metrics is not None:
        metrics.pass_failures.labels(part.name).inc()


def run(
    elector: Elector,
    parts: Sequence[Reconciler],
    *,
    interval_s: float,
    stop: threading.Event,
    log: Log = _stderr,
    clock: Callable[[], float] = time.time,
    metrics: ControllerMetrics | None = None,
) -> None:
    """The loop: until `stop` is set; releases the Lease on the way out."""
    renew_every = max(elector.duration_s / 3.0, 0.2)
    next_pass = 0.0
    was_leading: bool | None = None
    try:
        while not stop.is_set():
            now = clock()
            try:
                leading = elector.tick(now)
            except Unavailable as e:
                log(f"lease: {e}")
                leading = False
            if leading != was_leading:
                log(f"{'leading' if leading else 'standing by'} ({elector.identity})")
                if metrics is not None:
                    metrics.leader.set(1 if leading else 0)
                next_pass = now if leading else next_pass
                was_leading = leading
            if leading and now >= next_pass:
                for i, part in enumerate(parts):
                    # A long pass must not outlive the Lease: renew before each reconciler.
                    started = time.perf_counter()
                    try:
                        if i and not elector.tick(clock()):
                            break
                        part.reconcile(elector.store, clock(), log)
                    except Unavailable as e:
                        log(f"{part.name}: pass skipped: {e}")
                        _failed(metrics, part)
                    except StoreError as e:
                        # Any other refusal (a write the API server would not take, an object
                        # that vanished mid-pass) ends this reconciler's pass, never the loop:
                        # the next pass reads everything again.
                        log(f"{part.name}: pass ended early: {e}")
                        _failed(metrics, part)
                    if metrics is not None:
                        seconds = time.perf_counter() - started
                        metrics.pass_seconds.labels(part.name).observe(seconds)
                next_pass = now + interval_s
            stop.wait(min(renew_every, max(next_pass - clock(), 0.05)) if leading else renew_every)
    finally:
        elector.release(clock())
        if metrics is not None:
            metrics.leader.set(0)
