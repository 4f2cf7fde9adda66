"""rtnetlink messages from and to our records (pure): pyroute2's message classes, filled
or read field by field, for the client's own socket (raw.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

from pyroute2.netlink import nlmsg
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from .records import AF_INET, AF_INET6, IFF_UP, IPAddress, Link, Neighbour, Route, Rule

RT_TABLE_UNSPEC = 0  # rtnetlink.h: the header names no table (RTA_TABLE / FRA_TABLE does)


def addr(text: str | None) -> IPAddress | None:
    return ipaddress.ip_address(text) if text else None


def net(
    text: str | None, length: int, family: int
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not text:
        text = "0.0.0.0" if family == AF_INET else "::"
    return ipaddress.ip_network(f"{text}/{length}", strict=False)


class getroute(rtmsg):  # type: ignore[misc]
    """rtmsg with the lookup attributes pyroute2 0.9 does not name (rtnetlink.h: 24 RTA_PAD
    to 29 RTA_DPORT), so a route lookup can carry a protocol and port as `ip route get
    ... ipproto tcp dport N` does."""

    # pyroute2 compiles a class's attribute table on first use and marks the class done;
    # the mark is looked up through the class hierarchy, so once rtmsg is compiled (any
    # IPRoute call does it) a subclass would use rtmsg's table unless it has its own mark.
    _nlmsg_base__compiled_nla = False
    nla_map = (
        *rtmsg.nla_map,
        ("RTA_PAD", "none"),
        ("RTA_UID", "uint32"),
        ("RTA_TTL_PROPAGATE", "uint8"),
        ("RTA_IP_PROTO", "uint8"),
        ("RTA_SPORT", "be16"),
        ("RTA_DPORT", "be16"),
    )


def link_of(m: nlmsg) -> Link:
    """A link record from an RTM_NEWLINK message."""
    return Link(
        index=m["index"],
        name=m.get("ifname"),
        kind=m.get(("linkinfo", "kind")) or "",
        mac=m.get("address") or "",
        mtu=m.get("mtu") or 0,
        up=bool(m["flags"] & IFF_UP),
        master=m.get("master"),
        link=m.get("link"),
        link_netnsid=m.get("link_netnsid"),
    )


def route_msg(route: Route) -> rtmsg:
    """The RTM_NEWROUTE / RTM_DELROUTE message of `route`."""
    msg = rtmsg()
    msg["family"], msg["dst_len"] = route.family, route.dst.prefixlen
    # The header's table field is 8 bits; RTA_TABLE carries any table and wins.
    msg["table"] = route.table if route.table < 256 else RT_TABLE_UNSPEC
    msg["proto"], msg["scope"], msg["type"] = route.proto, route.scope, route.type
    attrs: list[tuple[str, Any]] = [("RTA_TABLE", route.table)]
    if route.dst.prefixlen:
        attrs.append(("RTA_DST", str(route.dst.network_address)))
    if route.gateway is not None:
        attrs.append(("RTA_GATEWAY", str(route.gateway)))
    if route.oif is not None:
        attrs.append(("RTA_OIF", route.oif))
    if route.prefsrc is not None:
        attrs.append(("RTA_PREFSRC", str(route.prefsrc)))
    if route.priority:
        attrs.append(("RTA_PRIORITY", route.priority))
    msg["attrs"] = attrs
    return msg


def rule_msg(rule: Rule) -> fibmsg:
    """The RTM_NEWRULE / RTM_DELRULE message of `rule`."""
    msg = fibmsg()
    msg["family"], msg["action"] = rule.family, rule.action
    msg["table"] = rule.table if rule.table < 256 else RT_TABLE_UNSPEC
    attrs: list[tuple[str, Any]] = [
        ("FRA_PRIORITY", rule.priority),
        ("FRA_TABLE", rule.table),
    ]
    if rule.src is not None:
        msg["src_len"] = rule.src.prefixlen
        attrs.append(("FRA_SRC", str(rule.src.network_address)))
    if rule.dst is not None:
        msg["dst_len"] = rule.dst.prefixlen
        attrs.append(("FRA_DST", str(rule.dst.network_address)))
    if rule.iifname:
        attrs.append(("FRA_IIFNAME", rule.iifname))
    if rule.oifname:
        attrs.append(("FRA_OIFNAME", rule.oifname))
    if rule.fwmark:
        attrs.append(("FRA_FWMARK", rule.fwmark))
        attrs.append(("FRA_FWMASK", rule.fwmask or 0xFFFFFFFF))
    msg["attrs"] = attrs
    return msg


def neighbour_msg(neighbour: Neighbour, *, lladdr: bool) -> ndmsg:
    """The RTM_NEWNEIGH / RTM_DELNEIGH message of `neighbour` (`lladdr`: with its MAC)."""
    msg = ndmsg()
    msg["family"] = AF_INET if neighbour.dst.version == 4 else AF_INET6
    msg["ifindex"], msg["state"] = neighbour.ifindex, neighbour.state
    attrs: list[tuple[str, Any]] = [("NDA_DST", str(neighbour.dst))]
    if lladdr:
        attrs.append(("NDA_LLADDR", neighbour.lladdr))
    msg["attrs"] = attrs
    return msg
