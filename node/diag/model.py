"""The records `spidernet diag` works with (pure): what was read of each side, the paths
asked of the kernel and its answers, and the findings.

The effect side (gather.py) fills `Side`, `Record`, `Lookup` answers and `Probe` answers;
the planner (plan.py) decides which lookups and probes to make; the analyser (analyze.py)
turns answers into `Finding`s. Every address is an `ipaddress` object; every interface a
name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from spidernet.node.netlink.records import Link, Route, State

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

VETH0 = "veth0"  # the coordinator's pod end of the host veth pair


def sysctl_key(*parts: str) -> str:
    """A sysctl key from its parts: dotted, or with slashes when a part has a dot (a VLAN
    link such as `eth0.100`), as sysctl(8) reads them."""
    return ("/" if any("." in p for p in parts) else ".").join(parts)


@dataclass(frozen=True)
class Side:
    """One namespace as read: netlink state and the sysctls that matter for paths."""

    label: Literal["pod", "host"]
    netns: str | None  # a path; None: this process's own namespace
    state: State
    sysctls: dict[str, str] = field(default_factory=dict)

    def link(self, name: str) -> Link | None:
        return next((link for link in self.state.links if link.name == name), None)

    def name_of(self, index: int | None) -> str:
        return next((link.name for link in self.state.links if link.index == index), "")

    def addresses_of(self, name: str) -> tuple[IPInterface, ...]:
        """Global addresses of link `name` (no link-local ones)."""
        link = self.link(name)
        if link is None:
            return ()
        return tuple(
            a.address
            for a in self.state.addresses
            if a.index == link.index and not a.address.ip.is_link_local
        )


@dataclass(frozen=True)
class Record:
    """The IPAM record of the pod (its SpiderEndpoint), as the service answered."""

    namespace: str
    name: str
    container_id: str
    netns: str
    nics: dict[str, tuple[IPInterface, ...]]
    gateways: dict[str, tuple[IPAddress, ...]]


@dataclass(frozen=True)
class PathTarget:
    """Somewhere the pod should reach: a gateway, the host, a service CIDR, a neighbour on
    another NIC's subnet, or an address asked for with `--to`."""

    name: str  # "gateway of eth0", "host", "service 10.96.0.0/12", "--to 198.51.100.7"
    address: IPAddress
    nic: str | None = None  # the link its traffic should use; None: any (`--to`)
    port: int = 0
    inbound: bool = True  # also analyse requests it sends to the pod
    # The pod's requests must leave by its host link (the host, cluster CIDRs).
    via_host_link: bool = False


@dataclass(frozen=True)
class LookupSpec:
    """One question for the kernel's route lookup (`ip route get`), on one side."""

    side: Literal["pod", "host"]
    dst: IPAddress
    src: IPAddress | None = None
    iif: str = ""  # an input lookup: a packet arriving on this link (rp_filter applies)
    port: int = 0


@dataclass(frozen=True)
class Answer:
    """The kernel's answer to a LookupSpec: a route, or the error it gave (`errno` name)."""

    route: Route | None = None
    dev: str = ""
    error: str = ""  # "EXDEV", "ENETUNREACH", ...
    message: str = ""  # the kernel's words for the error


@dataclass(frozen=True)
class Path:
    """A request and its reply, side by side.

    outbound: the pod sends to `target` (request: the pod's lookup towards it; reply: the
    input lookup of the answer arriving back on the request's link).
    inbound: `target` sends to the pod's address `local` on `nic` (request: the input
    lookup of that packet on `nic`; reply: the pod's lookup back to the target from `local`).
    """

    target: PathTarget
    direction: Literal["outbound", "inbound"]
    nic: str
    local: IPAddress | None
    request: LookupSpec
    reply: LookupSpec | None


@dataclass(frozen=True)
class ProbeSpec:
    """An ARP / NDP question asked on one of the pod's links."""

    kind: Literal["gateway", "conflict"]
    nic: str
    address: IPAddress
    src: IPAddress | None  # None: a DAD-style probe (RFC 5227 / RFC 4862)


@dataclass(frozen=True)
class ProbeResult:
    spec: ProbeSpec
    macs: tuple[str, ...]  # the stations that answered (never the link's own MAC)
    error: str = ""


@dataclass(frozen=True)
class Finding:
    """Something wrong, in one line, with the command that confirms it by hand."""

    kind: str
    message: str
    confirm: str
