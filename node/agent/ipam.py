"""The IPAM core of the service: CNI IPAM calls against the store (the `Backend` of
spidernet-ipam; it raises node/ipam/errors.py's failures, which the plugin answers as CNI errors).

Each call reads the mirrors, lets the pure allocator choose, and writes the claims and the
pod's endpoint in ONE store commit, so an answered ADD is durable and a crash leaves either
everything or nothing. A claim lost to another writer (a stale mirror, another process on the
same store) is retried with that address skipped.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from spidernet.cni.errors import Deferred
from spidernet.control.allocator.allocate import Lease, PoolUse, allocate
from spidernet.control.allocator.errors import AllocationError
from spidernet.control.allocator.request import IpamRequest, PodFacts
from spidernet.control.store.base import (
    AlreadyExists,
    Conflict,
    Key,
    NotFound,
    Store,
    Stored,
    Write,
)
from spidernet.node import netns
from spidernet.node.ipam.conf import PodMeta
from spidernet.node.ipam.errors import (
    AddressesHeld,
    BackendError,
    Contended,
    Failure,
    GatewayUnreachable,
    NoEnabledPool,
    ProbeFailed,
)
from spidernet.node.ipam.plugin import Address, IpamCall

from . import claimplan
from . import endpoints as ep
from .collecting import Collecting
from .conflicts import ConflictWatch
from .detection import CannotProbe, Detector, Unreachable
from .ipam_errors import store_errors
from .metrics import Metrics
from .pools import PoolView
from .workloads import facts, stateful_valid

# Claims lost to concurrent writers before the call gives up with "try again later".
ATTEMPTS = 32


class FailureHook(Protocol):
    """Told of a failed ADD: the pod, the failure (node/ipam/errors.py), and whether it was
    waiting for its SpiderSubnet auto pool."""

    def __call__(self, pod: PodMeta, error: Failure, *, waiting: bool) -> None: ...


_ipam_log = logging.getLogger("spidernet.ipam")


@dataclass(frozen=True)
class AutoPoolWait:
    """How long an ADD waits for its SpiderSubnet auto pool to be made or grown by the
    controller: `retries` more tries, `interval_s` apart (Spiderpool's
    SPIDERPOOL_WAIT_SUBNET_POOL_MAX_RETRIES = 25 and ..._TIME_IN_SECOND = 2). `enabled` is
    Kubernetes mode; without it the subnet annotations are a config error."""

    enabled: bool = False
    retries: int = 25
    interval_s: float = 2.0


# Addresses tried for one interface before an ADD with conflict detection gives up.
DETECT_ATTEMPTS = 3


class IpamCore(Collecting):
    """Allocation and release for one node. Thread-safe: calls are serialised."""

    def __init__(
        self,
        store: Store,
        *,
        node: str | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        detector: Detector | None = None,
        parallel_sync: bool = False,
        auto_pool_wait: AutoPoolWait | None = None,
        clock: Callable[[], float] = time.monotonic,
        kubevirt: bool = True,
    ) -> None:
        self.store = store
        self.auto_pool_wait = auto_pool_wait or AutoPoolWait()
        self._clock = clock
        # (container, NIC) -> when its first try found its auto pool missing or full.
        self._waiting: dict[tuple[str, str], float] = {}
        self.detector = detector
        # The conflict watch (conflicts.py) when the service watches links: told of every
        # address allocated and released, outside the store lock.
        self.watch: ConflictWatch | None = None
        self.node = node or socket.gethostname()
        self.rng = rng or random.SystemRandom()
        # parallel_sync: the Kubernetes store's mirrors catch up at once (pools.py).
        self.view = PoolView(store, parallel=parallel_sync)
        self.metrics = metrics or Metrics(self.view.stats)
        self._lock = threading.Lock()
        # Told of every failed ADD (the call's pod, the failure, whether it waited for an
        # auto pool): the Kubernetes agent's Events on pods (events.py).
        self.events: FailureHook | None = None
        # Whether a KubeVirt virt-launcher pod's addresses follow its VM (Spiderpool's
        # enableKubevirtStaticIP; docs/kubevirt.md).
        self.kubevirt = kubevirt
        # Told of the addresses an IPAMClaim's interface holds after each ADD (namespace,
        # claim, addresses with prefix): the Kubernetes agent writes the claim's status.ips.
        self.claim_status: Callable[[str, str, list[str]], None] | None = None

    # -- the Backend protocol -------------------------------------------------------------

    def allocate(self, call: IpamCall) -> Sequence[Address]:
        """Addresses for the call's pod; the same ones again for the same sandbox. With
        detection on (detection.py), addresses other stations hold are released and others
        allocated, and an unreachable gateway fails the call with nothing left allocated."""
        start = time.perf_counter()
        try:
            try:
                out, pod = self._allocate_checked(call)
            except AllocationError as e:
                self._defer(call, e)
                raise
            self._waiting.pop((call.container_id, call.ifname), None)
            mine = [a.address for a in out if a.interface == call.ifname]
            if self.watch is not None:
                ips = [ipaddress.ip_interface(a).ip for a in mine]
                self.watch.track(pod.namespace, pod.holder, call.netns, call.ifname, ips)
            if pod.ipam_claim and self.claim_status is not None:
                self._claim_status(pod, mine)
        except AllocationError as e:
            self.metrics.allocation_failures.labels(e.reason.value).inc()
            self._tell(call, e, waiting=e.waiting)
            raise
        except BackendError as e:
            self.metrics.allocation_failures.labels("error").inc()
            self._tell(call, e)
            raise
        self.metrics.allocations.inc()
        self.metrics.allocation_seconds.observe(time.perf_counter() - start)
        return out

    def _claim_status(self, pod: PodFacts, addresses: list[str]) -> None:
        """Write the IPAMClaim's status.ips; a failure is logged, not the ADD's: the
        addresses are held either way, and the next ADD writes them again."""
        assert self.claim_status is not None
        try:
            self.claim_status(pod.namespace, pod.ipam_claim, addresses)
        except Exception as e:  # the claim object is the user's, not ours
            _ipam_log.warning(
                "IPAMClaim %s/%s: failed to write status.ips %s: %s",
                pod.namespace, pod.ipam_claim, addresses, e,
            )  # fmt: skip

    def _facts(self, call: IpamCall, *, strict: bool = False) -> PodFacts:
        return facts(self.store, call, self.node, kubevirt=self.kubevirt, strict=strict)

    def _tell(self, call: IpamCall, error: Failure, *, waiting: bool = False) -> None:
        """Hand a failed ADD to `events` (an Event on the pod, in Kubernetes mode)."""
        if self.events is not None:
            self.events(call.pod, error, waiting=waiting)

    def _defer(self, call: IpamCall, e: AllocationError) -> None:
        """Raise Deferred while the call may still wait for its auto pool (e.waiting);
        afterwards let the error through, saying how long it waited."""
        key = (call.container_id, call.ifname)
        wait = self.auto_pool_wait
        if not e.waiting or not wait.enabled:
            self._waiting.pop(key, None)
            return
        now = self._clock()
        first = self._waiting.setdefault(key, now)
        if now - first < wait.retries * wait.interval_s:
            if len(self._waiting) > 10_000:  # callers that went away: forget the oldest
                for old in sorted(self._waiting, key=self._waiting.__getitem__)[:5_000]:
                    del self._waiting[old]
            raise Deferred(wait.interval_s, e.message)
        del self._waiting[key]
        e.message = f"{e.message} (waited {now - first:.0f}s for the controller)"

    def release(self, call: IpamCall) -> None:
        """Free the addresses the call's sandbox holds on its interface."""
        start = time.perf_counter()
        try:
            with self._lock, store_errors(f"release for {call.container_id}"):
                gone = self._release(call)
            if self.watch is not None and gone:
                self.watch.untrack(gone)
        except BackendError:
            self.metrics.release_failures.inc()
            raise
        self.metrics.release_seconds.observe(time.perf_counter() - start)

    def lookup(self, call: IpamCall) -> Sequence[Address]:
        """The addresses recorded for the call's sandbox."""
        with self._lock, store_errors(f"look up {call.container_id}"):
            pod = self._facts(call)
            current = self._endpoint(pod)
            if current is None or ep.container_of(current.body) != call.container_id:
                return []
            return ep.addresses_of(ep.entries_of(current.body))

    def status(self) -> None:
        """Ready when at least one enabled pool exists."""
        with self._lock, store_errors("read pools"):
            self.view.sync()
            if not any(not p.disable for p in self.view.pools.values()):
                raise NoEnabledPool(
                    "no enabled SpiderIPPool exists; create one with `spidernet apply -f`"
                )

    def scrape(self) -> bytes:
        """The metrics exposition, with pool gauges read from a fresh view."""
        with self._lock:
            self.view.sync()
            return self.metrics.expose()

    # -- internals ------------------------------------------------------------------------

    def _endpoint(self, pod: PodFacts) -> Stored | None:
        try:
            return self.store.get(ep.key_of(pod.namespace, pod.holder))
        except NotFound:
            return None

    def _request(self, call: IpamCall, pod: PodFacts) -> IpamRequest:
        return IpamRequest(
            container_id=call.container_id,
            ifname=call.ifname,
            network=call.network,
            pod=pod,
            defaults_v4=call.conf.default_ipv4_ippool,
            defaults_v6=call.conf.default_ipv6_ippool,
            clean_gateway=call.conf.clean_gateway,
            auto_pools=self.auto_pool_wait.enabled,
            master=call.master,
        )

    def _add(self, call: IpamCall, nsid: str) -> claimplan.Add:
        # `since`: when the address was given (`spidernet ip who`); UTC, to the second.
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return claimplan.Add(
            container_id=call.container_id,
            ifname=call.ifname,
            network=call.network,
            netns=call.netns,
            netns_id=nsid,
            node=self.node,
            since=since,
        )

    def _holdings(self, ref: str, entries: Sequence[dict[str, Any]]) -> claimplan.Holdings:
        """The claims of `entries`, read: those pod `ref` (namespace/name) holds, with their
        versions; those another pod holds; those that do not exist. An endpoint is written
        after its claims, but a write whose answer was lost, or a claim deleted by hand, can
        leave it listing an address the pod does not hold: answering it again would give one
        address to two pods, and releasing it would take another pod's. Read from the store,
        not the mirror, which may still show a claim that is gone."""
        mine: dict[Key, str] = {}
        taken: set[Key] = set()
        missing: set[Key] = set()
        for key in ep.claims_of(entries):
            try:
                claim = self.store.get(key)
            except NotFound:
                missing.add(key)
                continue
            if claim.body.get("pod") == ref:
                mine[key] = claim.version
            else:
                taken.add(key)
        return claimplan.Holdings(mine, frozenset(taken), frozenset(missing))

    def _choose(
        self, call: IpamCall, pod: PodFacts, skip: set[tuple[str, int]], only: set[str] | None
    ) -> list[Lease]:
        self.view.sync()
        claims = self.view.claims

        def use(pool: str) -> PoolUse:
            taken = claims.taken(pool)
            return PoolUse(taken, len(taken))

        with self.view.lock:  # (a live watch may be changing the claims: follow.py)
            leases = allocate(
                self._request(call, pod),
                self.view.pools,
                self.view.reserved,
                use,
                rng=self.rng,
                skip=skip,
            )
        if only is not None:
            leases = [lease for lease in leases if lease.interface in only]
        return leases

    def _allocate_checked(self, call: IpamCall) -> tuple[list[Address], PodFacts]:
        settings = self.detector.settings(call.conf) if self.detector is not None else None
        checking = settings is not None and settings.enabled
        avoid: set[tuple[str, int]] = set()
        conflicts: list[str] = []
        for _ in range(DETECT_ATTEMPTS):
            try:
                with self._lock, store_errors(f"allocate for {call.container_id}"):
                    out, pod = self._allocate(call, avoid)
                    # Which pool each address came from: only needed to avoid it after a
                    # conflict (one more read of the endpoint, so only when checking).
                    pools = self._pools_of(call) if checking else {}
            except AllocationError as e:
                if not conflicts:
                    raise
                raise AddressesHeld(call.ifname, conflicts) from e
            if self.detector is None or settings is None or not checking or pod.migration:
                # (A live migration's target: its source still answers for the addresses.)
                return out, pod
            try:
                problem = self.detector.check(call.netns, call.ifname, out, settings)
            except CannotProbe as e:
                self._undo(call)
                raise ProbeFailed(f"failed to check the new addresses of {call.ifname}: {e}") from e
            if problem is None:
                return out, pod
            self._undo(call)
            if isinstance(problem, Unreachable):
                self.metrics.detections.labels("gateway").inc()
                raise GatewayUnreachable(
                    f"{problem.describe(call.ifname)}: its addresses were released"
                )
            self.metrics.detections.labels("conflict").inc()
            conflicts.append(problem.describe(call.ifname))
            avoid |= {(pools[str(ip)], int(ip)) for ip, _ in problem.held if str(ip) in pools}
        raise AddressesHeld(call.ifname, conflicts)

    def _pools_of(self, call: IpamCall) -> dict[str, str]:
        """Address (no prefix) -> pool, for the call's interface."""
        current = self._endpoint(self._facts(call))
        return {} if current is None else claimplan.pools_of(current.body, call.ifname)

    def _undo(self, call: IpamCall) -> None:
        with self._lock, store_errors(f"release for {call.container_id}"):
            self._release(call)

    def _allocate(
        self, call: IpamCall, avoid: set[tuple[str, int]] | None = None
    ) -> tuple[list[Address], PodFacts]:
        skip: set[tuple[str, int]] = set(avoid or ())
        # The namespace as the caller sees it (the call's view is installed), read once for
        # all attempts: the embedded GC's evidence that the sandbox still exists (orphans.py).
        ident = netns.identity(call.netns) if call.netns else None
        nsid = netns.identity_text(ident) if ident else ""
        read: tuple[PodFacts, Stored | None] | None = None
        for _ in range(ATTEMPTS):
            if read is None:
                pod = self._facts(call, strict=True)
                read = pod, self._endpoint(pod)
            pod, current = read
            writes, entries = self._plan_add(call, pod, current, skip, nsid)
            try:
                if writes:
                    self.store.commit(writes)
                    self.view.wrote(writes)
            except AlreadyExists as e:
                self.metrics.allocation_conflicts.inc()
                if e.key is not None and e.key.kind == "IPClaim":
                    # Only an address was lost, and the commit wrote nothing: the pod and
                    # its endpoint are as read, so the next try chooses again without
                    # reading them again.
                    skip.add((e.key.namespace, _ip_int(e.key.name)))
                else:
                    read = None
                continue
            except Conflict:
                self.metrics.allocation_conflicts.inc()
                read = None
                continue
            return ep.addresses_of(entries), pod
        raise Contended(
            f"failed to allocate for {call.container_id}: {ATTEMPTS} claims lost to "
            "concurrent writers"
        )

    def _plan_add(
        self,
        call: IpamCall,
        pod: PodFacts,
        current: Stored | None,
        skip: set[tuple[str, int]],
        nsid: str,
    ) -> tuple[list[Write], list[dict[str, Any]]]:
        """The writes of one ADD and the endpoint entries it answers with (`nsid`: the
        sandbox namespace's identity, recorded on the endpoint), planned by claimplan.py
        around the store's reads and the allocator's choice."""
        add = self._add(call, nsid)
        # An IPAMClaim holds one interface: allocate for it alone.
        only = {call.ifname} if pod.ipam_claim else None
        if current is None:
            leases = self._choose(call, pod, skip, only)
            return claimplan.fresh(add, pod, None, claimplan.Holdings(), leases)
        entries = ep.entries_of(current.body)
        if claimplan.renewed(pod, current, call.container_id):
            # A new incarnation of the pod: free the old sandbox's addresses and allocate
            # afresh, in the same commit.
            holdings = self._holdings(pod.ref, entries)
            leases = self._choose(call, pod, skip, only)
            return claimplan.fresh(add, pod, current, holdings, leases)
        holdings = self._holdings(pod.ref, entries)
        kept = claimplan.keep(add, pod, current, holdings)
        for _ in kept.dropped:
            _ipam_log.warning(
                "endpoint %s/%s listed %s, which another pod holds; dropped from it",
                pod.namespace, pod.name, ", ".join(sorted(k.name for k in holdings.taken)),
            )  # fmt: skip
        leases = self._choose(call, pod, skip, {call.ifname}) if kept.needs_lease else []
        return claimplan.extend(add, pod, current, kept, leases)

    def _release(self, call: IpamCall) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """Release what the call's sandbox holds on its interface; the addresses this node
        stops using (for the conflict watch): those freed, and those its holder keeps (a
        StatefulSet's, a VM's or a claim's after its pod's DEL; a migration's side that
        left)."""
        for _ in range(ATTEMPTS):
            pod = self._facts(call)
            current = self._endpoint(pod)
            if current is not None and ep.migration_of(current.body):
                # A live migration's source or target going away (docs/kubevirt.md).
                new = claimplan.migration_ended(current.body, call.container_id)
                if new is not None:
                    try:
                        self.store.update(current.key, new, current.version)
                    except Conflict:
                        continue
                    return claimplan.held(current.body)
            if current is None or ep.container_of(current.body) != call.container_id:
                return set()  # nothing held by this sandbox: DEL is idempotent
            if stateful_valid(self.store, current.body):
                new = claimplan.detach(pod, call.container_id, current.body, call.ifname)
                try:
                    self.store.update(current.key, new, current.version)
                except Conflict:
                    continue
                return claimplan.held(current.body, call.ifname)
            try:
                gone = self._drop(current, [call.ifname])
            except (Conflict, NotFound):
                continue  # changed since read: read again
            self.metrics.releases.inc()
            return claimplan.ips_of(gone)
        raise Contended(f"failed to release {call.container_id}: conflicts")

    def _drop(self, current: Stored, nics: Sequence[str]) -> list[dict[str, Any]]:
        """Release the entries of `nics`; when no configured NIC is left, release all. The
        entries released."""
        ref = f"{current.key.namespace}/{current.key.name}"
        gone = claimplan.gone(current.body, nics)
        drop = claimplan.drop(current, nics, self._holdings(ref, gone).mine)
        self.store.commit(drop)
        self.view.wrote(drop)
        return gone


def _ip_int(text: str) -> int:
    return int(ipaddress.ip_address(text))
