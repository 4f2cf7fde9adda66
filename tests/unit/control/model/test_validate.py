"""Rules between resources: overlapping subnets and ranges, immutability, allocated IPs,
SpiderSubnet control, deletes, and the cluster-wide reserved set."""

from __future__ import annotations

import ipaddress

import pytest

from spidernet.control.model.errors import ValidationError, ValidationErrors
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.resources import IPPool, ReservedIP, Subnet
from spidernet.control.model.validate import (
    check_pool,
    check_pool_delete,
    check_reserved,
    check_subnet,
    check_subnet_delete,
    reserved_union,
)


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


def pool(name: str, subnet: str, *ips: str, exclude: tuple[str, ...] = ()) -> IPPool:
    net = ipaddress.ip_network(subnet)
    return IPPool(
        name,
        net.version,
        net,
        IntervalSet.parse(ips, net.version),
        IntervalSet.parse(exclude, net.version),
    )


def subnet(name: str, cidr: str, *ips: str, exclude: tuple[str, ...] = ()) -> Subnet:
    net = ipaddress.ip_network(cidr)
    return Subnet(
        name,
        net.version,
        net,
        IntervalSet.parse(ips, net.version),
        IntervalSet.parse(exclude, net.version),
    )


def errors_of(info: pytest.ExceptionInfo[ValidationError]) -> list[ValidationError]:
    err = info.value
    return list(err.errors) if isinstance(err, ValidationErrors) else [err]


def assert_refused(
    info: pytest.ExceptionInfo[ValidationError], kind: str, name: str, field: str, reason: str
) -> None:
    errors = errors_of(info)
    assert any(
        e.kind == kind and e.name == name and e.field == field and reason in e.reason
        for e in errors
    ), [str(e) for e in errors]


# -- check_pool ------------------------------------------------------------------------------------


def test_pool_subnet_must_not_overlap_another_pools_subnet() -> None:
    b = pool("b", "10.0.0.0/16", "10.0.0.1")
    with pytest.raises(ValidationError) as info:
        check_pool(pool("a", "10.0.5.0/24", "10.0.5.1"), [b])
    assert_refused(
        info,
        "SpiderIPPool",
        "a",
        "spec.subnet",
        "10.0.5.0/24 overlaps SpiderIPPool 'b' with spec.subnet 10.0.0.0/16",
    )
    # Disjoint subnets, the other family and an identical subnet are all fine.
    check_pool(pool("a", "10.1.0.0/24"), [b])
    check_pool(pool("a", "fd00::/64"), [b, pool("c", "fd01::/64")])
    check_pool(pool("a", "10.0.0.0/16", "10.0.0.2"), [b])


def test_pools_sharing_a_subnet_must_not_share_usable_addresses() -> None:
    b = pool("b", "10.0.0.0/24", "10.0.0.10-10.0.0.20", exclude=("10.0.0.15",))
    with pytest.raises(ValidationError) as info:
        check_pool(pool("a", "10.0.0.0/24", "10.0.0.1-10.0.0.12", "10.0.0.20"), [b])
    assert_refused(
        info,
        "SpiderIPPool",
        "a",
        "spec.ips",
        "10.0.0.10-10.0.0.12, 10.0.0.20 already belong to SpiderIPPool 'b'",
    )
    # Only usable addresses count: b excludes .15, so a may take it.
    check_pool(pool("a", "10.0.0.0/24", "10.0.0.15", "10.0.0.21-10.0.0.30"), [b])


def test_the_old_version_of_the_same_pool_is_not_a_conflict() -> None:
    old = pool("a", "10.0.0.0/24", "10.0.0.1-10.0.0.9")
    check_pool(pool("a", "10.0.0.0/24", "10.0.0.1-10.0.0.20"), [old], old)


def test_subnet_and_version_are_immutable() -> None:
    old = pool("a", "10.0.0.0/24")
    with pytest.raises(ValidationError) as info:
        check_pool(pool("a", "10.0.1.0/24"), [], old)
    assert_refused(
        info, "SpiderIPPool", "a", "spec.subnet", "cannot change from 10.0.0.0/24 to 10.0.1.0/24"
    )
    with pytest.raises(ValidationError) as info:
        check_pool(pool("a", "fd00::/64"), [], old)
    assert_refused(info, "SpiderIPPool", "a", "spec.ipVersion", "cannot change from 4 to 6")


def test_allocated_addresses_cannot_be_removed() -> None:
    old = pool("a", "10.0.0.0/24", "10.0.0.1-10.0.0.9")
    allocated = {ip("10.0.0.2"), ip("10.0.0.8")}
    with pytest.raises(ValidationError) as info:
        check_pool(
            pool("a", "10.0.0.0/24", "10.0.0.1-10.0.0.9", exclude=("10.0.0.8",)),
            [old],
            old,
            allocated,
        )
    assert_refused(
        info, "SpiderIPPool", "a", "spec.ips", "cannot remove 10.0.0.8: allocated to pods"
    )
    many = {ip(f"10.0.0.{i}") for i in range(1, 10)}
    with pytest.raises(ValidationError) as info:
        check_pool(pool("a", "10.0.0.0/24", "10.0.0.9"), [old], old, many)
    assert_refused(
        info,
        "SpiderIPPool",
        "a",
        "spec.ips",
        "cannot remove 10.0.0.1, 10.0.0.2, 10.0.0.3 and 5 more",
    )
    check_pool(pool("a", "10.0.0.0/24", "10.0.0.2-10.0.0.8"), [old], old, allocated)


def test_pool_must_fit_the_controlling_subnet() -> None:
    s = subnet("s", "10.0.0.0/24", "10.0.0.1-10.0.0.50", exclude=("10.0.0.10",))
    with pytest.raises(ValidationError) as info:
        check_pool(pool("a", "10.0.0.0/24", "10.0.0.5-10.0.0.12", "10.0.0.60"), [], subnets=[s])
    assert_refused(
        info,
        "SpiderIPPool",
        "a",
        "spec.ips",
        "10.0.0.10, 10.0.0.60 are not usable addresses of SpiderSubnet 's'",
    )
    check_pool(pool("a", "10.0.0.0/24", "10.0.0.11-10.0.0.12"), [], subnets=[s])
    # A subnet of another CIDR does not control the pool.
    check_pool(pool("a", "10.1.0.0/24", "10.1.0.1"), [], subnets=[s])


def test_all_pool_conflicts_are_reported_together() -> None:
    old = pool("a", "10.0.0.0/24", "10.0.0.1")
    with pytest.raises(ValidationErrors) as info:
        check_pool(
            pool("a", "10.0.0.0/16", "10.0.0.2"), [pool("b", "10.0.9.0/24")], old, {ip("10.0.0.1")}
        )
    assert {e.field for e in info.value} == {"spec.subnet", "spec.ips"}
    assert len(info.value.errors) == 3


# -- check_subnet ----------------------------------------------------------------------------------


def test_subnets_of_a_family_must_not_overlap_even_when_equal() -> None:
    existing = [subnet("s1", "10.0.0.0/16"), subnet("v6", "fd00::/48")]
    for cidr in ("10.0.0.0/16", "10.0.4.0/24", "10.0.0.0/8"):
        with pytest.raises(ValidationError) as info:
            check_subnet(subnet("s2", cidr), existing, [])
        assert_refused(info, "SpiderSubnet", "s2", "spec.subnet", "overlaps SpiderSubnet 's1'")
    check_subnet(subnet("s2", "10.1.0.0/16"), existing, [])
    check_subnet(subnet("s2", "fd01::/48"), existing, [])
    check_subnet(subnet("s1", "10.0.0.0/16", "10.0.0.1"), existing, [], existing[0])


def test_subnet_must_not_overlap_a_pool_of_another_cidr() -> None:
    with pytest.raises(ValidationError) as info:
        check_subnet(subnet("s", "10.0.0.0/16"), [], [pool("p", "10.0.3.0/24")])
    assert_refused(
        info,
        "SpiderSubnet",
        "s",
        "spec.subnet",
        "10.0.0.0/16 overlaps SpiderIPPool 'p' with spec.subnet 10.0.3.0/24",
    )
    check_subnet(subnet("s", "10.1.0.0/16"), [], [pool("p", "10.0.3.0/24")])


def test_subnet_must_contain_the_pools_of_its_cidr() -> None:
    p = pool("p", "10.0.0.0/24", "10.0.0.5-10.0.0.9")
    with pytest.raises(ValidationError) as info:
        check_subnet(subnet("s", "10.0.0.0/24", "10.0.0.1-10.0.0.7"), [], [p])
    assert_refused(
        info,
        "SpiderSubnet",
        "s",
        "spec.ips",
        "SpiderIPPool 'p' owns 10.0.0.8-10.0.0.9, which this subnet would not contain",
    )
    check_subnet(subnet("s", "10.0.0.0/24", "10.0.0.1-10.0.0.99"), [], [p])


def test_subnet_update_rules() -> None:
    old = subnet("s", "10.0.0.0/24", "10.0.0.1-10.0.0.9")
    with pytest.raises(ValidationError) as info:
        check_subnet(subnet("s", "10.0.1.0/24"), [old], [], old)
    assert_refused(info, "SpiderSubnet", "s", "spec.subnet", "cannot change from")
    # Shrinking under a pool is refused through the containment rule.
    p = pool("p", "10.0.0.0/24", "10.0.0.8-10.0.0.9")
    with pytest.raises(ValidationError) as info:
        check_subnet(subnet("s", "10.0.0.0/24", "10.0.0.1-10.0.0.8"), [old], [p], old)
    assert_refused(info, "SpiderSubnet", "s", "spec.ips", "SpiderIPPool 'p' owns 10.0.0.9")


# -- reserved, deletes -----------------------------------------------------------------------------


def test_reserved_ip_version_is_immutable() -> None:
    old = ReservedIP("r", 4, IntervalSet.parse(["10.0.0.1"], 4))
    with pytest.raises(ValidationError) as info:
        check_reserved(ReservedIP("r", 6, IntervalSet.parse(["fd00::1"], 6)), old)
    assert_refused(info, "SpiderReservedIP", "r", "spec.ipVersion", "cannot change from 4 to 6")
    check_reserved(ReservedIP("r", 4, IntervalSet.parse(["10.0.0.2"], 4)), old)
    check_reserved(old)


def test_pool_delete_with_allocations_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        check_pool_delete(pool("x", "10.0.0.0/24"), 3)
    assert (
        str(info.value) == "cannot delete SpiderIPPool 'x' with 3 allocated IPs; release them first"
    )
    assert (info.value.kind, info.value.name, info.value.field) == ("SpiderIPPool", "x", "")
    check_pool_delete(pool("x", "10.0.0.0/24"), 0)


def test_subnet_delete_with_pools_is_refused() -> None:
    s = subnet("s", "10.0.0.0/24", "10.0.0.1-10.0.0.9")
    with pytest.raises(ValidationError, match="SpiderIPPool 'p' take addresses from it"):
        check_subnet_delete(s, [pool("p", "10.0.0.0/24", "10.0.0.1"), pool("q", "10.1.0.0/24")])
    check_subnet_delete(s, [pool("q", "10.1.0.0/24", "10.1.0.1"), pool("e", "10.0.0.0/24")])


def test_reserved_union_per_family() -> None:
    reserved = [
        ReservedIP("a", 4, IntervalSet.parse(["10.0.0.1-10.0.0.5"], 4)),
        ReservedIP("b", 4, IntervalSet.parse(["10.0.0.4-10.0.0.9"], 4)),
        ReservedIP("c", 6, IntervalSet.parse(["fd00::1"], 6)),
    ]
    assert reserved_union(reserved, 4).to_strings(4) == ["10.0.0.1-10.0.0.9"]
    assert reserved_union(reserved, 6).to_strings(6) == ["fd00::1"]
    assert reserved_union([], 4).is_empty
