"""The `Rtnetlink` contract: what the plugins rely on the kernel to answer, as one suite run
against the in-memory kernel (tests/unit/node/netlink/test_fake_contract.py) and the real
adapter in throw-away namespaces (tests/netns/test_netlink_contract.py), with the same
assertions on both: state read back, and the errno of every refusal.

Each case takes a `Bench`: two empty namespaces `a` and `b`, a path where no namespace is,
and how to open a client in a namespace. Cases make and read only what they name, so the
kernel's own additions the fake does not model (the local table, IPv6 link-local
addresses) stay out of their comparisons.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from spidernet.node.netlink.errors import NetlinkExists, NetlinkFailure, NetlinkMissing
from spidernet.node.netlink.protocol import Rtnetlink
from spidernet.node.netlink.records import (
    AF_INET,
    AF_INET6,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    RTPROT_STATIC,
    Address,
    Neighbour,
    Route,
    Rule,
)
from spidernet.node.netns import NetnsGone

net = ipaddress.ip_network
ip = ipaddress.ip_address
iface = ipaddress.ip_interface
TABLE = 101
LO = 1  # lo is a namespace's first link
MAC_A, MAC_B = "02:00:00:00:0a:01", "02:00:00:00:0b:01"


@dataclass(frozen=True)
class Bench:
    """Where a case runs: namespaces `a` and `b` (paths, fresh, with only `lo`, up, as
    container runtimes and the lab leave a new namespace), a `missing` path, and
    `open(path)`, a new client there (the case closes it)."""

    a: str
    b: str
    missing: str
    open: Callable[[str], Rtnetlink]


@dataclass(frozen=True)
class Case:
    """One contract case; `needs`: kernel link kinds it makes beyond veth and bridge
    (a lane whose kernel lacks the driver skips it and says so)."""

    run: Callable[[Bench], None]
    needs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.run.__name__


def refused(code: int, fn: Callable[[], object]) -> NetlinkFailure:
    """Call `fn`, which must fail with the kernel's `code`, as the matching adapter error."""
    with pytest.raises(NetlinkFailure) as info:
        fn()
    assert info.value.errno == code, f"errno {info.value.errno}, not {errno.errorcode[code]}"
    if code == errno.EEXIST:
        assert isinstance(info.value, NetlinkExists)
    if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL):
        assert isinstance(info.value, NetlinkMissing)
    return info.value


def _own(addresses: Sequence[Address]) -> list[Address]:
    """The addresses a case made: not lo's, not the kernel's IPv6 link-local ones."""
    return [a for a in addresses if a.index != LO and not a.address.is_link_local]


def _veth(env: Bench, nl: Rtnetlink, *, up: bool = True) -> int:
    """veth-a here (in `a`, up) with its peer veth-b in `b`; veth-a's index."""
    nl.add_veth("veth-a", "veth-b", peer_netns=env.b, mtu=1400, mac=MAC_A, peer_mac=MAC_B)
    if up:
        nl.set_link("veth-a", state="up")
    return nl.index("veth-a")


# -- namespaces and links ----------------------------------------------------------------


def a_new_namespace_has_lo_and_the_default_rules(env: Bench) -> None:
    with env.open(env.a) as nl:
        [lo] = nl.links()
        assert (lo.index, lo.name, lo.kind, lo.up, lo.mtu) == (LO, "lo", "", True, 65536)
        assert {(a.index, a.address, a.scope) for a in nl.addresses()} == {
            (LO, iface("127.0.0.1/8"), RT_SCOPE_HOST),
            (LO, iface("::1/128"), RT_SCOPE_HOST),
        }
        assert [r for r in nl.routes(RT_TABLE_MAIN) if r.oif != LO] == []
        assert nl.neighbours() == []
        assert {(r.family, r.priority, r.table) for r in nl.rules()} == {
            (AF_INET, 0, 255),
            (AF_INET, 32766, 254),
            (AF_INET, 32767, 253),
            (AF_INET6, 0, 255),
            (AF_INET6, 32766, 254),
        }


def a_missing_namespace_is_gone(env: Bench) -> None:
    with pytest.raises(NetnsGone):
        env.open(env.missing)


def a_veth_pair_spans_two_namespaces(env: Bench) -> None:
    with env.open(env.a) as a, env.open(env.b) as b:
        a.add_veth("veth-a", "veth-b", peer_netns=env.b, mtu=1400, mac=MAC_A, peer_mac=MAC_B)
        here, there = a.link("veth-a"), b.link("veth-b")
        assert (here.kind, here.mtu, here.mac, here.up) == ("veth", 1400, MAC_A, False)
        assert (there.kind, there.mtu, there.mac, there.up) == ("veth", 1400, MAC_B, False)
        assert (here.link, there.link) == (there.index, here.index)
        assert here.link_netnsid is not None
        assert there.link_netnsid is not None
        assert a.link_at(here.index) == here
        assert a.index("veth-a") == here.index
        assert a.txqlen("veth-a") == 1000


def a_name_in_use_is_eexist(env: Bench) -> None:
    with env.open(env.a) as a, env.open(env.b) as b:
        _veth(env, a, up=False)
        refused(errno.EEXIST, lambda: a.add_veth("veth-a", "other", peer_netns=env.b))
        refused(errno.EEXIST, lambda: a.add_veth("other", "veth-b", peer_netns=env.b))
        refused(errno.EEXIST, lambda: b.add_veth("veth-b", "other"))
        assert [x.name for x in b.links()] == ["lo", "veth-b"]


def a_missing_link_is_enodev(env: Bench) -> None:
    with env.open(env.a) as nl:
        refused(errno.ENODEV, lambda: nl.index("nope"))
        refused(errno.ENODEV, lambda: nl.link("nope"))
        refused(errno.ENODEV, lambda: nl.link_at(4242))
        refused(errno.ENODEV, lambda: nl.set_link("nope", state="up"))
        refused(errno.ENODEV, lambda: nl.delete_link("nope"))
        refused(errno.ENODEV, lambda: nl.add_address("nope", iface("192.0.2.1/24")))
        nl.delete_link("nope", missing_ok=True)


def set_link_changes_state_mtu_mac_queue_and_alias(env: Bench) -> None:
    with env.open(env.a) as nl:
        _veth(env, nl, up=False)
        nl.set_link("veth-a", state="up")
        assert nl.link("veth-a").up
        nl.set_link("veth-a", mtu=1300, address="02:00:00:00:0a:02", txqlen=2000)
        link = nl.link("veth-a")
        assert (link.mtu, link.mac) == (1300, "02:00:00:00:0a:02")
        assert nl.txqlen("veth-a") == 2000
        nl.set_alias("veth-a", "made by us")
        assert nl.link("veth-a").alias == "made by us"
        nl.set_alias("veth-a", "")
        assert nl.link("veth-a").alias == ""
        nl.set_link("veth-a", state="down")
        assert not nl.link("veth-a").up


def deleting_a_veth_takes_its_peer_and_what_hangs_on_it(env: Bench) -> None:
    with env.open(env.a) as a, env.open(env.b) as b:
        index = _veth(env, a)
        b.set_link("veth-b", state="up")
        b.add_address("veth-b", iface("192.0.2.20/24"))
        a.add_address("veth-a", iface("192.0.2.10/24"))
        a.add_neighbour(Neighbour(index, ip("192.0.2.7"), "02:00:00:00:00:07"))
        a.add_route(Route(net("198.51.100.0/24"), table=TABLE, oif=index))
        a.add_rule(Rule(AF_INET, 1000, TABLE, iifname="veth-a"))
        a.delete_link("veth-a")
        assert [x.name for x in a.links()] == ["lo"]
        assert [x.name for x in b.links()] == ["lo"]
        assert _own(a.addresses()) == []
        assert _own(b.addresses()) == []
        assert a.neighbours() == []
        assert a.routes(TABLE) == []
        # A rule names its interface, and outlives it.
        assert [r.iifname for r in a.rules() if r.priority == 1000] == ["veth-a"]
        refused(errno.ENODEV, lambda: a.delete_link("veth-a"))
        a.delete_link("veth-a", missing_ok=True)
        a.delete_rule(Rule(AF_INET, 1000, TABLE, iifname="veth-a"))


# -- addresses --------------------------------------------------------------------------


def addresses_add_once_and_delete_once(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        v4, v6 = iface("192.0.2.10/24"), iface("2001:db8:1::10/64")
        nl.add_address("veth-a", v4)
        nl.add_address("veth-a", v6)
        mine = {(a.index, a.address, a.scope) for a in _own(nl.addresses())}
        assert mine == {(index, v4, 0), (index, v6, 0)}
        refused(errno.EEXIST, lambda: nl.add_address("veth-a", v4))
        refused(errno.EEXIST, lambda: nl.add_address("veth-a", v6))
        # The kernel routes an address's prefix in main through its link.
        main = {
            (r.dst, r.oif, r.proto, r.scope, r.prefsrc, r.priority)
            for r in nl.routes(RT_TABLE_MAIN)
            if r.dst in (v4.network, v6.network)
        }
        assert main == {
            (v4.network, index, RTPROT_KERNEL, RT_SCOPE_LINK, v4.ip, 0),
            (v6.network, index, RTPROT_KERNEL, 0, None, 256),
        }
        nl.delete_address("veth-a", v4)
        nl.delete_address("veth-a", v6)
        assert _own(nl.addresses()) == []
        refused(errno.EADDRNOTAVAIL, lambda: nl.delete_address("veth-a", v4))
        refused(errno.EADDRNOTAVAIL, lambda: nl.delete_address("veth-a", v6))


def deleting_an_address_takes_the_routes_it_was_the_source_of(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        nl.add_address("veth-a", iface("192.0.2.10/24"))
        route = Route(net("198.51.100.0/24"), table=TABLE, oif=index, prefsrc=ip("192.0.2.10"))
        nl.add_route(route)
        nl.delete_address("veth-a", iface("192.0.2.10/24"))
        assert nl.routes(TABLE) == []


# -- routes -----------------------------------------------------------------------------


def routes_add_once_and_delete_once(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        nl.add_address("veth-a", iface("192.0.2.10/24"))
        nl.add_address("veth-a", iface("2001:db8:1::10/64"))
        v4 = Route(
            net("198.51.100.0/24"),
            table=TABLE,
            gateway=ip("192.0.2.1"),
            oif=index,
            proto=RTPROT_STATIC,
        )
        v6 = Route(net("2001:db8:2::/64"), table=TABLE, oif=index, proto=RTPROT_STATIC)
        link_scope = Route(
            net("203.0.113.1/32"), table=TABLE, oif=index, scope=RT_SCOPE_LINK, proto=RTPROT_STATIC
        )
        for route in (v4, v6, link_scope):
            nl.add_route(route)
        got = {(r.dst, r.gateway, r.oif, r.proto, r.scope, r.priority) for r in nl.routes(TABLE)}
        assert got == {
            (v4.dst, v4.gateway, index, RTPROT_STATIC, 0, 0),
            (v6.dst, None, index, RTPROT_STATIC, 0, 1024),  # IPv6's default metric
            (link_scope.dst, None, index, RTPROT_STATIC, RT_SCOPE_LINK, 0),
        }
        assert all(r.table == TABLE for r in nl.routes(TABLE))
        assert not any(r.table == TABLE for r in nl.routes(RT_TABLE_MAIN))
        refused(errno.EEXIST, lambda: nl.add_route(v4))
        refused(errno.EEXIST, lambda: nl.add_route(v6))
        # The same destination through another gateway is the same key: still EEXIST.
        other = Route(v4.dst, table=TABLE, gateway=ip("192.0.2.2"), oif=index)
        refused(errno.EEXIST, lambda: nl.add_route(other))
        for route in (v4, v6, link_scope):
            nl.delete_route(route)
        assert nl.routes(TABLE) == []
        refused(errno.ESRCH, lambda: nl.delete_route(v4))
        refused(errno.ESRCH, lambda: nl.delete_route(v6))


def a_delete_without_protocol_matches_any(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        nl.add_route(Route(net("198.51.100.0/24"), oif=index, proto=RTPROT_STATIC))
        nl.delete_route(Route(net("198.51.100.0/24"), oif=index, proto=0))
        assert not any(r.dst == net("198.51.100.0/24") for r in nl.routes(RT_TABLE_MAIN))


def routes_the_kernel_refuses(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl, up=False)
        down = Route(net("198.51.100.0/24"), table=TABLE, oif=index)
        refused(errno.ENETDOWN, lambda: nl.add_route(down))
        refused(errno.ENETDOWN, lambda: nl.add_route(Route(net("2001:db8:2::/64"), oif=index)))
        nl.set_link("veth-a", state="up")
        far = Route(net("198.51.100.0/24"), table=TABLE, gateway=ip("203.0.113.1"), oif=index)
        refused(errno.ENETUNREACH, lambda: nl.add_route(far))
        not_mine = Route(net("198.51.100.0/24"), table=TABLE, oif=index, prefsrc=ip("192.0.2.99"))
        refused(errno.EINVAL, lambda: nl.add_route(not_mine))
        refused(errno.ENODEV, lambda: nl.add_route(Route(net("198.51.100.0/24"), oif=4242)))
        assert nl.routes(TABLE) == []


def a_gateway_on_a_link_route_is_reachable(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        nl.add_route(Route(net("192.0.2.2/32"), oif=index, scope=RT_SCOPE_LINK))
        nl.add_route(Route(net("10.96.0.0/12"), gateway=ip("192.0.2.2"), oif=index))
        assert {r.dst for r in nl.routes(RT_TABLE_MAIN)} == {
            net("192.0.2.2/32"),
            net("10.96.0.0/12"),
        }


def a_link_going_down_takes_its_routes_neighbours_and_ipv6_addresses(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        nl.add_address("veth-a", iface("192.0.2.10/24"))
        nl.add_address("veth-a", iface("2001:db8:1::10/64"))
        nl.add_route(Route(net("198.51.100.0/24"), table=TABLE, oif=index))
        nl.add_route(Route(net("2001:db8:2::/64"), table=TABLE, oif=index))
        nl.add_neighbour(Neighbour(index, ip("192.0.2.7"), "02:00:00:00:00:07"))
        nl.set_link("veth-a", state="down")
        assert nl.routes(TABLE) == []
        assert not any(r.oif == index for r in nl.routes(RT_TABLE_MAIN))
        assert nl.neighbours() == []
        assert [a.address for a in _own(nl.addresses())] == [iface("192.0.2.10/24")]


# -- rules ------------------------------------------------------------------------------


def rules_add_once_and_delete_once(env: Bench) -> None:
    with env.open(env.a) as nl:
        rules = [
            Rule(AF_INET, 1000, TABLE, src=net("192.0.2.10/32")),
            Rule(AF_INET, 990, 100, fwmark=1),
            Rule(AF_INET6, 1000, TABLE, iifname="veth-a"),
            Rule(AF_INET6, 1000, 500),
        ]
        for rule in rules:
            nl.add_rule(rule)
        got = {(r.family, r.priority, r.table, r.src, r.iifname, r.fwmark) for r in nl.rules()}
        assert {
            (AF_INET, 1000, TABLE, net("192.0.2.10/32"), "", 0),
            (AF_INET, 990, 100, None, "", 1),
            (AF_INET6, 1000, TABLE, None, "veth-a", 0),
            (AF_INET6, 1000, 500, None, "", 0),
        } <= got
        for rule in rules:
            refused(errno.EEXIST, lambda rule=rule: nl.add_rule(rule))  # type: ignore[misc]
        for rule in rules:
            nl.delete_rule(rule)
        assert len(nl.rules()) == 5
        refused(errno.ENOENT, lambda: nl.delete_rule(rules[0]))


# -- neighbours -------------------------------------------------------------------------


def neighbours_add_once_and_delete_once(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        v4 = Neighbour(index, ip("192.0.2.7"), "02:00:00:00:00:07")
        v6 = Neighbour(index, ip("2001:db8:1::7"), "02:00:00:00:00:08")
        nl.add_neighbour(v4)
        nl.add_neighbour(v6)
        got = {(n.ifindex, n.dst, n.lladdr, n.static) for n in nl.neighbours()}
        assert {(index, v4.dst, v4.lladdr, True), (index, v6.dst, v6.lladdr, True)} <= got
        refused(errno.EEXIST, lambda: nl.add_neighbour(v4))
        nl.delete_neighbour(v4)
        nl.delete_neighbour(v6)
        assert not any(n.dst in (v4.dst, v6.dst) for n in nl.neighbours())
        refused(errno.ENOENT, lambda: nl.delete_neighbour(v4))
        refused(errno.ENODEV, lambda: nl.add_neighbour(Neighbour(4242, v4.dst, v4.lladdr)))


# -- lookups ----------------------------------------------------------------------------


def route_get_follows_the_rules(env: Bench) -> None:
    with env.open(env.a) as nl:
        index = _veth(env, nl)
        nl.add_address("veth-a", iface("192.0.2.10/24"))
        got = nl.route_get(ip("192.0.2.7"))
        assert (got.table, got.oif, got.prefsrc) == (RT_TABLE_MAIN, index, ip("192.0.2.10"))
        nl.add_route(Route(net("0.0.0.0/0"), table=TABLE, gateway=ip("192.0.2.1"), oif=index))
        nl.add_rule(Rule(AF_INET, 990, TABLE, fwmark=1))
        got = nl.route_get(ip("198.51.100.1"), mark=1)
        assert (got.table, got.gateway, got.oif) == (TABLE, ip("192.0.2.1"), index)
        refused(errno.ENETUNREACH, lambda: nl.route_get(ip("198.51.100.1")))


# -- VLANs and bonds (drivers this machine's kernel may lack: the kernel lane has them) ---


def vlans_stand_on_their_parent(env: Bench) -> None:
    with env.open(env.a) as nl:
        parent = _veth(env, nl)
        nl.add_vlan("veth-a.10", "veth-a", 10)
        vlan = nl.link("veth-a.10")
        assert (vlan.kind, vlan.vlan_id, vlan.link, vlan.up) == ("vlan", 10, parent, False)
        refused(errno.EEXIST, lambda: nl.add_vlan("veth-a.10", "veth-a", 11))
        refused(errno.EEXIST, lambda: nl.add_vlan("other", "veth-a", 10))
        refused(errno.ENODEV, lambda: nl.add_vlan("x.10", "nope", 10))
        nl.delete_link("veth-a")
        assert [x.name for x in nl.links()] == ["lo"]


def bonds_take_slaves_that_are_down(env: Bench) -> None:
    with env.open(env.a) as nl:
        _veth(env, nl)
        nl.add_bond("bond-x", [("mode", 1), ("miimon", 100)])
        bond = nl.link("bond-x")
        assert (bond.kind, bond.bond_mode, bond.up) == ("bond", 1, False)
        refused(errno.EEXIST, lambda: nl.add_bond("bond-x", [("mode", 1)]))
        refused(errno.EPERM, lambda: nl.set_link("veth-a", master=bond.index))
        nl.set_link("veth-a", state="down")
        nl.set_link("veth-a", master=bond.index)
        assert nl.link("veth-a").master == bond.index
        nl.set_link("veth-a", state="up")
        nl.set_link("veth-a", master=0)
        released = nl.link("veth-a")
        assert (released.master, released.up) == (None, False)
        nl.delete_link("bond-x")
        refused(errno.ENODEV, lambda: nl.index("bond-x"))


CASES = [
    Case(a_new_namespace_has_lo_and_the_default_rules),
    Case(a_missing_namespace_is_gone),
    Case(a_veth_pair_spans_two_namespaces),
    Case(a_name_in_use_is_eexist),
    Case(a_missing_link_is_enodev),
    Case(set_link_changes_state_mtu_mac_queue_and_alias),
    Case(deleting_a_veth_takes_its_peer_and_what_hangs_on_it),
    Case(addresses_add_once_and_delete_once),
    Case(deleting_an_address_takes_the_routes_it_was_the_source_of),
    Case(routes_add_once_and_delete_once),
    Case(a_delete_without_protocol_matches_any),
    Case(routes_the_kernel_refuses),
    Case(a_gateway_on_a_link_route_is_reachable),
    Case(a_link_going_down_takes_its_routes_neighbours_and_ipv6_addresses),
    Case(rules_add_once_and_delete_once),
    Case(neighbours_add_once_and_delete_once),
    Case(route_get_follows_the_rules),
    Case(vlans_stand_on_their_parent, needs=("vlan",)),
    Case(bonds_take_slaves_that_are_down, needs=("bond",)),
]
"""Every case, in order."""
