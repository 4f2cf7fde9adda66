"""The coordinator's planner: whole operation lists for underlay, several NICs and overlay."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from typing import Any

import pytest

from spidernet.netconf.coordinator.config import parse_coordinator, policy_table
from spidernet.node.coordinator.facts import HostState, NicFacts, PodState, RouteFact
from spidernet.node.coordinator.plan import (
    CoordinatorPlanError,
    Request,
    host_veth_name,
    plan_add,
    prefixed_mac,
)
from spidernet.node.plan.ops import (
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    Announce,
    DeleteRoute,
    ReplyViaLink,
    SetLinkUp,
    SetMac,
    SetSysctl,
    SetTxQueueLen,
    undo_all,
)

CID = "0123456789abcdef"
HV = host_veth_name(CID)
HOST_MAC, POD_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
net = ipaddress.ip_network
ip = ipaddress.ip_address
iface = ipaddress.ip_interface


def conf(**keys: Any) -> Any:
    return parse_coordinator({"cniVersion": "1.0.0", "name": "n", "type": "x", **keys})


def request(ifname: str = "eth0", **keys: Any) -> Request:
    return Request(CID, ifname, conf(**keys), HOST_MAC, POD_MAC)


ETH0 = NicFacts("eth0", "aa:bb:cc:00:00:01", addresses=(iface("192.0.2.10/24"),))
ETH0_DUAL = NicFacts(
    "eth0", "aa:bb:cc:00:00:01", addresses=(iface("192.0.2.10/24"), iface("2001:db8:1::10/64"))
)
NET1 = NicFacts("net1", "aa:bb:cc:00:00:02", addresses=(iface("198.51.100.10/24"),))
HOST = HostState(host_ips=(ip("192.0.2.2"), ip("2001:db8:1::2")))
MAIN_ROUTES = (
    RouteFact(net("0.0.0.0/0"), "eth0", ip("192.0.2.1")),
    RouteFact(net("192.0.2.0/24"), "eth0", scope=253, src=ip("192.0.2.10")),
    RouteFact(net("0.0.0.0/0"), "net1", ip("198.51.100.1")),
    RouteFact(net("198.51.100.0/24"), "net1", scope=253, src=ip("198.51.100.10")),
)
SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.eth0.rp_filter": "0",
    "net.ipv4.conf.net1.rp_filter": "0",
}


def test_host_veth_name_fits_ifnamsiz_and_does_not_collide_on_a_shared_prefix() -> None:
    assert len(HV) == 15
    assert HV.startswith("veth")
    assert host_veth_name("lab-pod1") != host_veth_name("lab-pod2")
    assert policy_table(1) == 101  # the second NIC; the first keeps main
    assert policy_table(2) == 102


def test_underlay_first_nic_plan() -> None:
    pod = PodState(nics=(ETH0,), sysctls=SYSCTLS)
    ops = plan_add(
        request(serviceCIDR=["10.96.0.0/12"]), pod, HOST, mode="underlay", first=True, nic_index=0
    )
    assert ops == (
        AddVeth(HV, "veth0", 1500, HOST_MAC, POD_MAC),
        SetLinkUp("host", HV),
        SetLinkUp("pod", "veth0"),
        # rp_filter (default 0) differs from the pod's 1; IPv6 is not enabled: no IPv6
        # address in the pod.
        SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "0", "1"),
        AddNeighbour("pod", "veth0", ip("192.0.2.2"), HOST_MAC),
        # Every host address gets a neighbour entry, IPv6 ones too, though no IPv6 route is
        # planned for an IPv4-only pod.
        AddNeighbour("pod", "veth0", ip("2001:db8:1::2"), HOST_MAC),
        AddRule("host", socket.AF_INET, 1000, 500, shared=True),
        AddNeighbour("host", HV, ip("192.0.2.10"), POD_MAC),
        AddRoute("host", net("192.0.2.10/32"), HV, scope=253, table=500, src=ip("192.0.2.2")),
        AddRoute("pod", net("192.0.2.2/32"), "veth0", scope=253, src=ip("192.0.2.10")),
        AddRoute(
            "pod", net("10.96.0.0/12"), "veth0", gateway=ip("192.0.2.2"), src=ip("192.0.2.10")
        ),
        ReplyViaLink("pod", "veth0", 1, 100),
        AddRule("pod", socket.AF_INET, 990, 100, fwmark=1),
        AddRoute("pod", net("0.0.0.0/0"), "veth0", gateway=ip("192.0.2.2"), table=100),
        Announce("pod", "eth0", ip("192.0.2.10")),
    )


def test_dual_stack_underlay_enables_ipv6_and_routes_both_families() -> None:
    pod = PodState(nics=(ETH0_DUAL,), sysctls=SYSCTLS)
    ops = plan_add(request(), pod, HOST, mode="underlay", first=True, nic_index=0)
    assert SetSysctl("pod", "net.ipv6.conf.all.disable_ipv6", "0", "1") in ops
    assert AddRule("host", socket.AF_INET6, 1000, 500, shared=True) in ops
    v6_host_route = AddRoute("pod", net("2001:db8:1::2/128"), "veth0", scope=253)
    assert v6_host_route in ops  # no src on IPv6 routes
    assert AddRule("pod", socket.AF_INET6, 990, 100, fwmark=1) in ops
    assert [o for o in ops if isinstance(o, Announce)] == [
        Announce("pod", "eth0", ip("192.0.2.10")),
        Announce("pod", "eth0", ip("2001:db8:1::10")),
    ]


def test_nothing_is_announced_on_a_noarp_nic() -> None:
    # ipvlan in L3 mode: IFF_NOARP; a packet socket cannot send ARP or NA on it (ENOBUFS)
    # and no neighbour would ask anyway.
    pod = PodState(nics=(dataclasses.replace(ETH0_DUAL, noarp=True),), sysctls=SYSCTLS)
    ops = plan_add(request(), pod, HOST, mode="underlay", first=True, nic_index=0)
    assert not [o for o in ops if isinstance(o, Announce)]
    assert AddRule("host", socket.AF_INET6, 1000, 500, shared=True) in ops  # the rest stays


def test_tuning_mac_prefix_and_txqueuelen_happen_in_the_pod() -> None:
    pod = PodState(nics=(ETH0,), sysctls=SYSCTLS)
    ops = plan_add(
        request(podMACPrefix="0a:1b", txQueueLen=2000, podRPFilter=-1),
        pod,
        HOST,
        mode="underlay",
        first=True,
        nic_index=0,
    )
    assert SetMac("pod", "eth0", "0a:1b:c0:00:02:0a", "aa:bb:cc:00:00:01") in ops
    assert SetTxQueueLen("pod", "eth0", 2000, 1000) in ops
    assert not any(isinstance(o, SetSysctl) and "rp_filter" in o.key for o in ops)
    assert prefixed_mac("0a:1b", [iface("2001:db8::a:b:c:d/64")]) == "0a:1b:00:0c:00:0d"


def test_second_underlay_nic_gets_its_table_and_keeps_eth0_default() -> None:
    veth0 = NicFacts("veth0", POD_MAC)
    pod = PodState(nics=(ETH0, NET1), veth0=veth0, main_routes=MAIN_ROUTES, sysctls=SYSCTLS)
    ops = plan_add(request("net1"), pod, HOST, mode="underlay", first=False, nic_index=1)
    moved = DeleteRoute("pod", net("0.0.0.0/0"), "net1", ip("198.51.100.1"))
    assert ops == (
        SetSysctl("pod", "net.ipv4.conf.all.rp_filter", "0", "1"),
        AddRule("host", socket.AF_INET, 1000, 500, shared=True),
        AddNeighbour("host", HV, ip("198.51.100.10"), POD_MAC),
        AddRoute("host", net("198.51.100.10/32"), HV, scope=253, table=500, src=ip("192.0.2.2")),
        # The host is reached through veth0 from net1's table too.
        AddRoute("pod", net("192.0.2.2/32"), "veth0", None, 101, 253, ip("198.51.100.10")),
        AddRule("pod", socket.AF_INET, 1000, 101, src=net("198.51.100.10/32")),
        AddRoute("pod", net("0.0.0.0/0"), "net1", ip("198.51.100.1"), 101),
        moved,  # eth0 keeps the default route in main
        AddRoute("pod", net("198.51.100.0/24"), "net1", None, 101, 253, ip("198.51.100.10")),
        Announce("pod", "net1", ip("198.51.100.10")),
    )
    # Undo puts the moved default route back into main.
    assert AddRoute("pod", net("0.0.0.0/0"), "net1", ip("198.51.100.1")) in undo_all(ops)


def test_default_route_nic_moves_the_old_default_instead() -> None:
    veth0 = NicFacts("veth0", POD_MAC)
    pod = PodState(nics=(ETH0, NET1), veth0=veth0, main_routes=MAIN_ROUTES, sysctls=SYSCTLS)
    ops = plan_add(
        request("net1", podDefaultRouteNic="net1"),
        pod,
        HOST,
        mode="underlay",
        first=False,
        nic_index=1,
    )
    assert DeleteRoute("pod", net("0.0.0.0/0"), "eth0", ip("192.0.2.1")) in ops
    assert AddRule("pod", socket.AF_INET, 1000, 101, src=net("192.0.2.10/32")) in ops
    assert not any(isinstance(o, DeleteRoute) and o.dev == "net1" for o in ops)
    with pytest.raises(CoordinatorPlanError, match="nope"):
        plan_add(
            request("net1", podDefaultRouteNic="nope"),
            pod,
            HOST,
            mode="underlay",
            first=False,
            nic_index=1,
        )


def test_second_underlay_nic_without_veth0_is_refused() -> None:
    pod = PodState(nics=(ETH0, NET1), main_routes=MAIN_ROUTES)
    with pytest.raises(CoordinatorPlanError, match="veth0"):
        plan_add(request("net1"), pod, HOST, mode="underlay", first=False, nic_index=1)


def test_overlay_keeps_eth0_and_gives_the_underlay_nic_a_table() -> None:
    pod = PodState(nics=(ETH0, NET1), main_routes=MAIN_ROUTES, sysctls=SYSCTLS)
    host = HostState(host_ips=HOST.host_ips, overlay_peer="vethabc")
    ops = plan_add(request("net1"), pod, host, mode="overlay", first=True, nic_index=1)
    assert not any(isinstance(o, AddVeth) for o in ops)
    assert (
        AddRoute(
            "host", net("198.51.100.10/32"), "vethabc", scope=253, table=500, src=ip("192.0.2.2")
        )
        in ops
    )
    assert AddRoute("pod", net("192.0.2.2/32"), "eth0", scope=253, table=101) in ops
    # The first underlay NIC beside the overlay: main reaches the host through eth0 too,
    # from eth0's address (net1's subnet route would send it out of net1).
    main = [o for o in ops if isinstance(o, AddRoute) and o.side == "pod" and o.table == 254]
    assert main == [
        AddRoute("pod", net("192.0.2.2/32"), "eth0", scope=253, table=254, src=ip("192.0.2.10"))
    ]
    later = plan_add(request("net1"), pod, host, mode="overlay", first=False, nic_index=1)
    assert not [o for o in later if isinstance(o, AddRoute) and o.side == "pod" and o.table == 254]
    assert DeleteRoute("pod", net("0.0.0.0/0"), "net1", ip("198.51.100.1")) in ops
    # eth0's replies stay on eth0 (issue #3683): its default copied into table 100.
    assert AddRoute("pod", net("0.0.0.0/0"), "eth0", ip("192.0.2.1"), 100) in ops
    assert AddRule("pod", socket.AF_INET, 1000, 100, src=net("192.0.2.10/32")) in ops
    with pytest.raises(CoordinatorPlanError, match="host end"):
        plan_add(request("net1"), pod, HOST, mode="overlay", first=True, nic_index=1)


def test_policy_routes_follow_the_nic_table() -> None:
    pod = PodState(nics=(ETH0,), sysctls=SYSCTLS)
    routes = [
        {"dst": "203.0.113.0/24", "gw": "192.0.2.254"},
        {"dst": "2001:db8:9::/48", "gw": "2001:db8:1::fe"},
    ]
    ops = plan_add(
        request(policyRoutes=routes), pod, HOST, mode="underlay", first=True, nic_index=0
    )
    assert AddRoute("pod", net("203.0.113.0/24"), "eth0", gateway=ip("192.0.2.254")) in ops
    assert not any(isinstance(o, AddRoute) and o.dst == net("2001:db8:9::/48") for o in ops)


def test_an_interface_without_addresses_is_refused() -> None:
    pod = PodState(nics=(NicFacts("eth0", "aa:bb:cc:00:00:01"),))
    with pytest.raises(CoordinatorPlanError, match="no address"):
        plan_add(request(), pod, HOST, mode="underlay", first=True, nic_index=0)
