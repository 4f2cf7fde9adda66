"""The operations a plugin's plan is made of: frozen records, one kernel change each (pure).

Planners (the coordinator's, the ifacer's) return a tuple of these; `apply` executes them in
order and registers each one's `undo()` right after it succeeds, so a failed ADD unwinds to
nothing (STYLE.md §2). Interfaces are named, never indexed: a plan is made before the links
it names exist. `side` says which namespace an operation acts in: the pod's (CNI_NETNS) or
the host's (the caller's namespace).

`undo()` returns the operations that reverse one operation, also used by DEL, which replays
the undos of what ADD would plan; removing something already gone is success there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Literal

from spidernet.netconf.ifacer.config import BondValue

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Side = Literal["pod", "host"]
MAIN = 254
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253


@dataclass(frozen=True)
class AddVeth:
    """A veth pair: `host_name` in the host namespace, `pod_name` in the pod's, each with the
    given MTU and MAC (explicit MACs, so no udev MACAddressPolicy rewrites them). Both ends
    are left down."""

    host_name: str
    pod_name: str
    mtu: int
    host_mac: str
    pod_mac: str

    def undo(self) -> tuple[Op, ...]:
        """Deleting the host end deletes the pod end with it."""
        return (DeleteLink("host", self.host_name),)


@dataclass(frozen=True)
class DeleteLink:
    """Remove a link (only ever as an undo)."""

    side: Side
    name: str

    def undo(self) -> tuple[Op, ...]:
        """Not reversible; never planned forward."""
        return ()


@dataclass(frozen=True)
class SetLinkUp:
    """Bring a link up; undo takes it down again only if it was down before."""

    side: Side
    name: str
    was_up: bool = False

    def undo(self) -> tuple[Op, ...]:
        """Down again, when the plan brought it up."""
        return () if self.was_up else (SetLinkDown(self.side, self.name),)


@dataclass(frozen=True)
class SetLinkDown:
    """Take a link down (only ever as an undo)."""

    side: Side
    name: str

    def undo(self) -> tuple[Op, ...]:
        """Not reversible; never planned forward."""
        return ()


@dataclass(frozen=True)
class SetMac:
    """Change a link's MAC address (podMACPrefix); undo restores `old`."""

    side: Side
    name: str
    mac: str
    old: str

    def undo(self) -> tuple[Op, ...]:
        """The old MAC back."""
        return (SetMac(self.side, self.name, self.old, self.mac),)


@dataclass(frozen=True)
class SetTxQueueLen:
    """Change a link's transmit queue length (txQueueLen); undo restores `old`."""

    side: Side
    name: str
    qlen: int
    old: int

    def undo(self) -> tuple[Op, ...]:
        """The old length back."""
        return (SetTxQueueLen(self.side, self.name, self.old, self.qlen),)


@dataclass(frozen=True)
class AddAddress:
    """An address on a link (vethLinkAddress on veth0)."""

    side: Side
    name: str
    address: IPInterface

    def undo(self) -> tuple[Op, ...]:
        """Remove it."""
        return (DeleteAddress(self.side, self.name, self.address),)


@dataclass(frozen=True)
class DeleteAddress:
    """Remove an address (only ever as an undo)."""

    side: Side
    name: str
    address: IPInterface

    def undo(self) -> tuple[Op, ...]:
        """Not reversible; never planned forward."""
        return ()


@dataclass(frozen=True)
class RouteSpec:
    """A route through link `dev` (via `gateway` when set) in `table`: the fields AddRoute
    and DeleteRoute share."""

    side: Side
    dst: IPNetwork
    dev: str
    gateway: IPAddress | None = None
    table: int = MAIN
    scope: int = SCOPE_UNIVERSE
    src: IPAddress | None = None


@dataclass(frozen=True)
class AddRoute(RouteSpec):
    """Add a route."""

    def undo(self) -> tuple[Op, ...]:
        """Remove it."""
        return (DeleteRoute(*dataclasses.astuple(self)),)


@dataclass(frozen=True)
class DeleteRoute(RouteSpec):
    """Remove a route: as an undo, or planned forward when a route moves out of main (its
    undo puts it back)."""

    def undo(self) -> tuple[Op, ...]:
        """Put it back."""
        return (AddRoute(*dataclasses.astuple(self)),)


@dataclass(frozen=True)
class RuleSpec:
    """A policy routing rule: `from src` / `to dst` / `fwmark` / `iif` lookup `table`: the
    fields AddRule and DeleteRule share.

    `shared` marks a rule other pods rely on too (the host's `from all lookup 500`): its
    removal happens only when its table holds no route any more."""

    side: Side
    family: int
    priority: int
    table: int
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    fwmark: int = 0
    iifname: str = ""
    shared: bool = False


@dataclass(frozen=True)
class AddRule(RuleSpec):
    """Add a policy routing rule (a `shared` one may exist already)."""

    def undo(self) -> tuple[Op, ...]:
        """Remove it (a shared rule: when its table is empty)."""
        return (DeleteRule(*dataclasses.astuple(self)),)


@dataclass(frozen=True)
class DeleteRule(RuleSpec):
    """Remove a rule (only ever as an undo); `shared`: only when its table is empty."""

    def undo(self) -> tuple[Op, ...]:
        """Not reversible; never planned forward."""
        return ()


@dataclass(frozen=True)
class AddNeighbour:
    """A permanent neighbour entry `ip -> mac` on link `dev`."""

    side: Side
    dev: str
    ip: IPAddress
    mac: str

    def undo(self) -> tuple[Op, ...]:
        """Remove it."""
        return (DeleteNeighbour(self.side, self.dev, self.ip),)


@dataclass(frozen=True)
class DeleteNeighbour:
    """Remove a neighbour entry: as an undo, or forward for a stale entry of a pod address."""

    side: Side
    dev: str
    ip: IPAddress

    def undo(self) -> tuple[Op, ...]:
        """A stale entry is not restored."""
        return ()


@dataclass(frozen=True)
class SetSysctl:
    """Write `/proc/sys/<key>` (dotted) in the side's namespace; undo writes `old` back."""

    side: Side
    key: str
    value: str
    old: str

    def undo(self) -> tuple[Op, ...]:
        """The old value back."""
        return (SetSysctl(self.side, self.key, self.old, self.value),)


@dataclass(frozen=True)
class ReplyViaLink:
    """Connections that arrive on `iifname` in the pod get connection mark `mark`, which is
    copied onto the packets the pod sends for them (an nftables table of the pod's own,
    never the host's). The plan routes those packets with its own operations: an AddRule
    `fwmark mark lookup table` and AddRoutes into `table` (recorded here for readers)."""

    side: Side
    iifname: str
    mark: int
    table: int

    def undo(self) -> tuple[Op, ...]:
        """Remove the nftables table."""
        return (DropReplyViaLink(self.side, self.iifname, self.mark, self.table),)


@dataclass(frozen=True)
class DropReplyViaLink:
    """Remove what ReplyViaLink set up (only ever as an undo)."""

    side: Side
    iifname: str
    mark: int
    table: int

    def undo(self) -> tuple[Op, ...]:
        """Not reversible; never planned forward."""
        return ()


@dataclass(frozen=True)
class Announce:
    """Gratuitous ARP (IPv4) or unsolicited Neighbour Advertisement (IPv6) for `address` on
    `dev`, so neighbours refresh their caches. Nothing to undo."""

    side: Side
    dev: str
    address: IPAddress

    def undo(self) -> tuple[Op, ...]:
        """Nothing to undo."""
        return ()


@dataclass(frozen=True)
class AddVlan:
    """VLAN `vlan_id` called `name` on link `parent`, with `alias` (the ifacer's mark) as its
    IFLA_IFALIAS; left down."""

    side: Side
    name: str
    parent: str
    vlan_id: int
    alias: str = ""

    def undo(self) -> tuple[Op, ...]:
        """Delete it."""
        return (DeleteLink(self.side, self.name),)


@dataclass(frozen=True)
class AddBond:
    """Bond `name` with `options` ((kernel option name, value), the mode first) and `alias`
    as its IFLA_IFALIAS; left down and without slaves."""

    side: Side
    name: str
    options: tuple[tuple[str, BondValue], ...]
    alias: str = ""

    def undo(self) -> tuple[Op, ...]:
        """Delete it (which releases its slaves)."""
        return (DeleteLink(self.side, self.name),)


@dataclass(frozen=True)
class Enslave:
    """Make link `name` a slave of bond `master`: down, enslaved, up again. `was_up`: its
    state before, which releasing it restores."""

    side: Side
    name: str
    master: str
    was_up: bool = True

    def undo(self) -> tuple[Op, ...]:
        """Release it."""
        return (Release(self.side, self.name, self.was_up),)


@dataclass(frozen=True)
class Release:
    """Release link `name` from its master (only ever as an undo); the kernel takes a
    released slave down, so it is brought up again when `up`."""

    side: Side
    name: str
    up: bool = True

    def undo(self) -> tuple[Op, ...]:
        """Not reversible; never planned forward."""
        return ()


Op = (
    AddVeth
    | AddVlan
    | AddBond
    | Enslave
    | Release
    | DeleteLink
    | SetLinkUp
    | SetLinkDown
    | SetMac
    | SetTxQueueLen
    | AddAddress
    | DeleteAddress
    | AddRoute
    | DeleteRoute
    | AddRule
    | DeleteRule
    | AddNeighbour
    | DeleteNeighbour
    | SetSysctl
    | ReplyViaLink
    | DropReplyViaLink
    | Announce
)


def undo_all(plan: tuple[Op, ...]) -> tuple[Op, ...]:
    """The operations that reverse a whole plan, last first."""
    return tuple(u for op in reversed(plan) for u in op.undo())
