"""The fake kernel's state (testbed/fakekernel.py): namespaces and their links, and what the
kernel does on its own when a link goes down or away, or has an address."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from spidernet.node.netlink.records import (
    AF_INET,
    AF_INET6,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    Address,
    Neighbour,
    Route,
    Rule,
)

# Default rules of a new namespace (fib_default_rules_init, fib6_rules_net_init).
RT_TABLE_DEFAULT = 253
RT_TABLE_LOCAL = 255
DEFAULT_RULES = (
    Rule(AF_INET, 0, RT_TABLE_LOCAL),
    Rule(AF_INET, 32766, RT_TABLE_MAIN),
    Rule(AF_INET, 32767, RT_TABLE_DEFAULT),
    Rule(AF_INET6, 0, RT_TABLE_LOCAL),
    Rule(AF_INET6, 32766, RT_TABLE_MAIN),
)
# An IPv6 route added without a metric gets IP6_RT_PRIO_USER; a prefix route of an
# address, IP6_RT_PRIO_ADDRCONF.
IP6_RT_PRIO_USER = 1024
IP6_RT_PRIO_ADDRCONF = 256
IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80
RTN_UNSPEC = 0
RT_SCOPE_NOWHERE = 255
LINK_LOCAL6 = ipaddress.ip_network("fe80::/10")


@dataclass
class FakeLink:
    """One link's mutable state."""

    index: int
    name: str
    kind: str
    mac: str
    mtu: int = 1500
    up: bool = False
    master: int | None = None
    link: int | None = None
    peer: tuple[Namespace, int] | None = None  # a veth's other end
    alias: str = ""
    vlan_id: int | None = None
    bond_mode: int | None = None
    txqlen: int = 1000


@dataclass
class Namespace:
    """One network namespace of the fake kernel."""

    path: str
    links: dict[int, FakeLink] = field(default_factory=dict)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=lambda: list(DEFAULT_RULES))
    neighbours: list[Neighbour] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    nft_tables: set[str] = field(default_factory=set)
    nsids: dict[str, int] = field(default_factory=dict)  # other namespace path -> id
    next_index: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        # lo, up with its addresses, as a runtime's loopback plugin and the lab leave it.
        lo = self.new_link("lo", "", "00:00:00:00:00:00", mtu=65536, up=True)
        for text in ("127.0.0.1/8", "::1/128"):
            address = ipaddress.ip_interface(text)
            self.addresses.append(Address(lo.index, address, RT_SCOPE_HOST, IFA_F_PERMANENT))

    def new_link(self, name: str, kind: str, mac: str, **attrs: object) -> FakeLink:
        link = FakeLink(next(self.next_index), name, kind, mac)
        for key, value in attrs.items():
            setattr(link, key, value)
        self.links[link.index] = link
        return link

    def by_name(self, name: str) -> FakeLink | None:
        return next((x for x in self.links.values() if x.name == name), None)

    def nsid(self, other: Namespace) -> int:
        """The id this namespace gives `other` (assigned on first use, as peernet2id_alloc)."""
        return self.nsids.setdefault(other.path, len(self.nsids))


def drop_link(ns: Namespace, index: int) -> None:
    """A link goes away with what hangs on it: addresses, routes, neighbours, VLANs on it;
    its slaves are released."""
    link = ns.links.pop(index)
    ns.addresses = [a for a in ns.addresses if a.index != index]
    ns.routes = [r for r in ns.routes if r.oif != index]
    ns.neighbours = [n for n in ns.neighbours if n.ifindex != index]
    for other in list(ns.links.values()):
        if other.master == index:
            other.master = None
            if link.kind == "bond":
                set_down(ns, other)
        if other.link == index and other.kind == "vlan":
            drop_link(ns, other.index)


def set_down(ns: Namespace, link: FakeLink) -> None:
    """What NETDEV_DOWN takes with it: the link's IPv4 and IPv6 routes (fib_sync_down_dev,
    fib6_ifdown), its neighbour entries, static ones too (neigh_ifdown), and its IPv6
    addresses (addrconf_ifdown, keep_addr_on_down=0)."""
    link.up = False
    ns.routes = [r for r in ns.routes if r.oif != link.index]
    ns.neighbours = [n for n in ns.neighbours if n.ifindex != link.index]
    ns.addresses = [
        a for a in ns.addresses if not (a.index == link.index and a.address.version == 6)
    ]


def prefix_route(address: Address) -> Route:
    """The main-table route the kernel adds for an address on an up link."""
    network = address.address.network
    if network.version == 4:
        return Route(
            network,
            oif=address.index,
            prefsrc=address.address.ip,
            proto=RTPROT_KERNEL,
            scope=RT_SCOPE_LINK,
        )
    return Route(network, oif=address.index, proto=RTPROT_KERNEL, priority=IP6_RT_PRIO_ADDRCONF)


def family_of(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


__all__ = [
    "DEFAULT_RULES",
    "FakeLink",
    "Namespace",
    "drop_link",
    "family_of",
    "prefix_route",
    "set_down",
]
