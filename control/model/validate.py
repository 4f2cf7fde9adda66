"""Rules between resources (Spiderpool's webhooks that list other objects).

Pure functions: the caller passes the resources that exist now (they may include the old
version of the one being written; entries with the same name are skipped) and, for pools,
the addresses currently allocated. Sources: `ippool_validate.go` (`validateIPPoolCIDR`,
`validateIPPoolAvailableIPs`, `validateIPPoolIPInUse`, `validateIPPoolShouldNotBeChanged`),
`ippool_subnet_validate.go`, `subnet_validate.go` (`validateSubnetCIDR`,
`validateOrphanIPPool`), `reservedip_validate.go`, and the delete webhooks.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from spidernet.control.model.errors import Collector
from spidernet.control.model.iprange import IntervalSet, format_address
from spidernet.control.model.resources import IPNetwork, IPPool, ReservedIP, Subnet

_SHOWN = 3  # how many offending addresses a message names before "and N more"


def _overlap(a: IPNetwork, b: IPNetwork) -> bool:
    # Two CIDRs either nest or are disjoint, so comparing their bounds is enough.
    return a.version == b.version and (
        int(a.network_address) <= int(b.broadcast_address)
        and int(b.network_address) <= int(a.broadcast_address)
    )


def _immutable(
    c: Collector, new: IPPool | Subnet | ReservedIP, old: IPPool | Subnet | ReservedIP
) -> None:
    if new.ip_version != old.ip_version:
        c.add("spec.ipVersion", f"cannot change from {old.ip_version} to {new.ip_version}")
    if (
        isinstance(new, IPPool | Subnet)
        and isinstance(old, IPPool | Subnet)
        and new.subnet != old.subnet
    ):
        c.add(
            "spec.subnet",
            f"cannot change from {old.subnet} to {new.subnet}; create a new resource instead",
        )


def check_pool(
    new: IPPool,
    existing_pools: Sequence[IPPool],
    old: IPPool | None = None,
    allocated: Collection[int] = (),
    *,
    subnets: Sequence[Subnet] = (),
) -> None:
    """Check a SpiderIPPool being created (`old` None) or updated against the others.

    - its subnet must not overlap another pool's subnet of the same family unless equal;
    - pools with the same subnet must not share usable addresses;
    - on update, `ipVersion` and `subnet` are immutable;
    - no address in `allocated` (ints) may leave the usable set;
    - when a SpiderSubnet with the same CIDR exists (Spiderpool makes it the pool's
      controller), the pool's usable addresses must lie within the subnet's.
    Raises ValidationError (or ValidationErrors).
    """
    c = Collector(IPPool.KIND, new.name)
    if old is not None:
        _immutable(c, new, old)
    version = new.ip_version
    for pool in existing_pools:
        if pool.name == new.name or pool.ip_version != version:
            continue
        if pool.subnet != new.subnet:
            if _overlap(pool.subnet, new.subnet):
                c.add(
                    "spec.subnet",
                    f"{new.subnet} overlaps SpiderIPPool '{pool.name}' with "
                    f"spec.subnet {pool.subnet}; pools must use the same subnet or "
                    "disjoint ones",
                )
            continue
        shared = new.usable.intersection(pool.usable)
        if not shared.is_empty:
            c.add(
                "spec.ips",
                f"{shared.describe(version)} already belong to SpiderIPPool "
                f"'{pool.name}' (usable addresses are spec.ips minus spec.excludeIPs)",
            )
    usable = new.usable
    lost = sorted(ip for ip in allocated if ip not in usable)
    if lost:
        shown = ", ".join(format_address(ip, version) for ip in lost[:_SHOWN])
        more = f" and {len(lost) - _SHOWN} more" if len(lost) > _SHOWN else ""
        c.add(
            "spec.ips",
            f"cannot remove {shown}{more}: allocated to pods; release them first "
            "(usable addresses are spec.ips minus spec.excludeIPs)",
        )
    for subnet in subnets:
        if subnet.ip_version == version and subnet.subnet == new.subnet:
            outside = usable.difference(subnet.usable)
            if not outside.is_empty:
                c.add(
                    "spec.ips",
                    f"{outside.describe(version)} are not usable addresses of "
                    f"SpiderSubnet '{subnet.name}', which controls {new.subnet}",
                )
    c.raise_if_any()


def check_subnet(
    new: Subnet,
    existing_subnets: Sequence[Subnet],
    pools: Sequence[IPPool],
    old: Subnet | None = None,
) -> None:
    """Check a SpiderSubnet being created or updated against subnets and pools.

    - subnets of the same family must not overlap (not even when equal);
    - it must not overlap a pool whose subnet is a different CIDR;
    - pools with the same CIDR must keep all their usable addresses inside its usable set
      (which also stops an update from shrinking under them);
    - on update, `ipVersion` and `subnet` are immutable.
    """
    c = Collector(Subnet.KIND, new.name)
    if old is not None:
        _immutable(c, new, old)
    for subnet in existing_subnets:
        if subnet.name != new.name and _overlap(subnet.subnet, new.subnet):
            c.add(
                "spec.subnet",
                f"{new.subnet} overlaps SpiderSubnet '{subnet.name}' with "
                f"spec.subnet {subnet.subnet}",
            )
    usable = new.usable
    for pool in pools:
        if pool.ip_version != new.ip_version:
            continue
        if pool.subnet != new.subnet:
            if _overlap(pool.subnet, new.subnet):
                c.add(
                    "spec.subnet",
                    f"{new.subnet} overlaps SpiderIPPool '{pool.name}' with "
                    f"spec.subnet {pool.subnet}",
                )
            continue
        outside = pool.usable.difference(usable)
        if not outside.is_empty:
            c.add(
                "spec.ips",
                f"SpiderIPPool '{pool.name}' owns {outside.describe(new.ip_version)}, "
                "which this subnet would not contain",
            )
    c.raise_if_any()


def check_reserved(new: ReservedIP, old: ReservedIP | None = None) -> None:
    """Check a SpiderReservedIP update: `ipVersion` is immutable."""
    c = Collector(ReservedIP.KIND, new.name)
    if old is not None:
        _immutable(c, new, old)
    c.raise_if_any()


def check_pool_delete(pool: IPPool, allocated_count: int) -> None:
    """A pool with allocated addresses cannot be deleted (Spiderpool's delete webhook)."""
    if allocated_count > 0:
        c = Collector(IPPool.KIND, pool.name)
        raise c.error(
            "",
            f"cannot delete SpiderIPPool '{pool.name}' with {allocated_count} "
            "allocated IPs; release them first",
        )


def check_subnet_delete(subnet: Subnet, pools: Sequence[IPPool]) -> None:
    """A subnet that still controls pools (same CIDR) cannot be deleted."""
    owned = [
        p.name
        for p in pools
        if p.ip_version == subnet.ip_version and p.subnet == subnet.subnet and not p.usable.is_empty
    ]
    if owned:
        names = ", ".join(f"'{n}'" for n in owned[:_SHOWN])
        more = f" and {len(owned) - _SHOWN} more" if len(owned) > _SHOWN else ""
        raise Collector(Subnet.KIND, subnet.name).error(
            "",
            f"cannot delete SpiderSubnet '{subnet.name}': SpiderIPPool {names}{more} "
            "take addresses from it; delete them first",
        )


def reserved_union(reserved: Sequence[ReservedIP], version: int) -> IntervalSet:
    """Every address reserved for one family, cluster-wide (Spiderpool's
    `AssembleReservedIPs`): the allocator excludes these from every pool."""
    out = IntervalSet()
    for r in reserved:
        if r.ip_version == version:
            out = out.union(r.ips)
    return out
