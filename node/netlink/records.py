"""Typed records of kernel state, built from netlink messages by the adapter.

They are plain frozen dataclasses, so planners, tests and `spidernet diag` compare them
without knowing pyroute2.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

# A bond option's value, as the ifacer's config parses it (re-exported for the adapter).

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
# rtnetlink.h constants.
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RTN_UNICAST = 1
FR_ACT_TO_TBL = 1
# neighbour.h states: entries a program set, as opposed to ones the kernel learned.
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
# if.h
IFF_UP = 0x1
IFF_NOARP = 0x80


@dataclass(frozen=True)
class Link:
    """A network interface. `link` is the peer (veth) or parent (macvlan, vlan) index;
    `vlan_id` is set for VLAN links and `bond_mode` (0-6) for bonds; `alias` is the free-text
    IFLA_IFALIAS (`ip link set X alias ...`)."""

    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    up: bool
    master: int | None = None
    link: int | None = None
    link_netnsid: int | None = None
    alias: str = ""
    vlan_id: int | None = None
    bond_mode: int | None = None
    noarp: bool = False  # IFF_NOARP: no ARP/ND on it (ipvlan in L3 mode)


@dataclass(frozen=True)
class Address:
    """An address on a link."""

    index: int
    address: IPInterface
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = 0


@dataclass(frozen=True)
class Route:
    """A route in some table; `oif` is an interface index."""

    dst: IPNetwork
    table: int = RT_TABLE_MAIN
    gateway: IPAddress | None = None
    oif: int | None = None
    prefsrc: IPAddress | None = None
    proto: int = RTPROT_BOOT
    scope: int = RT_SCOPE_UNIVERSE
    type: int = RTN_UNICAST
    priority: int = 0

    @property
    def family(self) -> int:
        """AF_INET or AF_INET6."""
        return AF_INET if self.dst.version == 4 else AF_INET6


@dataclass(frozen=True)
class Rule:
    """A policy routing rule (`ip rule`); unset selectors are None or empty."""

    family: int
    priority: int
    table: int
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    iifname: str = ""
    oifname: str = ""
    fwmark: int = 0
    fwmask: int = 0
    action: int = FR_ACT_TO_TBL


@dataclass(frozen=True)
class Neighbour:
    """A neighbour (ARP / NDP) entry."""

    ifindex: int
    dst: IPAddress
    lladdr: str = ""
    state: int = NUD_PERMANENT

    @property
    def static(self) -> bool:
        """True for entries a program set (permanent or noarp), not learned from traffic."""
        return bool(self.state & (NUD_PERMANENT | NUD_NOARP))


@dataclass(frozen=True)
class State:
    """Everything the adapter reads of one namespace (the leak checker compares these)."""

    links: tuple[Link, ...]
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]
    rules: tuple[Rule, ...]
    neighbours: tuple[Neighbour, ...]
