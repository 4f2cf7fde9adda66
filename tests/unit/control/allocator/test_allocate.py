"""The allocator: candidate sources in Spiderpool's order, affinity filters, ranking,
picking without scanning, routes and gateways."""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spidernet.control.allocator.allocate import (
    PoolUse,
    allocate,
    annotation_routes,
)
from spidernet.control.allocator.candidates import usable_pools
from spidernet.control.allocator.errors import AllocationError, Reason
from spidernet.control.allocator.pick import pick
from spidernet.control.allocator.request import IpamRequest, Master, PodFacts
from spidernet.control.model.iprange import IntervalSet
from spidernet.control.model.labels import LabelSelector
from spidernet.control.model.resources import IPPool, Route


def v4(n: int) -> int:
    return int(ipaddress.ip_address(n))


def pool(name: str, cidr: str, ips: list[str], **kw: object) -> IPPool:
    net = ipaddress.ip_network(cidr)
    return IPPool(
        name=name,
        ip_version=net.version,
        subnet=net,
        ips=IntervalSet.parse(ips, net.version),
        **kw,  # type: ignore[arg-type]
    )


def request(
    annotations: Mapping[str, str] | None = None,
    ns_annotations: Mapping[str, str] | None = None,
    **kw: object,
) -> IpamRequest:
    pod = PodFacts(
        namespace="default",
        name="web-0",
        annotations=annotations or {},
        namespace_annotations=ns_annotations or {},
        node="node1",
    )
    args: dict[str, object] = {"container_id": "c1", "ifname": "eth0", "network": "net", "pod": pod}
    args.update(kw)
    return IpamRequest(**args)  # type: ignore[arg-type]


def empty_use(_: str) -> PoolUse:
    return PoolUse(frozenset(), 0)


POOLS = {
    "a4": pool(
        "a4", "10.0.0.0/24", ["10.0.0.10-10.0.0.20"], gateway=ipaddress.ip_address("10.0.0.1")
    ),
    "b4": pool("b4", "10.0.1.0/24", ["10.0.1.10-10.0.1.20"], default=True),
    "a6": pool("a6", "fd00::/64", ["fd00::10-fd00::20"], gateway=ipaddress.ip_address("fd00::1")),
}


def run(req: IpamRequest, pools: Mapping[str, IPPool] = POOLS, seed: int = 1) -> list[str]:
    leases = allocate(req, pools, {}, empty_use, rng=random.Random(seed))
    return [f"{lease.interface}:{lease.pool}:{lease.address}" for lease in leases]


def test_cluster_default_pools_are_the_last_source() -> None:
    [one] = run(request())
    assert one.startswith("eth0:b4:10.0.1.")


def test_ipam_config_defaults_beat_cluster_defaults() -> None:
    [one] = run(request(defaults_v4=("a4",)))
    assert one.startswith("eth0:a4:10.0.0.")


def test_namespace_annotation_beats_config() -> None:
    ns = {"ipam.spidernet.io/default-ipv4-ippool": '["b4"]'}
    [one] = run(request(ns_annotations=ns, defaults_v4=("a4",)))
    assert ":b4:" in one


def test_pod_ippool_annotation_beats_namespace_and_gives_dual_stack() -> None:
    anno = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["a4"], "ipv6": ["a6"]})}
    ns = {"ipam.spidernet.io/default-ipv4-ippool": '["b4"]'}
    got = run(request(annotations=anno, ns_annotations=ns))
    assert [g.split(":")[1] for g in got] == ["a4", "a6"]


def test_ippools_annotation_allocates_every_named_nic() -> None:
    anno = {
        "ipam.spidernet.io/ippools": json.dumps(
            [{"interface": "eth0", "ipv4": ["a4"]}, {"interface": "net1", "ipv4": ["b4"]}]
        )
    }
    got = run(request(annotations=anno))
    assert [g.split(":")[:2] for g in got] == [["eth0", "a4"], ["net1", "b4"]]


def test_unnamed_ippools_entries_get_placeholders_after_the_first() -> None:
    anno = {"ipam.spidernet.io/ippools": json.dumps([{"ipv4": ["a4"]}, {"ipv4": ["b4"]}])}
    got = run(request(annotations=anno))
    assert [g.split(":")[0] for g in got] == ["eth0", "#1"]


@pytest.mark.parametrize(
    ("anno", "message"),
    [
        ({"ipam.spidernet.io/ippool": "{not json"}, "not JSON"),
        ({"ipam.spidernet.io/ippool": '{"ipv4": "a4"}'}, "expected a list of pool names"),
        ({"ipam.spidernet.io/ippool": '{"ipv4": ["a4", "a4"]}'}, "listed twice"),
        ({"ipam.spidernet.io/ippool": '{"ipv5": ["a4"]}'}, "unknown field 'ipv5'"),
        ({"ipam.spidernet.io/ippools": '[{"interface": "eth0"}, {"ipv4": ["a4"]}]'}, "every"),
        ({"ipam.spidernet.io/ippools": '[{"interface": "net9", "ipv4": ["a4"]}]'}, "'eth0'"),
        ({"ipam.spidernet.io/subnet": '{"ipv4": ["s"]}'}, "Kubernetes mode"),
        ({"ipam.spidernet.io/routes": '[{"dst": "10.9.0.0/16"}]'}, "expected {dst, gw}"),
    ],
)
def test_bad_annotations_are_invalid_and_named(anno: dict[str, str], message: str) -> None:
    anno = {"ipam.spidernet.io/ippool": '{"ipv4": ["a4"]}', **anno}
    with pytest.raises(AllocationError) as info:
        run(request(annotations=anno))
    assert info.value.reason is Reason.INVALID
    assert message in str(info.value)


def test_wildcards_expand_against_pools_of_the_family() -> None:
    anno = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["?4"]})}
    got = run(request(annotations=anno))
    assert got[0].split(":")[1] in {"a4", "b4"}
    names = usable_pools(["*"], POOLS, 6, pod=request().pod, network="net", interface="eth0")
    assert [p.name for p in names] == ["a6"]


def test_affinity_filters_name_every_reason() -> None:
    pools = {
        "n": pool("n", "10.0.0.0/24", ["10.0.0.10"], node_name=("other",)),
        "s": pool("s", "10.0.1.0/24", ["10.0.1.10"], namespace_name=("kube-system",)),
        "p": pool("p", "10.0.2.0/24", ["10.0.2.10"], pod_affinity=LabelSelector({"app": "db"})),
        "m": pool("m", "10.0.3.0/24", ["10.0.3.10"], multus_name=("kube-system/other",)),
        "d": pool("d", "10.0.4.0/24", ["10.0.4.10"], disable=True),
    }
    anno = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["n", "s", "p", "m", "d", "x"]})}
    with pytest.raises(AllocationError) as info:
        run(request(annotations=anno), pools)
    text = str(info.value)
    assert info.value.reason is Reason.NO_POOL
    for reason in (
        "n: node 'node1' not in spec.nodeName",
        "s: namespace 'default' not in spec.namespaceName",
        "p: pod labels do not match spec.podAffinity",
        "m: network 'net' not in spec.multusName",
        "d: disabled",
        "x: no such pool",
    ):
        assert reason in text


def test_more_specific_affinity_ranks_first_and_ties_keep_listed_order() -> None:
    pools = {
        "plain1": pool("plain1", "10.0.0.0/24", ["10.0.0.10"]),
        "plain2": pool("plain2", "10.0.1.0/24", ["10.0.1.10"]),
        "node": pool("node", "10.0.2.0/24", ["10.0.2.10"], node_name=("node1",)),
        "pod": pool("pod", "10.0.3.0/24", ["10.0.3.10"], pod_affinity=LabelSelector({})),
    }
    ranked = usable_pools(
        ["plain2", "plain1", "node", "pod"],
        pools,
        4,
        pod=request().pod,
        network="net",
        interface="eth0",
    )
    assert [p.name for p in ranked] == ["pod", "node", "plain2", "plain1"]


def test_a_full_pool_falls_through_to_the_next_and_all_full_is_exhausted() -> None:
    pools = {
        "one": pool("one", "10.0.0.0/24", ["10.0.0.10"]),
        "two": pool("two", "10.0.1.0/24", ["10.0.1.10"]),
    }
    taken = {"one": PoolUse({v4(0x0A00000A)}, 1), "two": PoolUse(frozenset(), 0)}
    req = request(defaults_v4=("one", "two"))
    [lease] = allocate(req, pools, {}, taken.__getitem__, rng=random.Random(0))
    assert str(lease.address) == "10.0.1.10/24"
    taken["two"] = PoolUse({v4(0x0A00010A)}, 1)
    with pytest.raises(AllocationError) as info:
        allocate(req, pools, {}, taken.__getitem__, rng=random.Random(0))
    assert info.value.reason is Reason.EXHAUSTED
    assert "one (1 usable, 1 allocated)" in str(info.value)


def test_gateway_becomes_a_default_route_unless_clean_gateway() -> None:
    routes = (Route(ipaddress.ip_network("10.9.0.0/16"), ipaddress.ip_address("10.0.0.254")),)
    pools = {
        "a4": pool(
            "a4",
            "10.0.0.0/24",
            ["10.0.0.10"],
            gateway=ipaddress.ip_address("10.0.0.1"),
            routes=routes,
        )
    }
    [lease] = allocate(request(defaults_v4=("a4",)), pools, {}, empty_use, rng=random.Random(0))
    assert [(str(r.dst), str(r.gw)) for r in lease.routes] == [
        ("0.0.0.0/0", "10.0.0.1"),
        ("10.9.0.0/16", "10.0.0.254"),
    ]
    assert str(lease.gateway) == "10.0.0.1"
    [clean] = allocate(
        request(defaults_v4=("a4",), clean_gateway=True), pools, {}, empty_use, rng=random.Random(0)
    )
    assert [str(r.dst) for r in clean.routes] == ["10.9.0.0/16"]


def test_annotation_routes_go_to_the_nic_whose_subnet_holds_the_gateway() -> None:
    anno = {
        "ipam.spidernet.io/ippools": json.dumps(
            [{"interface": "eth0", "ipv4": ["a4"]}, {"interface": "net1", "ipv4": ["b4"]}]
        ),
        "ipam.spidernet.io/routes": json.dumps([{"dst": "172.16.0.0/16", "gw": "10.0.1.254"}]),
    }
    leases = allocate(request(annotations=anno), POOLS, {}, empty_use, rng=random.Random(0))
    by_nic = {lease.interface: [str(r.dst) for r in lease.routes] for lease in leases}
    assert "172.16.0.0/16" in by_nic["net1"]
    assert "172.16.0.0/16" not in by_nic["eth0"]
    bad = dict(anno, **{"ipam.spidernet.io/routes": '[{"dst": "1.0.0.0/8", "gw": "9.9.9.9"}]'})
    with pytest.raises(AllocationError, match=r"9\.9\.9\.9"):
        allocate(request(annotations=bad), POOLS, {}, empty_use, rng=random.Random(0))


def test_reserved_addresses_are_never_picked() -> None:
    p = {"a4": pool("a4", "10.0.0.0/24", ["10.0.0.10-10.0.0.12"])}
    reserved = {4: IntervalSet.parse(["10.0.0.10-10.0.0.11"], 4)}
    for seed in range(30):
        [lease] = allocate(
            request(defaults_v4=("a4",)), p, reserved, empty_use, rng=random.Random(seed)
        )
        assert str(lease.address.ip) == "10.0.0.12"


def test_annotation_routes_parse() -> None:
    assert annotation_routes(None) == ()
    [r] = annotation_routes('[{"dst": "10.1.0.0/16", "gw": "10.0.0.1"}]')
    assert str(r.dst) == "10.1.0.0/16"
    with pytest.raises(AllocationError, match="families differ"):
        annotation_routes('[{"dst": "10.1.0.0/16", "gw": "fd00::1"}]')


@given(
    size=st.integers(1, 300),
    taken=st.sets(st.integers(0, 299)),
    reserved=st.sets(st.integers(0, 299)),
    seed=st.integers(0, 2**32),
)
def test_pick_finds_a_free_address_exactly_when_one_exists(
    size: int, taken: set[int], reserved: set[int], seed: int
) -> None:
    base = 1000
    usable = IntervalSet([(base, base + size - 1)])
    taken_ips = {base + t for t in taken}
    res = IntervalSet([(base + r, base + r) for r in reserved])
    free = {base + i for i in range(size)} - taken_ips - {base + r for r in reserved}
    # The bound allocate() passes: a reserved address may also be taken, so not a sum.
    # (Claims lie inside the pool: validation refuses to drop an allocated address.)
    held = max(usable.intersection(res).count, len(taken_ips & set(range(base, base + size))))
    got = pick(usable, res, taken_ips, usable.count - held, random.Random(seed))
    if free:
        assert got in free
    else:
        assert got is None


def test_pick_spreads_concurrent_allocators() -> None:
    usable = IntervalSet([(0, 2047)])
    picks = {pick(usable, IntervalSet(), set(), 2048, random.Random(seed)) for seed in range(20)}
    # Twenty allocators starting at once: the lowest-free strategy gives all of them the same
    # address; random picks collide rarely.
    assert len(picks) >= 18


def test_pick_cost_does_not_depend_on_pool_size() -> None:
    """A 99%-full /16 needs about as many membership tests as a 99%-full /24."""

    class Counting(set[int]):
        probes = 0

        def __contains__(self, item: object) -> bool:
            Counting.probes += 1
            return super().__contains__(item)

    def probes(size: int) -> float:
        rng = random.Random(7)
        taken = Counting(rng.sample(range(size), size * 99 // 100))
        Counting.probes = 0
        for _ in range(50):
            ip = pick(IntervalSet([(0, size - 1)]), IntervalSet(), taken, size - len(taken), rng)
            assert ip is not None
        return Counting.probes / 50

    small, large = probes(256), probes(65536)
    assert large < 4 * max(small, 100)


def test_an_address_both_claimed_and_reserved_is_not_counted_twice() -> None:
    # 10.0.0.10 was allocated, then reserved; 10.0.0.11 is still free.
    p = {"a4": pool("a4", "10.0.0.0/24", ["10.0.0.10-10.0.0.11"])}
    reserved = {4: IntervalSet.parse(["10.0.0.10"], 4)}
    taken = PoolUse({int(ipaddress.ip_address("10.0.0.10"))}, 1)
    [lease] = allocate(
        request(defaults_v4=("a4",)), p, reserved, lambda _: taken, rng=random.Random(0)
    )
    assert str(lease.address.ip) == "10.0.0.11"


RAILS = {
    "rail0": pool("rail0", "10.81.0.0/24", ["10.81.0.10-10.81.0.20"]),
    "rail1": pool("rail1", "10.82.0.0/24", ["10.82.0.10-10.82.0.20"]),
}


@pytest.mark.parametrize(
    ("address", "chosen"), [("10.81.0.2/24", "rail0"), ("10.82.0.2/24", "rail1")]
)
def test_the_masters_subnet_picks_the_pool_among_those_listed(address: str, chosen: str) -> None:
    master = Master("rail", (ipaddress.ip_interface("fe80::1/64"), ipaddress.ip_interface(address)))
    req = request(defaults_v4=("rail0", "rail1"), master=master)
    (lease,) = allocate(req, RAILS, {}, empty_use, rng=random.Random(1))
    assert lease.pool == chosen


def test_a_master_in_no_pools_subnet_names_the_master_and_its_addresses() -> None:
    master = Master("eth9", (ipaddress.ip_interface("192.0.2.7/24"),))
    with pytest.raises(AllocationError) as e:
        allocate(
            request(defaults_v4=("rail0", "rail1"), master=master),
            RAILS,
            {},
            empty_use,
            rng=random.Random(1),
        )
    assert e.value.reason is Reason.NO_POOL
    assert "rail1: subnet 10.82.0.0/24 holds no address of master eth9 (192.0.2.7/24)" in str(
        e.value
    )


def test_the_master_narrows_only_the_calls_own_nic() -> None:
    anno = {
        "ipam.spidernet.io/ippools": json.dumps(
            [{"interface": "eth0", "ipv4": ["rail1"]}, {"interface": "net1", "ipv4": ["rail1"]}]
        )
    }
    master = Master("rail0", (ipaddress.ip_interface("10.81.0.2/24"),))
    req = request(annotations=anno, ifname="net1", master=master)
    with pytest.raises(AllocationError, match="net1 IPv4"):
        allocate(req, RAILS, {}, empty_use, rng=random.Random(1))
