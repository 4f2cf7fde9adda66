"""The allocation decision for one CNI ADD: candidates -> filter -> sort -> pick -> routes.

Pure: the pools, the reserved addresses, what is taken and the random source are arguments.
The caller claims the chosen addresses in the store atomically; if a claim loses a race it
marks the address taken and asks again.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass

from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import IPPool, Route

from .candidates import sources, usable_pools
from .errors import AllocationError, Reason
from .pick import pick
from .request import ANNO_ROUTES, IpamRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class Lease:
    """One address given to one NIC: what the CNI result and the endpoint record carry."""

    interface: str
    pool: str
    address: IPInterface
    gateway: IPAddress | None
    clean_gateway: bool
    routes: tuple[Route, ...]

    @property
    def version(self) -> int:
        """4 or 6."""
        return self.address.version


@dataclass(frozen=True)
class PoolUse:
    """What the caller knows of a pool's use: the taken addresses and how many there are."""

    taken: Container[int]
    count: int


def annotation_routes(text: str | None) -> tuple[Route, ...]:
    """The pod's `ipam.spidernet.io/routes` annotation: `[{"dst": CIDR, "gw": IP}, ...]`."""
    if not text:
        return ()
    what = f"invalid annotation {ANNO_ROUTES}"
    try:
        items = json.loads(text)
    except ValueError as e:
        raise AllocationError(Reason.INVALID, f"{what}: not JSON ({e})") from e
    if not isinstance(items, list):
        raise AllocationError(Reason.INVALID, f"{what}: expected a list of {{dst, gw}}")
    out: list[Route] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"dst", "gw"}:
            raise AllocationError(Reason.INVALID, f"{what}[{i}]: expected {{dst, gw}}")
        try:
            dst = ipaddress.ip_network(item["dst"])
            gw = ipaddress.ip_address(item["gw"])
        except (ValueError, TypeError) as e:
            raise AllocationError(Reason.INVALID, f"{what}[{i}]: {e}") from e
        if dst.version != gw.version:
            raise AllocationError(Reason.INVALID, f"{what}[{i}]: dst and gw families differ")
        out.append(Route(dst, gw))
    return tuple(out)


def lease_for(pool: IPPool, interface: str, ip: int, clean_gateway: bool) -> Lease:
    """The lease of address `ip` from `pool`, with the pool's gateway and routes."""
    address = ipaddress.ip_interface(f"{ipaddress.ip_address(ip)}/{pool.subnet.prefixlen}")
    routes = pool.routes
    if pool.gateway is not None and not clean_gateway:
        default = ipaddress.ip_network("0.0.0.0/0" if pool.ip_version == 4 else "::/0")
        routes = (Route(default, pool.gateway), *routes)
    return Lease(interface, pool.name, address, pool.gateway, clean_gateway, routes)


def attach_routes(leases: Sequence[Lease], extra: Sequence[Route]) -> list[Lease]:
    """Give each annotation route to the NIC whose subnet holds its gateway (§2.8); a route
    no NIC can reach is an error here (Spiderpool drops it with a log line)."""
    out = list(leases)
    for route in extra:
        for i, lease in enumerate(out):
            if route.gw in lease.address.network:
                out[i] = Lease(
                    lease.interface,
                    lease.pool,
                    lease.address,
                    lease.gateway,
                    lease.clean_gateway,
                    (*lease.routes, route),
                )
                break
        else:
            raise AllocationError(
                Reason.INVALID,
                f"invalid annotation {ANNO_ROUTES}: gateway {route.gw} of {route.dst} is in no "
                "subnet of this pod",
            )
    return out


def allocate(
    request: IpamRequest,
    pools: Mapping[str, IPPool],
    reserved: Mapping[int, IntervalSet],
    use: Callable[[str], PoolUse],
    *,
    rng: random.Random,
    skip: Container[tuple[str, int]] = frozenset(),
) -> list[Lease]:
    """Leases for every NIC the request's sources name (usually one).

    `use(pool)` tells what is taken; `skip` holds (pool, ip) pairs the caller found taken
    since. For each NIC and family the sorted candidates are tried in order and the first
    with a free address wins; when all are full the error names each pool's size.
    """
    leases: list[Lease] = []
    picked: set[tuple[str, int]] = set()
    for nic in sources(request, list(pools.values())):
        for version, names in ((4, nic.v4), (6, nic.v6)):
            if not names:
                continue
            candidates = usable_pools(
                names,
                pools,
                version,
                pod=request.pod,
                network=request.network,
                interface=nic.interface,
                # (Only the call's NIC: the masters of the others are not known here.)
                master=request.master if nic.interface == request.ifname else None,
            )
            full: list[str] = []
            for pool in candidates:
                u = use(pool.name)
                mine = {ip for p, ip in picked if p == pool.name}
                blocked = _Blocked(u.taken, mine, pool.name, skip)
                res = reserved.get(version, IntervalSet())
                usable = pool.usable
                # An upper bound on the free addresses: a reserved address may also be
                # claimed (reserved after it was allocated), so the two are not summed.
                held = max(usable.intersection(res).count, u.count + len(mine))
                free = usable.count - held
                ip = pick(usable, res, blocked, free, rng)
                if ip is None:
                    full.append(f"{pool.name} ({usable.count} usable, {u.count} allocated)")
                    continue
                picked.add((pool.name, ip))
                leases.append(lease_for(pool, nic.interface, ip, nic.clean_gateway))
                break
            else:
                why = f"all IP addresses used out for {nic.interface} IPv{version}: "
                why += ", ".join(full)
                if nic.auto_pool_of:
                    # The controller grows an auto pool after the application scales.
                    why += f" (the auto pool of {nic.auto_pool_of} is not sized for this pod yet)"
                raise AllocationError(Reason.EXHAUSTED, why, waiting=bool(nic.auto_pool_of))
    if not leases:
        raise AllocationError(Reason.NO_POOL, "no IPPool available: the candidates name no pool")
    return attach_routes(leases, annotation_routes(request.pod.annotations.get(ANNO_ROUTES)))


@dataclass(frozen=True)
class _Blocked:
    """Addresses that may not be picked: taken in the store, picked earlier in this call, or
    found taken by a lost race."""

    taken: Container[int]
    mine: Container[int]
    pool: str
    skip: Container[tuple[str, int]]

    def __contains__(self, ip: object) -> bool:
        return ip in self.taken or ip in self.mine or (self.pool, ip) in self.skip
