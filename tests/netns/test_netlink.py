"""The netlink adapter against the real kernel, inside throw-away namespaces."""

from __future__ import annotations

import ipaddress
import os
import subprocess

import pytest

from spidernet.node import netns
from spidernet.node.lab.topology import Topology, iface
from spidernet.node.netlink import NetlinkExists, NetlinkMissing
from spidernet.node.netlink.client import netlink, open_netlink
from spidernet.node.netlink.records import AF_INET, AF_INET6, Neighbour, Route, Rule


def test_veth_addresses_routes_rules_and_neighbours_round_trip(topo: Topology) -> None:
    a, b = topo.namespace("a"), topo.namespace("b")
    with netlink(netns.path_of(a)) as nl:
        nl.add_veth("veth-a", "veth-b", peer_netns=netns.path_of(b), mtu=1400)
        nl.set_link("veth-a", state="up")
        nl.add_address("veth-a", iface("192.0.2.10/24"))
        nl.add_address("veth-a", iface("2001:db8:1::10/64"))
        index = nl.index("veth-a")
        route = Route(
            ipaddress.ip_network("198.51.100.0/24"),
            table=101,
            gateway=ipaddress.ip_address("192.0.2.1"),
            oif=index,
        )
        route6 = Route(ipaddress.ip_network("2001:db8:2::/64"), table=101, oif=index)
        nl.add_route(route)
        nl.add_route(route6)
        rule = Rule(AF_INET, 1000, 101, src=ipaddress.ip_network("192.0.2.10/32"))
        rule6 = Rule(AF_INET6, 1000, 101, iifname="veth-a")
        nl.add_rule(rule)
        nl.add_rule(rule6)
        neigh = Neighbour(index, ipaddress.ip_address("192.0.2.7"), "02:00:00:00:00:07")
        nl.add_neighbour(neigh)

        link = nl.link("veth-a")
        assert (link.kind, link.mtu, link.up) == ("veth", 1400, True)
        assert link.link_netnsid is not None  # the peer lives in another namespace
        addrs = {str(x.address) for x in nl.addresses() if x.index == index}
        assert {"192.0.2.10/24", "2001:db8:1::10/64"} <= addrs
        tables = [r for r in nl.routes() if r.table == 101]
        assert {(str(r.dst), r.gateway, r.oif) for r in tables} == {
            ("198.51.100.0/24", ipaddress.ip_address("192.0.2.1"), index),
            ("2001:db8:2::/64", None, index),
        }
        rules = [r for r in nl.rules() if r.priority == 1000]
        assert {(r.family, r.table, r.src, r.iifname) for r in rules} == {
            (AF_INET, 101, ipaddress.ip_network("192.0.2.10/32"), ""),
            (AF_INET6, 101, None, "veth-a"),
        }
        assert next(n for n in nl.neighbours() if n.dst == neigh.dst).lladdr == neigh.lladdr

        with pytest.raises(NetlinkExists, match="failed to add rule 1000 table 101"):
            nl.add_rule(rule)
        nl.delete_rule(rule)
        nl.delete_rule(rule6)
        nl.delete_route(route)
        nl.delete_route(route6)
        nl.delete_neighbour(neigh)
        assert [r for r in nl.rules() if r.priority == 1000] == []
        assert [r for r in nl.routes() if r.table == 101] == []
        with pytest.raises(NetlinkMissing):
            nl.delete_rule(rule)
    with netlink(netns.path_of(b)) as nl:
        assert nl.link("veth-b").mtu == 1400
    with netlink(netns.path_of(a)) as nl:
        nl.delete_link("veth-a")
        with pytest.raises(NetlinkMissing, match="link 'veth-a'"):
            nl.delete_link("veth-a")
        nl.delete_link("veth-a", missing_ok=True)
    with netlink(netns.path_of(b)) as nl:
        assert [x.name for x in nl.links()] == ["lo"]  # the peer went with it


def test_duplicate_link_is_already_exists(topo: Topology) -> None:
    a = topo.namespace("a")
    with netlink(netns.path_of(a)) as nl:
        nl.add_link("br-x", "bridge")
        with pytest.raises(NetlinkExists, match="bridge 'br-x'"):
            nl.add_link("br-x", "bridge")
        nl.delete_link("br-x")


def test_missing_namespace_is_gone_and_never_created(topo: Topology) -> None:
    path = f"/run/netns/{topo.prefix}-missing"
    with pytest.raises(netns.NetnsGone):
        open_netlink(path)
    assert not os.path.exists(path)


def test_a_file_is_not_a_namespace() -> None:
    with pytest.raises(netns.NotANetns):
        netns.check("/proc/self/stat")


def test_route_get_follows_policy_rules_and_reports_the_real_table(topo: Topology) -> None:
    a, b = topo.namespace("a"), topo.namespace("b")
    with netlink(netns.path_of(a)) as nl:
        nl.add_veth("v0", "p0", peer_netns=netns.path_of(b))
        nl.add_veth("v1", "p1", peer_netns=netns.path_of(b))
        for name, addr in (("v0", "192.0.2.10/24"), ("v1", "198.51.100.10/24")):
            nl.set_link(name, state="up")
            nl.add_address(name, iface(addr))
        v1 = nl.index("v1")
        gw = ipaddress.ip_address("198.51.100.1")
        # Default via v0 in main; table 500 (above 255: RTA_TABLE only) sends all via v1.
        nl.add_route(
            Route(
                dst=ipaddress.ip_network("0.0.0.0/0"),
                gateway=ipaddress.ip_address("192.0.2.1"),
                oif=nl.index("v0"),
            )
        )
        nl.add_route(Route(dst=ipaddress.ip_network("0.0.0.0/0"), table=500, gateway=gw, oif=v1))
        src = ipaddress.ip_address("198.51.100.10")
        nl.add_rule(Rule(family=AF_INET, priority=1000, table=500, src=ipaddress.ip_network(src)))
        far = ipaddress.ip_address("203.0.113.9")
        plain = nl.route_get(far)
        assert (plain.table, plain.oif, str(plain.gateway)) == (254, nl.index("v0"), "192.0.2.1")
        assert str(plain.prefsrc) == "192.0.2.10"
        sourced = nl.route_get(far, src=src)
        assert (sourced.table, sourced.oif, sourced.gateway) == (500, v1, gw)
        # A packet arriving on v0 for a local address is delivered here (type local).
        arriving = nl.route_get(ipaddress.ip_address("192.0.2.10"), src=far, iif="v0")
        assert arriving.type == 2  # RTN_LOCAL
        with pytest.raises(NetlinkMissing):
            nl.route_get(far, iif="nope")
        # A TCP port takes part in the lookup (`ip route get ... ipproto tcp dport 443`).
        nl.add_route(Route(dst=ipaddress.ip_network("0.0.0.0/0"), table=600, gateway=gw, oif=v1))
        # (Rule records carry no port selector: the rule is added with `ip rule`.)
        subprocess.run(
            netns.exec_argv(
                a, ["ip", "rule", "add", "ipproto", "tcp", "dport", "443", "table", "600"]
            ),
            check=True,
        )
        assert nl.route_get(far, dport=443).table == 600
        assert nl.route_get(far, dport=80).table == 254


def test_route_get_answers_for_ipv6_with_the_policy_table(topo: Topology) -> None:
    # Regression: a strict-checked IPv6 RTM_GETROUTE may carry no RTM_F_LOOKUP_TABLE
    # (the kernel answers EINVAL); IPv6 answers name their table anyway.
    a, b = topo.namespace("a"), topo.namespace("b")
    with netlink(netns.path_of(a)) as nl:
        nl.add_veth("v0", "p0", peer_netns=netns.path_of(b))
        nl.set_link("v0", state="up")
        nl.add_address("v0", iface("2001:db8:1::10/64"))
        gw = ipaddress.ip_address("2001:db8:1::1")
        nl.add_route(
            Route(dst=ipaddress.ip_network("::/0"), table=700, gateway=gw, oif=nl.index("v0"))
        )
        src = ipaddress.ip_address("2001:db8:1::10")
        nl.add_rule(Rule(family=AF_INET6, priority=1000, table=700, src=ipaddress.ip_network(src)))
        found = nl.route_get(ipaddress.ip_address("2001:db8:ff::9"), src=src)
        assert (found.table, found.gateway, found.oif) == (700, gw, nl.index("v0"))
