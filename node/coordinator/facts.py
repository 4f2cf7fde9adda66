"""What the coordinator's planner knows about the pod and the host: plain records (pure).

The node service (or the plugin, without one) gathers them through the netlink adapter
(`gather.py`); the planner only reads them, so tests build them by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

VETH0 = "veth0"


@dataclass(frozen=True)
class NicFacts:
    """One pod interface: its MAC, state, queue length and global addresses."""

    name: str
    mac: str
    up: bool = True
    txqlen: int = 1000
    addresses: tuple[IPInterface, ...] = ()
    # A veth's peer index in the other namespace (the overlay NIC's host end).
    peer_index: int | None = None
    # IFF_NOARP (ipvlan L3): neighbours never ask it, so nothing is announced on it.
    noarp: bool = False

    def family(self, version: int) -> tuple[IPInterface, ...]:
        """Its addresses of one IP version."""
        return tuple(a for a in self.addresses if a.version == version)


@dataclass(frozen=True)
class RouteFact:
    """A route of the pod's main table, by interface name."""

    dst: IPNetwork
    dev: str
    gateway: IPAddress | None = None
    scope: int = 0
    src: IPAddress | None = None


@dataclass(frozen=True)
class PodState:
    """The pod namespace as found: its NICs in creation order (no lo, no veth0), veth0 if
    an earlier ADD made it, the main table, and the sysctls the plan may change."""

    nics: tuple[NicFacts, ...]
    veth0: NicFacts | None = None
    main_routes: tuple[RouteFact, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)

    def nic(self, name: str) -> NicFacts | None:
        """The NIC called `name`, if any."""
        return next((n for n in self.nics if n.name == name), None)


@dataclass(frozen=True)
class HostState:
    """The host side: its addresses the pod may use to reach it (the source it uses towards
    each pod address, then the addresses of its physical interfaces), the host end of the pod's
    overlay `eth0` (overlay mode), and its sysctls the plan may change."""

    host_ips: tuple[IPAddress, ...] = ()
    overlay_peer: str = ""
    sysctls: Mapping[str, str] = field(default_factory=dict)

    def first(self, version: int) -> IPAddress | None:
        """The host address of one family the pod routes through, or None."""
        return next((ip for ip in self.host_ips if ip.version == version), None)
