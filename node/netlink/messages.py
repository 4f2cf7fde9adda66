"""rtnetlink messages from and to our records (pure): pyroute2's message classes, filled
or read field by field, for the client's own socket (raw.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from pyroute2.netlink import nlmsg
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ifinfmsg.plugins.bond import bond
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from spidernet.netconf.ifacer.config import BondValue

from .records import (
    AF_INET,
    AF_INET6,
    IFF_NOARP,
    IFF_UP,
    IPAddress,
    Link,
    Neighbour,
    Route,
    Rule,
)

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
    kind = m.get(("linkinfo", "kind")) or ""
    data = m.get(("linkinfo", "data")) if kind in ("vlan", "bond") else None
    return Link(
        index=m["index"],
        name=m.get("ifname"),
        kind=kind,
        mac=m.get("address") or "",
        mtu=m.get("mtu") or 0,
        up=bool(m["flags"] & IFF_UP),
        noarp=bool(m["flags"] & IFF_NOARP),
        master=m.get("master"),
        link=m.get("link"),
        link_netnsid=m.get("link_netnsid"),
        alias=m.get("ifalias") or "",
        vlan_id=data.get("vlan_id") if data is not None and kind == "vlan" else None,
        bond_mode=data.get("bond_mode") if data is not None and kind == "bond" else None,
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


# -- links the ifacer makes: VLANs and bonds ---------------------------------------------


class _BondData(bond):  # type: ignore[misc]  # pyroute2 is untyped
    """pyroute2's bond attributes plus IFLA_BOND_PEER_NOTIF_DELAY (Linux 5.3), which it
    lacks; registered below as the IFLA_INFO_DATA of kind "bond"."""

    _nlmsg_base__compiled_nla = False  # compile our own table, not the parent's
    nla_map = (*bond.nla_map, ("IFLA_BOND_PEER_NOTIF_DELAY", "uint32"))


ifinfmsg.ifinfo.register_link_kind(module={"bond": _BondData})

# Bond options by their kernel (sysfs) names -> IFLA_BOND_* attribute. Values arrive typed
# (netconf/ifacer/config.py checks them): integers, an interface *index* for primary
# (netlink takes indexes where sysfs takes names), IPv4 texts for
# arp_ip_target, a MAC text for ad_actor_system.
BOND_ATTRS: dict[str, str] = {
    "mode": "IFLA_BOND_MODE",
    "miimon": "IFLA_BOND_MIIMON",
    "updelay": "IFLA_BOND_UPDELAY",
    "downdelay": "IFLA_BOND_DOWNDELAY",
    "use_carrier": "IFLA_BOND_USE_CARRIER",
    "arp_interval": "IFLA_BOND_ARP_INTERVAL",
    "arp_ip_target": "IFLA_BOND_ARP_IP_TARGET",
    "arp_validate": "IFLA_BOND_ARP_VALIDATE",
    "arp_all_targets": "IFLA_BOND_ARP_ALL_TARGETS",
    "primary": "IFLA_BOND_PRIMARY",
    "primary_reselect": "IFLA_BOND_PRIMARY_RESELECT",
    "fail_over_mac": "IFLA_BOND_FAIL_OVER_MAC",
    "xmit_hash_policy": "IFLA_BOND_XMIT_HASH_POLICY",
    "resend_igmp": "IFLA_BOND_RESEND_IGMP",
    "num_peer_notif": "IFLA_BOND_NUM_PEER_NOTIF",
    "all_slaves_active": "IFLA_BOND_ALL_SLAVES_ACTIVE",
    "min_links": "IFLA_BOND_MIN_LINKS",
    "lp_interval": "IFLA_BOND_LP_INTERVAL",
    "packets_per_slave": "IFLA_BOND_PACKETS_PER_SLAVE",
    "lacp_rate": "IFLA_BOND_AD_LACP_RATE",
    "ad_select": "IFLA_BOND_AD_SELECT",
    "ad_actor_sys_prio": "IFLA_BOND_AD_ACTOR_SYS_PRIO",
    "ad_user_port_key": "IFLA_BOND_AD_USER_PORT_KEY",
    "ad_actor_system": "IFLA_BOND_AD_ACTOR_SYSTEM",
    "tlb_dynamic_lb": "IFLA_BOND_TLB_DYNAMIC_LB",
    "peer_notif_delay": "IFLA_BOND_PEER_NOTIF_DELAY",
}


def _bond_attr(option: str, value: BondValue) -> tuple[str, Any]:
    attr = BOND_ATTRS[option]
    if option == "ad_actor_system":
        return attr, bytes.fromhex(str(value).replace(":", ""))
    if option == "arp_ip_target":
        return attr, list(value) if isinstance(value, tuple) else [value]
    return attr, value


def _linkinfo(kind: str, data: list[tuple[str, Any]]) -> tuple[str, Any]:
    info: list[tuple[str, Any]] = [("IFLA_INFO_KIND", kind)]
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    return ("IFLA_LINKINFO", {"attrs": info})


def vlan_msg(name: str, parent: int, vlan_id: int) -> ifinfmsg:
    """The RTM_NEWLINK that creates VLAN `vlan_id` called `name` on link index `parent`."""
    msg = ifinfmsg()
    msg["attrs"] = [
        ("IFLA_IFNAME", name),
        ("IFLA_LINK", parent),
        _linkinfo("vlan", [("IFLA_VLAN_ID", vlan_id)]),
    ]
    return msg


def bond_msg(name: str, options: Sequence[tuple[str, BondValue]]) -> ifinfmsg:
    """The RTM_NEWLINK that creates bond `name` with `options` (the first being its mode)."""
    msg = ifinfmsg()
    msg["attrs"] = [
        ("IFLA_IFNAME", name),
        _linkinfo("bond", [_bond_attr(k, v) for k, v in options]),
    ]
    return msg


def alias_msg(index: int, alias: str) -> ifinfmsg:
    """The RTM_NEWLINK that sets link `index`'s alias (IFLA_IFALIAS)."""
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFALIAS", alias)]
    return msg
