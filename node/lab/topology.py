"""Build and tear down namespaces wired into L2 segments.

Every namespace a Topology makes carries its prefix, so a test or the lab removes exactly
what it made and nothing else. Nothing here touches the namespace of the calling process.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from dataclasses import dataclass, field

from spidernet.node import netns
from spidernet.node.netlink.client import netlink
from spidernet.node.netlink.records import IPInterface

BRIDGE = "br0"


@dataclass(frozen=True)
class Segment:
    """An L2 segment: a bridge in a namespace of its own (the "switch")."""

    switch: str
    bridge: str = BRIDGE


@dataclass
class Topology:
    """Namespaces named `<prefix>-<role>`, removed again by `teardown`."""

    prefix: str = field(default_factory=lambda: f"snt-{secrets.token_hex(3)}")
    created: list[str] = field(default_factory=list)
    _ports: int = 0

    def namespace(self, role: str) -> str:
        """Create namespace `<prefix>-<role>` with `lo` up; returns its name."""
        name = f"{self.prefix}-{role}"
        netns.create(name)
        self.created.append(name)
        return name

    def segment(self, role: str = "switch") -> Segment:
        """A new segment: namespace `<prefix>-<role>` holding bridge br0, up."""
        switch = self.namespace(role)
        with netlink(netns.path_of(switch)) as nl:
            nl.add_link(BRIDGE, "bridge")
            nl.set_link(BRIDGE, state="up")
        return Segment(switch)

    def attach(
        self,
        segment: Segment,
        ns: str,
        ifname: str,
        addresses: tuple[IPInterface, ...] = (),
        *,
        mtu: int = 0,
    ) -> None:
        """Plug namespace `ns` into `segment` as `ifname`, up, with `addresses`."""
        self._ports += 1
        port = f"port{self._ports}"
        with netlink(netns.path_of(segment.switch)) as nl:
            nl.add_veth(port, ifname, peer_netns=netns.path_of(ns), mtu=mtu)
            nl.set_link(port, master=nl.index(segment.bridge), state="up")
        with netlink(netns.path_of(ns)) as nl:
            nl.set_link(ifname, state="up")
            for address in addresses:
                nl.add_address(ifname, address)

    def gateway(
        self, segment: Segment, addresses: tuple[IPInterface, ...], role: str = "gw"
    ) -> str:
        """A router namespace on `segment` holding the gateway `addresses`, forwarding on."""
        ns = self.namespace(role)
        self.attach(segment, ns, "eth0", addresses)
        netns.set_sysctl(ns, "net.ipv4.ip_forward", "1")
        netns.set_sysctl(ns, "net.ipv6.conf.all.forwarding", "1")
        return ns

    def teardown(self) -> list[str]:
        """Remove every namespace this topology made; returns the errors, if any."""
        errors = []
        for name in reversed(self.created):
            try:
                netns.remove(name)
            except netns.NetnsCommandError as e:
                errors.append(str(e))
        self.created.clear()
        return errors


def iface(text: str) -> IPInterface:
    """Shorthand for an address with prefix length, e.g. iface("192.0.2.1/24")."""
    return ipaddress.ip_interface(text)


def ping(ns: str, address: str, *, deadline_s: int = 3) -> bool:
    """True when `address` answers one ICMP echo from inside namespace `ns`.

    ping keeps sending (every 0.2 s) until a reply or the deadline, so a first packet lost
    to neighbour resolution or IPv6 DAD does not fail it: a bounded wait, not a sleep.
    """
    argv = netns.exec_argv(
        ns, ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", str(deadline_s), address]
    )
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0
