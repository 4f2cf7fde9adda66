"""An in-memory kernel for unit tests: network namespaces with links, addresses, routes,
rules, neighbours, sysctls and the nftables reply marking, reached through the same
`Rtnetlink` and `Reach` protocols as the real thing (node/netlink/protocol.py,
node/access/base.py).

It answers like the kernel where our code depends on the answer: EEXIST for what is there
already, ENODEV for a missing link, EADDRNOTAVAIL for a missing address, ESRCH for a missing
route, ENOENT for a missing rule or neighbour, ENETDOWN for a route through a link that is
down, and so on, as the adapter's own exceptions (AlreadyExists, NotFound, NetlinkFailure
with the errno). testbed/netlink_contract.py holds the behaviour to the real adapter's: the
same suite runs against both (unit lane and netns lane).

What it models of the kernel's own doing: `lo` in every new namespace, the default policy
rules, the main-table prefix route of an address on an up link, and what goes with a link
going down (its IPv4 routes, neighbours, IPv6 addresses) or away (its peer, VLANs,
addresses, routes, neighbours). Not modelled: the local table, IPv6 link-local addresses
and multicast routes, carrier, multipath, traffic control.

`FakeKernel.fail_call(n)` makes the n-th mutating call from then on (netlink change, sysctl
write, nftables script) fail once with EIO, for the apply/unwind tests.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Self

from spidernet.netconf.ifacer.config import BondValue
from spidernet.node import nft
from spidernet.node.netlink.errors import NetlinkFailure, NotFound, classify
from spidernet.node.netlink.records import (
    AF_INET,
    AF_INET6,
    FR_ACT_TO_TBL,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    Address,
    IPAddress,
    IPInterface,
    Link,
    Neighbour,
    Route,
    Rule,
    State,
)
from spidernet.node.netns import NetnsGone

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


class FakeKernel:
    """Network namespaces by path, and the failure injection their clients share."""

    def __init__(self) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self._macs = itertools.count(1)
        self._fail_in: int | None = None
        self.mutations: list[str] = []  # every mutating call, in order ("add veth 'x'")

    def namespace(self, path: str, sysctls: dict[str, str] | None = None) -> Namespace:
        """Create the namespace at `path` (with `lo` and the default rules)."""
        if path in self.namespaces:
            raise ValueError(f"namespace '{path}' exists")
        ns = self.namespaces[path] = Namespace(path, sysctls=dict(sysctls or {}))
        return ns

    def remove(self, path: str) -> None:
        """The namespace goes away with its links (a veth's peer elsewhere with them)."""
        ns = self.namespaces.pop(path)
        for link in list(ns.links.values()):
            if link.peer is not None:
                other, index = link.peer
                if other is not ns and index in other.links:
                    _drop_link(other, index)

    def get(self, path: str | None) -> Namespace:
        """The namespace at `path` (None: the first one made, "this process's"); NetnsGone."""
        if path is None:
            return next(iter(self.namespaces.values()))
        try:
            return self.namespaces[path]
        except KeyError:
            raise NetnsGone(f"network namespace '{path}' does not exist") from None

    def netlink(self, path: str | None) -> FakeNetlink:
        """A client in the namespace at `path`; NetnsGone when there is none."""
        return FakeNetlink(self, self.get(path))

    def access(self) -> FakeAccess:
        """A `Reach` over this kernel."""
        return FakeAccess(self)

    def new_mac(self) -> str:
        n = next(self._macs)
        return f"02:fa:ce:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"

    def fail_call(self, n: int) -> None:
        """Make the `n`-th (0-based) mutating call from now fail, once, with EIO."""
        self._fail_in = n

    def mutate(self, what: str) -> None:
        """Count one mutating call; raise the injected failure when it is its turn."""
        self.mutations.append(what)
        if self._fail_in is not None:
            if self._fail_in == 0:
                self._fail_in = None
                raise NetlinkFailure("inject a failure into", what, errno.EIO)
            self._fail_in -= 1

    def snapshot(self) -> dict[str, tuple[State, dict[str, str], frozenset[str]]]:
        """Every namespace's netlink state, sysctls and nftables tables (for comparisons)."""
        return {
            path: (FakeNetlink(self, ns).state(), dict(ns.sysctls), frozenset(ns.nft_tables))
            for path, ns in self.namespaces.items()
        }


def _drop_link(ns: Namespace, index: int) -> None:
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
                _set_down(ns, other)
        if other.link == index and other.kind == "vlan":
            _drop_link(ns, other.index)


def _set_down(ns: Namespace, link: FakeLink) -> None:
    """What NETDEV_DOWN takes with it: the link's IPv4 and IPv6 routes (fib_sync_down_dev,
    fib6_ifdown), its neighbour entries, static ones too (neigh_ifdown), and its IPv6
    addresses (addrconf_ifdown, keep_addr_on_down=0)."""
    link.up = False
    ns.routes = [r for r in ns.routes if r.oif != link.index]
    ns.neighbours = [n for n in ns.neighbours if n.ifindex != link.index]
    ns.addresses = [
        a for a in ns.addresses if not (a.index == link.index and a.address.version == 6)
    ]


def _prefix_route(address: Address) -> Route:
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


def _family(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


class FakeNetlink:
    """`Rtnetlink` on one namespace of a FakeKernel."""

    def __init__(self, kernel: FakeKernel, ns: Namespace) -> None:
        self._kernel = kernel
        self._ns = ns
        self.where = f"netns '{ns.path}'"
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    def _fail(self, action: str, obj: str, code: int) -> NetlinkFailure:
        return classify(action, f"{obj} in {self.where}", code)

    def _mutate(self, action: str, obj: str) -> None:
        try:
            self._kernel.mutate(f"{action} {obj} in {self.where}")
        except NetlinkFailure as e:
            raise self._fail(action, obj, e.errno) from None

    def _link(self, name: str) -> FakeLink:
        link = self._ns.by_name(name)
        if link is None:
            raise NotFound("find", f"link '{name}' in {self.where}", errno.ENODEV)
        return link

    def _record(self, link: FakeLink) -> Link:
        nsid = None
        if link.peer is not None and link.peer[0] is not self._ns:
            nsid = self._ns.nsid(link.peer[0])
        return Link(
            index=link.index,
            name=link.name,
            kind=link.kind,
            mac=link.mac,
            mtu=link.mtu,
            up=link.up,
            master=link.master,
            link=link.link,
            link_netnsid=nsid,
            alias=link.alias,
            vlan_id=link.vlan_id,
            bond_mode=link.bond_mode,
        )

    # -- reading ------------------------------------------------------------------------

    def links(self) -> list[Link]:
        return [self._record(x) for x in sorted(self._ns.links.values(), key=lambda x: x.index)]

    def link_at(self, index: int) -> Link:
        link = self._ns.links.get(index)
        if link is None:
            raise self._fail("look up", f"link {index}", errno.ENODEV)
        return self._record(link)

    def link(self, name: str) -> Link:
        return self._record(self._link(name))

    def index(self, name: str) -> int:
        return self._link(name).index

    def txqlen(self, name: str) -> int:
        return self._link(name).txqlen

    def addresses(self) -> list[Address]:
        return sorted(self._ns.addresses, key=lambda a: (a.address.version, a.index))

    def _all_routes(self) -> list[Route]:
        kernel = [
            _prefix_route(a)
            for a in self._ns.addresses
            if self._ns.links[a.index].up
            and a.scope == RT_SCOPE_UNIVERSE  # lo's routes are in the local table
        ]
        return kernel + self._ns.routes

    def routes(self, table: int | None = None) -> list[Route]:
        found = [r for r in self._all_routes() if table is None or r.table == table]
        return sorted(found, key=lambda r: r.dst.version)

    def rules(self) -> list[Rule]:
        return sorted(self._ns.rules, key=lambda r: (r.family != AF_INET, r.priority))

    def neighbours(self) -> list[Neighbour]:
        return list(self._ns.neighbours)

    def state(self) -> State:
        return State(
            links=tuple(self.links()),
            addresses=tuple(self.addresses()),
            routes=tuple(self.routes()),
            rules=tuple(self.rules()),
            neighbours=tuple(self.neighbours()),
        )

    def route_get(
        self,
        dst: IPAddress,
        *,
        src: IPAddress | None = None,
        iif: str = "",
        mark: int = 0,
        dport: int = 0,
    ) -> Route:
        """The policy rules in order, then the longest prefix in the table they name (no
        local table: an address of this namespace is not looked up here)."""
        family = _family(dst.version)
        iif_index = self.index(iif) if iif else None
        for rule in self.rules():
            if rule.family != family or rule.table == RT_TABLE_LOCAL:
                continue
            if rule.src is not None and (src is None or src not in rule.src):
                continue
            if rule.dst is not None and dst not in rule.dst:
                continue
            if rule.fwmark and (mark & (rule.fwmask or 0xFFFFFFFF)) != rule.fwmark:
                continue
            if rule.iifname and (iif_index is None or rule.iifname != iif):
                continue
            candidates = [r for r in self.routes(rule.table) if dst in r.dst]
            if not candidates:
                continue
            best = max(candidates, key=lambda r: (r.dst.prefixlen, -r.priority))
            prefsrc = best.prefsrc or self._source(best.oif, family)
            return Route(
                ipaddress.ip_network(dst),
                table=best.table,
                gateway=best.gateway,
                oif=best.oif,
                prefsrc=prefsrc,
                proto=best.proto,
                scope=best.scope,
            )
        raise self._fail("look up", f"route to {dst}", errno.ENETUNREACH)

    def _source(self, oif: int | None, family: int) -> IPAddress | None:
        for a in self._ns.addresses:
            if a.index == oif and _family(a.address.version) == family:
                return a.address.ip
        return None

    # -- links --------------------------------------------------------------------------

    def add_veth(
        self,
        name: str,
        peer: str,
        *,
        peer_netns: str | None = None,
        mtu: int = 0,
        mac: str = "",
        peer_mac: str = "",
    ) -> None:
        other = self._kernel.get(peer_netns) if peer_netns is not None else self._ns
        self._mutate("add", f"veth '{name}'")
        if self._ns.by_name(name) is not None or other.by_name(peer) is not None:
            raise self._fail("add", f"veth '{name}'", errno.EEXIST)
        if other is self._ns and name == peer:
            raise self._fail("add", f"veth '{name}'", errno.EEXIST)
        extra: dict[str, object] = {"mtu": mtu} if mtu else {}
        here = self._ns.new_link(name, "veth", mac or self._kernel.new_mac(), **extra)
        there = other.new_link(peer, "veth", peer_mac or self._kernel.new_mac(), **extra)
        here.peer, there.peer = (other, there.index), (self._ns, here.index)
        here.link, there.link = there.index, here.index

    def add_link(self, name: str, kind: str, **attrs: object) -> None:
        """A link of `kind` (bridge, dummy, macvlan, ...); `mtu` and `address` are kept."""
        self._mutate("add", f"{kind} '{name}'")
        if self._ns.by_name(name) is not None:
            raise self._fail("add", f"{kind} '{name}'", errno.EEXIST)
        mac = str(attrs.get("address") or self._kernel.new_mac())
        extra = {"mtu": attrs["mtu"]} if attrs.get("mtu") else {}
        self._ns.new_link(name, kind, mac, **extra)

    def set_link(self, name: str, **attrs: object) -> None:
        link = self._link(name)
        self._mutate("set", f"link '{name}'")
        master = attrs.get("master")
        if master:
            parent = self._ns.links.get(int(str(master)))
            if parent is None:
                raise self._fail("set", f"link '{name}'", errno.ENODEV)
            # bond_enslave: "Device can not be enslaved while up".
            if parent.kind == "bond" and link.up:
                raise self._fail("set", f"link '{name}'", errno.EPERM)
            link.master = parent.index
        elif master is not None and link.master is not None:
            old = self._ns.links.get(link.master)
            link.master = None
            if old is not None and old.kind == "bond":
                _set_down(self._ns, link)  # __bond_release_one closes the slave
        for key in ("mtu", "txqlen"):
            if key in attrs:
                setattr(link, key, int(str(attrs[key])))
        if "address" in attrs:
            link.mac = str(attrs["address"]).lower()
        state = attrs.get("state")
        if state == "up":
            link.up = True
        elif state == "down" and link.up:
            _set_down(self._ns, link)

    def add_vlan(self, name: str, parent: str, vlan_id: int) -> None:
        lower = self._link(parent)
        self._mutate("add", f"vlan '{name}'")
        if self._ns.by_name(name) is not None:
            raise self._fail("add", f"vlan '{name}'", errno.EEXIST)
        taken = any(x.link == lower.index and x.vlan_id == vlan_id for x in self._ns.links.values())
        if taken:
            raise self._fail("add", f"vlan '{name}'", errno.EEXIST)
        self._ns.new_link(
            name, "vlan", lower.mac, mtu=lower.mtu, link=lower.index, vlan_id=vlan_id, txqlen=0
        )

    def add_bond(self, name: str, options: Sequence[tuple[str, BondValue]]) -> None:
        values = dict(options)
        if "primary" in values:
            self.index(str(values["primary"]))
        self._mutate("add", f"bond '{name}'")
        if self._ns.by_name(name) is not None:
            raise self._fail("add", f"bond '{name}'", errno.EEXIST)
        mode = values.get("mode", 0)
        self._ns.new_link(name, "bond", self._kernel.new_mac(), bond_mode=int(str(mode)))

    def set_alias(self, name: str, alias: str) -> None:
        link = self._link(name)
        self._mutate("set", f"link '{name}'")
        link.alias = alias

    def delete_link(self, name: str, *, missing_ok: bool = False) -> None:
        link = self._ns.by_name(name)
        if link is None:
            if missing_ok:
                return
            raise NotFound("find", f"link '{name}' in {self.where}", errno.ENODEV)
        self._mutate("delete", f"link '{name}'")
        _drop_link(self._ns, link.index)
        if link.peer is not None:
            other, index = link.peer
            if index in other.links:
                _drop_link(other, index)

    # -- addresses ----------------------------------------------------------------------

    def add_address(self, name: str, address: IPInterface) -> None:
        link = self._link(name)
        obj = f"address {address} on '{name}'"
        self._mutate("add", obj)
        for a in self._ns.addresses:
            # IPv4: the same address and prefix (__inet_insert_ifa); IPv6: the same address.
            same = a.address == address if address.version == 4 else a.address.ip == address.ip
            if a.index == link.index and same:
                raise self._fail("add", obj, errno.EEXIST)
        flags = IFA_F_PERMANENT | (IFA_F_NODAD if address.version == 6 else 0)
        scope = RT_SCOPE_LINK if address.ip in LINK_LOCAL6 else RT_SCOPE_UNIVERSE
        self._ns.addresses.append(Address(link.index, address, scope, flags))

    def delete_address(self, name: str, address: IPInterface) -> None:
        link = self._link(name)
        obj = f"address {address} on '{name}'"
        self._mutate("delete", obj)
        found = [a for a in self._ns.addresses if a.index == link.index and a.address == address]
        if not found:
            raise self._fail("delete", obj, errno.EADDRNOTAVAIL)
        self._ns.addresses.remove(found[0])
        if address.version == 4 and not any(a.address.ip == address.ip for a in self._ns.addresses):
            # fib_sync_down_addr: routes whose preferred source was this address go too.
            self._ns.routes = [r for r in self._ns.routes if r.prefsrc != address.ip]

    # -- routes -------------------------------------------------------------------------

    def _stored(self, route: Route) -> Route:
        if route.family == AF_INET6 and not route.priority:
            return replace(route, priority=IP6_RT_PRIO_USER)
        return route

    def _check_route(self, route: Route, obj: str) -> None:
        link = self._ns.links.get(route.oif) if route.oif is not None else None
        if route.oif is not None and link is None:
            raise self._fail("add", obj, errno.ENODEV)
        if link is not None and not link.up:
            raise self._fail("add", obj, errno.ENETDOWN)  # fib_check_nh, fib6_nh_init
        local = {a.address.ip for a in self._ns.addresses}
        if route.prefsrc is not None and route.prefsrc not in local:
            raise self._fail("add", obj, errno.EINVAL)  # "Invalid prefsrc address"
        gateway = route.gateway
        if gateway is not None and not (gateway.version == 6 and gateway in LINK_LOCAL6):
            # The gateway must be on a link route through the same link (fib_check_nh_v4_gw,
            # ip6_validate_gw).
            near = [
                r
                for r in self._all_routes()
                if r.table in (RT_TABLE_MAIN, route.table)
                and r.gateway is None
                and gateway in r.dst
                and (route.oif is None or r.oif == route.oif)
            ]
            if not near:
                code = errno.ENETUNREACH if gateway.version == 4 else errno.EHOSTUNREACH
                raise self._fail("add", obj, code)

    def add_route(self, route: Route) -> None:
        obj = f"route {route.dst} table {route.table}"
        self._mutate("add", obj)
        self._check_route(route, obj)
        stored = self._stored(route)
        for r in self._all_routes():
            # One route per destination, TOS and priority in a table (fib_table_insert,
            # fib6_add_rt2node with NLM_F_EXCL).
            if (r.table, r.dst, r.priority) == (stored.table, stored.dst, stored.priority):
                raise self._fail("add", obj, errno.EEXIST)
        self._ns.routes.append(stored)

    def delete_route(self, route: Route) -> None:
        obj = f"route {route.dst} table {route.table}"
        self._mutate("delete", obj)
        for r in self._ns.routes:
            if self._matches(r, route):
                self._ns.routes.remove(r)
                return
        raise self._fail("delete", obj, errno.ESRCH)

    @staticmethod
    def _matches(r: Route, want: Route) -> bool:
        """fib_table_delete / ip6_route_del: the key, then each field the request sets."""
        return (
            (r.table, r.dst) == (want.table, want.dst)
            and (not want.priority or r.priority == want.priority)
            and (not want.proto or r.proto == want.proto)
            and (want.oif is None or r.oif == want.oif)
            and (want.gateway is None or r.gateway == want.gateway)
            and (want.type in (RTN_UNSPEC, r.type))
            and (want.family == AF_INET6 or want.scope in (RT_SCOPE_NOWHERE, r.scope))
        )

    # -- rules --------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> None:
        obj = f"rule {rule.priority} table {rule.table}"
        self._mutate("add", obj)
        # A mark without a mask is matched whole (FRA_FWMASK 0xffffffff, as the adapter sends).
        stored = replace(rule, fwmask=rule.fwmask or (0xFFFFFFFF if rule.fwmark else 0))
        if stored in self._ns.rules:  # rule_exists: every selector equal
            raise self._fail("add", obj, errno.EEXIST)
        self._ns.rules.append(stored)

    def delete_rule(self, rule: Rule) -> None:
        obj = f"rule {rule.priority} table {rule.table}"
        self._mutate("delete", obj)
        for r in self._ns.rules:
            if (
                r.family == rule.family
                and r.priority == rule.priority
                and r.table == rule.table
                and (rule.src is None or r.src == rule.src)
                and (rule.dst is None or r.dst == rule.dst)
                and (not rule.iifname or r.iifname == rule.iifname)
                and (not rule.oifname or r.oifname == rule.oifname)
                and (not rule.fwmark or r.fwmark == rule.fwmark)
                and r.action == FR_ACT_TO_TBL
            ):
                self._ns.rules.remove(r)
                return
        raise self._fail("delete", obj, errno.ENOENT)

    # -- neighbours ---------------------------------------------------------------------

    def add_neighbour(self, neighbour: Neighbour) -> None:
        obj = f"neighbour {neighbour.dst}"
        self._mutate("add", obj)
        if neighbour.ifindex not in self._ns.links:
            raise self._fail("add", obj, errno.ENODEV)
        for n in self._ns.neighbours:
            if (n.ifindex, n.dst) == (neighbour.ifindex, neighbour.dst):
                raise self._fail("add", obj, errno.EEXIST)
        self._ns.neighbours.append(replace(neighbour, lladdr=neighbour.lladdr.lower()))

    def delete_neighbour(self, neighbour: Neighbour) -> None:
        obj = f"neighbour {neighbour.dst}"
        self._mutate("delete", obj)
        if neighbour.ifindex not in self._ns.links:
            raise self._fail("delete", obj, errno.ENODEV)
        for n in self._ns.neighbours:
            if (n.ifindex, n.dst) == (neighbour.ifindex, neighbour.dst):
                self._ns.neighbours.remove(n)
                return
        raise self._fail("delete", obj, errno.ENOENT)


class FakeAccess:
    """`Reach` over a FakeKernel: netlink clients, sysctls and the nftables reply marking.
    Sockets (announcements) are not offered: apply them with `announce=None`."""

    def __init__(self, kernel: FakeKernel) -> None:
        self._kernel = kernel
        self.opened: list[FakeNetlink] = []

    def netlink(self, netns: str | None) -> FakeNetlink:
        client = self._kernel.netlink(netns)
        self.opened.append(client)
        return client

    def open_socket(
        self, netns: str | None, family: int, kind: int, proto: int = 0
    ) -> socket.socket:
        raise NotImplementedError("the fake kernel has no sockets: apply with announce=None")

    def discard(self, sock: socket.socket) -> None:
        sock.close()

    def read_sysctls(self, netns: str | None, keys: Sequence[str]) -> dict[str, str]:
        ns = self._kernel.get(netns)
        return {k: ns.sysctls[k] for k in keys if k in ns.sysctls}

    def set_sysctl(self, netns: str | None, key: str, value: str, *, missing_ok: bool) -> None:
        ns = self._kernel.get(netns)
        self._kernel.mutate(f"set sysctl {key} in '{ns.path}'")
        if key not in ns.sysctls:
            if missing_ok:
                return
            raise FileNotFoundError(f"no sysctl '{key}' in '{ns.path}'")
        ns.sysctls[key] = value

    def nft(self, netns: str | None, script: str, action: str) -> None:
        ns = self._kernel.get(netns)
        self._kernel.mutate(f"{action} in '{ns.path}'")
        if action == nft.ADD_ACTION:
            if nft.TABLE in ns.nft_tables:
                raise nft.NftError(f"failed to {action}: File exists")
            ns.nft_tables.add(nft.TABLE)
        elif action == nft.DROP_ACTION:
            ns.nft_tables.discard(nft.TABLE)  # the script deletes only what exists
        else:
            raise ValueError(f"the fake kernel does not know nftables action {action!r}")
