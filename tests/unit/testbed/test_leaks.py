"""The leak checker's comparison: what counts as left behind, and what is the kernel's own."""

from __future__ import annotations

import ipaddress

from spidernet.node.netlink.records import (
    AF_INET,
    RT_TABLE_LOCAL,
    RTPROT_KERNEL,
    Address,
    Link,
    Neighbour,
    Route,
    Rule,
    State,
)
from spidernet.testbed.leaks import diff, footprint

LO = Link(1, "lo", "", "00:00:00:00:00:00", 65536, True)
ETH = Link(2, "eth0", "veth", "02:00:00:00:00:01", 1500, True)
BASE = State(links=(LO, ETH), addresses=(), routes=(), rules=(), neighbours=())


def with_(**kw: object) -> State:
    fields = {k: getattr(BASE, k) for k in ("links", "addresses", "routes", "rules", "neighbours")}
    fields.update(kw)
    return State(**fields)


def test_identical_states_have_no_diff() -> None:
    assert diff(footprint(BASE), footprint(BASE)) == []


def test_a_leaked_veth_and_rule_are_named() -> None:
    leaked = with_(
        links=(LO, ETH, Link(3, "veth1234", "veth", "02:00:00:00:00:09", 1500, False)),
        rules=(Rule(AF_INET, 100, 500, src=ipaddress.ip_network("192.0.2.5/32")),),
    )
    assert diff(footprint(BASE), footprint(leaked)) == [
        "left behind: link 'veth1234' (veth)",
        "left behind: rule 100 (family 2) from 192.0.2.5/32 table 500 action 1",
    ]


def test_removed_objects_are_named_too() -> None:
    assert diff(footprint(BASE), footprint(with_(links=(LO,)))) == ["removed: link 'eth0' (veth)"]


def test_kernel_derived_state_is_ignored() -> None:
    net = ipaddress.ip_network("192.0.2.0/24")
    derived = with_(
        addresses=(Address(2, ipaddress.ip_interface("fe80::1/64"), scope=253),),
        routes=(
            Route(net, oif=2, proto=RTPROT_KERNEL),
            Route(ipaddress.ip_network("192.0.2.1/32"), table=RT_TABLE_LOCAL, oif=2),
            Route(ipaddress.ip_network("fe80::/64"), oif=2, proto=3),
        ),
        neighbours=(
            Neighbour(2, ipaddress.ip_address("192.0.2.7"), "02:00:00:00:00:07", state=0x02),
        ),
    )
    assert diff(footprint(BASE), footprint(derived)) == []


def test_static_routes_addresses_and_neighbours_count() -> None:
    made = with_(
        addresses=(Address(2, ipaddress.ip_interface("192.0.2.10/24")),),
        routes=(Route(ipaddress.ip_network("10.96.0.0/12"), table=500, oif=2),),
        neighbours=(Neighbour(2, ipaddress.ip_address("192.0.2.7"), "02:00:00:00:00:07"),),
    )
    assert diff(footprint(BASE), footprint(made)) == [
        "left behind: address 192.0.2.10/24 on 'eth0'",
        "left behind: route 10.96.0.0/12 dev 'eth0' table 500 type 1",
        "left behind: neighbour 192.0.2.7 lladdr 02:00:00:00:00:07 dev 'eth0'",
    ]
