"""The pyroute2-backed netlink client, opened in one network namespace.

Its sockets are opened *in* the namespace and then used from here: by pyroute2's forking
opener (`netns.open_socket_in`, which never creates a missing namespace), or by the node
service's namespace broker (node/access/), so no thread of ours changes namespace. Reads
go through `raw.Reader` (pyroute2's messages without its event loop); changes through
pyroute2's IPRoute, opened on the first change.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink import nlmsg
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETNSID,
    RTM_GETROUTE,
    RTM_GETRULE,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTM_NEWRULE,
)
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.nsidmsg import nsidmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from spidernet.netconf.ifacer.config import BondValue
from spidernet.node.netns import open_fd, open_socket_in

from .errors import AlreadyExists, NotFound, classify
from .messages import (
    addr,
    alias_msg,
    bond_msg,
    getroute,
    link_of,
    neighbour_msg,
    net,
    route_msg,
    rule_msg,
    vlan_msg,
)
from .raw import Reader
from .records import (
    AF_INET,
    AF_INET6,
    IFF_UP,
    Address,
    IPAddress,
    IPInterface,
    Link,
    Neighbour,
    Route,
    Rule,
    State,
)

T = TypeVar("T")
# set_link's attributes the reader sends itself; any other goes through pyroute2.
_RAW_LINK_ATTRS = frozenset({"state", "address", "mtu", "txqlen", "master"})
# rtnetlink.h: report the FIB table of a looked-up route (RTM_GETROUTE replies).
RTM_F_LOOKUP_TABLE = 0x1000
# A dump the kernel marks NLM_F_DUMP_INTR (state changed while dumping) is retried this
# often, as the reference plugins' netlinksafe does.
DUMP_ATTEMPTS = 5
# pkt_sched.h: TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS), the parent of a clsact qdisc's
# ingress filters (`tc filter add ... ingress`).
TC_H_CLSACT_INGRESS = 0xFFFFFFF2
# A filter added without a priority gets one of its own (tc_new_tfilter, tcf_auto_prio), so
# every filter of ours can have handle 1 in it.
TC_BPF_HANDLE = 1


class Netlink:
    """rtnetlink requests in one namespace; use as a context manager to close the socket."""

    def __init__(self, open_socket: Callable[[], socket.socket], where: str) -> None:
        """`open_socket()` makes a NETLINK_ROUTE socket in the namespace: one now, for the
        reads (raw.py), and one for pyroute2 on the first change."""
        self._open_socket = open_socket
        self._reader = Reader(open_socket())
        self._writer: IPRoute | None = None
        self.where = where
        # name -> index, for the links this client looked up or made: a client lives for
        # one plugin call, and a plan names its links (ops.py), so most operations would
        # otherwise start with a lookup. Forgotten when this client deletes the link.
        self._indexes: dict[str, int] = {}

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the netlink sockets."""
        self._reader.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def _ipr(self) -> IPRoute:
        if self._writer is None:
            self._writer = IPRoute(use_socket=self._open_socket())
        return self._writer

    def _read(
        self,
        what: str,
        cls: Callable[[], nlmsg],
        msg_type: int,
        family: int = 0,
        attrs: Sequence[tuple[str, Any]] = (),
    ) -> list[Any]:
        """A dump of one family through the reader (`attrs`: the kernel's dump filters),
        restarted when the kernel flags it inconsistent."""

        def once() -> list[Any]:
            msg = cls()
            msg["family"] = family
            if attrs:
                msg["attrs"] = list(attrs)
            return self._reader.request(msg, msg_type, dump=True)

        return self._dump(what, once)

    def _get(self, action: str, obj: str, msg: nlmsg, msg_type: int) -> list[Any]:
        return self._call(action, obj, lambda: self._reader.request(msg, msg_type, dump=False))

    def _call(self, action: str, obj: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except NetlinkError as e:
            raise classify(action, f"{obj} in {self.where}", e.code) from e

    def _dump(self, what: str, fn: Callable[[], Any]) -> list[Any]:
        for attempt in range(DUMP_ATTEMPTS):
            try:
                return list(fn())
            except NetlinkDumpInterrupted:
                if attempt == DUMP_ATTEMPTS - 1:
                    raise
            except NetlinkError as e:
                raise classify("dump", f"{what} in {self.where}", e.code) from e
        return []  # pragma: no cover - the loop returns or raises

    # -- reading ------------------------------------------------------------------------

    def links(self) -> list[Link]:
        """Every link in the namespace."""
        return [link_of(m) for m in self._read("links", ifinfmsg, RTM_GETLINK)]

    def link_at(self, index: int) -> Link:
        """The link with interface index `index` (one RTM_GETLINK); raises NotFound."""
        msg = ifinfmsg()
        msg["index"] = index
        [m, *_] = self._get("look up", f"link {index}", msg, RTM_GETLINK)
        return link_of(m)

    def link(self, name: str) -> Link:
        """The link called `name`; raises NotFound."""
        for link in self.links():
            if link.name == name:
                return link
        raise NotFound("find", f"link '{name}' in {self.where}", 19)

    def index(self, name: str) -> int:
        """The interface index of `name`; raises NotFound."""
        known = self._indexes.get(name)
        if known is not None:
            return known
        # RTM_GETLINK by IFLA_IFNAME: one link, where pyroute2's link_lookup dumps them all.
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        found = self._get("look up", f"link '{name}'", msg, RTM_GETLINK)
        if not found:
            raise NotFound("find", f"link '{name}' in {self.where}", 19)
        index = self._indexes[name] = int(found[0]["index"])
        return index

    def txqlen(self, name: str) -> int:
        """The transmit queue length of link `name` (IFLA_TXQLEN); raises NotFound."""
        index = self.index(name)
        msg = ifinfmsg()
        msg["index"] = index
        found = self._get("read", f"link '{name}'", msg, RTM_GETLINK)
        return int(found[0].get("txqlen") or 0)

    def addresses(self) -> list[Address]:
        """Every address in the namespace, both families."""
        out = []
        for family in (AF_INET, AF_INET6):
            for m in self._read("addresses", ifaddrmsg, RTM_GETADDR, family):
                out.append(
                    Address(
                        index=m["index"],
                        address=ipaddress.ip_interface(f"{m.get('address')}/{m['prefixlen']}"),
                        scope=m["scope"],
                        flags=m.get("IFA_FLAGS") or m["flags"],
                    )
                )
        return out

    def routes(self, table: int | None = None) -> list[Route]:
        """Every route of every table, or of `table` only (the kernel filters: a strict
        dump with RTA_TABLE), both families (multipath next hops are not split)."""
        out = []
        only = [("RTA_TABLE", table)] if table is not None else []
        for family in (AF_INET, AF_INET6):
            for m in self._read("routes", rtmsg, RTM_GETROUTE, family, only):
                out.append(
                    Route(
                        dst=net(m.get("dst"), m["dst_len"], family),
                        table=m.get_attr("RTA_TABLE") or m["table"],
                        gateway=addr(m.get("gateway")),
                        oif=m.get("oif"),
                        prefsrc=addr(m.get("prefsrc")),
                        proto=m["proto"],
                        scope=m["scope"],
                        type=m["type"],
                        priority=m.get("priority") or 0,
                    )
                )
        return out

    def route_get(
        self,
        dst: IPAddress,
        *,
        src: IPAddress | None = None,
        iif: str = "",
        mark: int = 0,
        dport: int = 0,
    ) -> Route:
        """The kernel's own route lookup (RTM_GETROUTE, `ip route get`): the route a packet
        to `dst` (from `src`, arriving on link `iif`, with fwmark `mark`, to TCP port
        `dport`) would take. With `iif` it is the input lookup a received packet gets,
        reverse-path filter included: a packet rp_filter drops fails with EXDEV.

        RTM_F_LOOKUP_TABLE asks the kernel to report the table the lookup found the route
        in (rtnetlink.h); without it an IPv4 answer names the main table even when a policy
        rule sent the lookup elsewhere. The table is read from RTA_TABLE: the header's 8-bit
        field cannot hold tables above 255."""
        family = AF_INET if dst.version == 4 else AF_INET6
        full = 32 if family == AF_INET else 128
        msg = getroute()
        # IPv6 answers always name their table, and a strict IPv6 request may carry no
        # flag but RTM_F_FIB_MATCH (inet6_rtm_valid_getroute_req): EINVAL otherwise.
        lookup_table = RTM_F_LOOKUP_TABLE if family == AF_INET else 0
        msg["family"], msg["flags"], msg["dst_len"] = family, lookup_table, full
        attrs: list[tuple[str, Any]] = [("RTA_DST", str(dst))]
        if src is not None:
            msg["src_len"] = full
            attrs.append(("RTA_SRC", str(src)))
        if iif:
            attrs.append(("RTA_IIF", self.index(iif)))
        if mark:
            attrs.append(("RTA_MARK", mark))
        if dport:  # a TCP destination port, for rules that match on one (`ipproto`, `dport`)
            attrs += [("RTA_IP_PROTO", socket.IPPROTO_TCP), ("RTA_DPORT", dport)]
        msg["attrs"] = attrs
        [m, *_] = self._get("look up", f"route to {dst}", msg, RTM_GETROUTE)
        return Route(
            dst=net(m.get("dst") or str(dst), m["dst_len"] or full, family),
            table=m.get_attr("RTA_TABLE") or m["table"],
            gateway=addr(m.get_attr("RTA_GATEWAY")),
            oif=m.get_attr("RTA_OIF"),
            prefsrc=addr(m.get_attr("RTA_PREFSRC")),
            proto=m["proto"],
            scope=m["scope"],
            type=m["type"],
        )

    def nsid_of(self, netns_path: str) -> int | None:
        """The id this namespace gives the namespace at `netns_path` (RTM_GETNSID with
        NETNSA_FD), the id a veth names its peer's namespace by (IFLA_LINK_NETNSID); None
        when it has given that namespace no id. Raises NetnsGone."""
        fd = open_fd(netns_path)
        try:
            msg = nsidmsg()
            msg["attrs"] = [("NETNSA_FD", fd)]
            [m, *_] = self._get("look up", f"the id of '{netns_path}'", msg, RTM_GETNSID)
        finally:
            os.close(fd)
        nsid = m.get_attr("NETNSA_NSID")
        # NETNSA_NSID_NOT_ASSIGNED is -1, which the unsigned attribute shows as 2**32 - 1.
        return None if nsid is None or nsid in (-1, 0xFFFFFFFF) else int(nsid)

    def rules(self) -> list[Rule]:
        """Every IPv4 and IPv6 policy routing rule."""
        out = []
        for family in (AF_INET, AF_INET6):
            for m in self._read("rules", fibmsg, RTM_GETRULE, family):
                src, dst = m.get("src"), m.get("dst")
                out.append(
                    Rule(
                        family=family,
                        priority=m.get("priority") or 0,
                        table=m.get_attr("FRA_TABLE") or m["table"],
                        src=net(src, m["src_len"], family) if src else None,
                        dst=net(dst, m["dst_len"], family) if dst else None,
                        iifname=m.get("iifname") or "",
                        oifname=m.get("oifname") or "",
                        fwmark=m.get("fwmark") or 0,
                        fwmask=m.get("fwmask") or 0,
                        action=m["action"],
                    )
                )
        return out

    def neighbours(self) -> list[Neighbour]:
        """Every neighbour entry, both families."""
        out = []
        for family in (AF_INET, AF_INET6):
            for m in self._read("neighbours", ndmsg, RTM_GETNEIGH, family):
                if not m.get("dst"):
                    continue
                out.append(
                    Neighbour(
                        ifindex=m["ifindex"],
                        dst=ipaddress.ip_address(m.get("dst")),
                        lladdr=m.get("lladdr") or "",
                        state=m["state"],
                    )
                )
        return out

    def state(self) -> State:
        """A snapshot of links, addresses, routes, rules and neighbours."""
        return State(
            links=tuple(self.links()),
            addresses=tuple(self.addresses()),
            routes=tuple(self.routes()),
            rules=tuple(self.rules()),
            neighbours=tuple(self.neighbours()),
        )

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
        """Create a veth pair here; `peer_netns` (a path) creates the peer end there.

        The peer is made in its namespace at once (IFLA_NET_NS_FD in the peer's attributes,
        as `ip link add ... peer ... netns` does) rather than moved after: moving a link
        between namespaces waits for an RCU grace period (dev_change_net_namespace)."""
        extra: dict[str, object] = {"mtu": mtu} if mtu else {}
        # Both ends get the MTU: the kernel sets the peer's only from its own attributes.
        peer_spec: dict[str, object] = {"ifname": peer, **extra}
        if peer_mac:
            peer_spec["address"] = peer_mac
        own = {**extra, **({"address": mac} if mac else {})}
        fd = None
        if peer_netns is not None:
            fd = open_fd(peer_netns)
            peer_spec["net_ns_fd"] = fd
        try:
            self._call(
                "add",
                f"veth '{name}'",
                lambda: self._ipr.link("add", ifname=name, kind="veth", peer=peer_spec, **own),
            )
        finally:
            if fd is not None:
                os.close(fd)

    def add_link(self, name: str, kind: str, **attrs: object) -> None:
        """Create a link of `kind` (bridge, macvlan, ...) with pyroute2 attributes."""
        self._call(
            "add",
            f"{kind} '{name}'",
            lambda: self._ipr.link("add", ifname=name, kind=kind, **attrs),
        )

    def set_link(self, name: str, **attrs: object) -> None:
        """Change attributes of link `name` (state="up", master=index, mtu=..., address=...)."""
        index = self.index(name)
        if not set(attrs) <= _RAW_LINK_ATTRS:
            self._call("set", f"link '{name}'", lambda: self._ipr.link("set", index=index, **attrs))
            return
        msg = ifinfmsg()
        msg["index"] = index
        state = attrs.get("state")
        if state is not None:
            msg["flags"], msg["change"] = (IFF_UP if state == "up" else 0), IFF_UP
        nla = {"address": "IFLA_ADDRESS", "mtu": "IFLA_MTU", "txqlen": "IFLA_TXQLEN"}
        nla |= {"master": "IFLA_MASTER"}
        msg["attrs"] = [(nla[k], v) for k, v in attrs.items() if k != "state"]
        # RTM_NEWLINK without NLM_F_CREATE on an index changes that link (rtnl_newlink).
        self._call("set", f"link '{name}'", lambda: self._reader.change(msg, RTM_NEWLINK))

    def add_vlan(self, name: str, parent: str, vlan_id: int) -> None:
        """Create VLAN `vlan_id` called `name` on link `parent` (left down)."""
        msg = vlan_msg(name, self.index(parent), vlan_id)
        self._call("add", f"vlan '{name}'", lambda: self._reader.create(msg, RTM_NEWLINK))

    def add_bond(self, name: str, options: Sequence[tuple[str, BondValue]]) -> None:
        """Create bond `name` with `options` by kernel name, mode first (left down)."""
        msg = bond_msg(name, self._bond_values(options))
        self._call("add", f"bond '{name}'", lambda: self._reader.create(msg, RTM_NEWLINK))

    def _bond_values(self, options: Sequence[tuple[str, BondValue]]) -> list[tuple[str, BondValue]]:
        # netlink names a bond's primary by index; the config by name
        return [(k, self.index(str(v)) if k == "primary" else v) for k, v in options]

    def set_alias(self, name: str, alias: str) -> None:
        """Set link `name`'s alias (IFLA_IFALIAS; "" removes it)."""
        msg = alias_msg(self.index(name), alias)
        self._call("set", f"link '{name}'", lambda: self._reader.change(msg, RTM_NEWLINK))

    def delete_link(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete link `name` (and its veth peer with it)."""
        try:
            index = self.index(name)
            self._call("delete", f"link '{name}'", lambda: self._ipr.link("del", index=index))
        except NotFound:
            if not missing_ok:
                raise
        finally:
            self._indexes.pop(name, None)

    # -- addresses, routes, rules, neighbours -------------------------------------------

    def add_address(self, name: str, address: IPInterface) -> None:
        """Add `address` to link `name` (IPv6 without DAD delay: IFA_F_NODAD)."""
        index = self.index(name)
        extra = {"flags": 0x02} if address.version == 6 else {}
        self._call(
            "add",
            f"address {address} on '{name}'",
            lambda: self._ipr.addr(
                "add",
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                **extra,
            ),
        )

    def delete_address(self, name: str, address: IPInterface) -> None:
        """Remove `address` from link `name`."""
        index = self.index(name)
        self._call(
            "delete",
            f"address {address} on '{name}'",
            lambda: self._ipr.addr(
                "del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            ),
        )

    def _change(self, action: str, obj: str, msg: nlmsg, msg_type: int) -> None:
        if action == "add":
            self._call(action, obj, lambda: self._reader.create(msg, msg_type))
        else:
            self._call(action, obj, lambda: self._reader.delete(msg, msg_type))

    def add_route(self, route: Route) -> None:
        """Install `route`."""
        msg = route_msg(route)
        self._change("add", f"route {route.dst} table {route.table}", msg, RTM_NEWROUTE)

    def delete_route(self, route: Route) -> None:
        """Remove `route`."""
        msg = route_msg(route)
        self._change("delete", f"route {route.dst} table {route.table}", msg, RTM_DELROUTE)

    def add_rule(self, rule: Rule) -> None:
        """Install policy routing `rule`."""
        msg = rule_msg(rule)
        self._change("add", f"rule {rule.priority} table {rule.table}", msg, RTM_NEWRULE)

    def delete_rule(self, rule: Rule) -> None:
        """Remove policy routing `rule`."""
        msg = rule_msg(rule)
        self._change("delete", f"rule {rule.priority} table {rule.table}", msg, RTM_DELRULE)

    def add_neighbour(self, neighbour: Neighbour) -> None:
        """Install a neighbour entry (permanent unless `state` says otherwise)."""
        msg = neighbour_msg(neighbour, lladdr=True)
        self._change("add", f"neighbour {neighbour.dst}", msg, RTM_NEWNEIGH)

    def delete_neighbour(self, neighbour: Neighbour) -> None:
        """Remove a neighbour entry."""
        msg = neighbour_msg(neighbour, lladdr=False)
        msg["state"] = 0
        self._change("delete", f"neighbour {neighbour.dst}", msg, RTM_DELNEIGH)

    # -- traffic control (tc-bpf(8): a clsact qdisc, BPF filters at its ingress hook) -----

    def add_clsact(self, name: str) -> bool:
        """Give link `name` a clsact qdisc; False when it has one already (or an ingress
        qdisc, which holds the same handle ffff:), which is then not this caller's to
        remove."""
        index = self.index(name)
        try:
            self._call(
                "add", f"clsact qdisc on '{name}'", lambda: self._ipr.tc("add", "clsact", index)
            )
        except AlreadyExists:
            return False
        return True

    def delete_clsact(self, name: str) -> None:
        """Remove link `name`'s clsact qdisc, and every filter on it with it."""
        index = self.index(name)
        self._call(
            "delete", f"clsact qdisc on '{name}'", lambda: self._ipr.tc("del", "clsact", index)
        )

    def attach_bpf_ingress(self, name: str, prog_fd: int, label: str) -> None:
        """Attach the SCHED_CLS program `prog_fd` (a descriptor of this process) to link
        `name`'s ingress hook in direct-action mode, as filter `label` (TCA_BPF_NAME, the
        name `detach_bpf_ingress` finds it by). The link needs a clsact qdisc."""
        index = self.index(name)
        self._call(
            "attach",
            f"bpf filter '{label}' to the ingress of '{name}'",
            lambda: self._ipr.tc(
                "add-filter",
                "bpf",
                index,
                TC_BPF_HANDLE,
                parent=TC_H_CLSACT_INGRESS,
                fd=prog_fd,
                name=label,
                classid=1,
                direct_action=True,
            ),
        )

    def detach_bpf_ingress(self, name: str, label: str) -> int:
        """Remove the BPF filters called `label` from link `name`'s ingress hook; how many
        there were."""
        index = self.index(name)
        where = f"bpf filter '{label}' on the ingress of '{name}'"
        found = self._call(
            "list",
            where,
            lambda: list(self._ipr.get_filters(index=index, parent=TC_H_CLSACT_INGRESS)),
        )
        removed = 0
        for m in found:
            # A dump lists each priority's head (handle 0, no options) before its filters.
            options = m.get_attr("TCA_OPTIONS")
            if m.get_attr("TCA_KIND") != "bpf" or options is None:
                continue
            if options.get_attr("TCA_BPF_NAME") != label:
                continue
            # The filter by its handle and `info` (priority << 16 | protocol).
            delete = partial(
                self._ipr.tc,
                "del-filter",
                "bpf",
                index,
                m["handle"],
                parent=TC_H_CLSACT_INGRESS,
                info=m["info"],
            )
            self._call("detach", where, delete)
            removed += 1
        return removed


def netlink_on(open_socket: Callable[[], socket.socket], where: str) -> Netlink:
    """A client over NETLINK_ROUTE sockets that `open_socket()` makes elsewhere (in another
    namespace, by the namespace broker); the client owns and closes them. `where` names
    the namespace."""
    return Netlink(open_socket, where)


def _own_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)


def open_netlink(netns: str | None = None) -> Netlink:
    """A client in the namespace at path `netns` (None: this process's namespace). Its
    sockets are opened *in* that namespace (`netns.open_socket_in`: a forked child enters
    it), so no thread of ours changes namespace.

    Raises NetnsGone when the namespace does not exist; it is never created.
    """
    if netns is None:
        return Netlink(_own_socket, "this namespace")
    path = netns
    return Netlink(
        lambda: open_socket_in(path, socket.AF_NETLINK, socket.SOCK_DGRAM, 0), f"netns '{netns}'"
    )


@contextmanager
def netlink(netns: str | None = None) -> Iterator[Netlink]:
    """`with netlink(path) as nl:` opens and closes a client."""
    client = open_netlink(netns)
    try:
        yield client
    finally:
        client.close()


__all__ = ["Netlink", "netlink", "netlink_on", "open_netlink"]
