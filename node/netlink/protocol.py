"""What the planners' effect side asks of rtnetlink in one namespace (the apply step, the
coordinator's gathering and CHECK, the ifacer's verbs), as a protocol.

The pyroute2 adapter (`client.Netlink`) is one implementation; the test bed's in-memory
kernel (testbed/fakekernel.py) is another, and one contract suite
(testbed/netlink_contract.py) runs against both. Only what those callers use is listed:
tc/BPF, namespace ids and the like stay on the adapter itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

from spidernet.netconf.ifacer.config import BondValue

from .records import Address, IPAddress, IPInterface, Link, Neighbour, Route, Rule, State


class Rtnetlink(Protocol):
    """rtnetlink requests in one namespace. Errors are the adapter's own (errors.py):
    NetlinkExists for EEXIST, NetlinkMissing for ENODEV / ENOENT / ESRCH / EADDRNOTAVAIL, and
    NetlinkFailure with the kernel's errno for the rest."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None:
        """Release the client's sockets."""
        ...

    # -- reading ------------------------------------------------------------------------

    def links(self) -> list[Link]:
        """Every link in the namespace."""
        ...

    def link_at(self, index: int) -> Link:
        """The link with interface index `index`; raises NetlinkMissing."""
        ...

    def link(self, name: str) -> Link:
        """The link called `name`; raises NetlinkMissing."""
        ...

    def index(self, name: str) -> int:
        """The interface index of `name`; raises NetlinkMissing."""
        ...

    def txqlen(self, name: str) -> int:
        """The transmit queue length of link `name`; raises NetlinkMissing."""
        ...

    def addresses(self) -> list[Address]:
        """Every address in the namespace, both families."""
        ...

    def routes(self, table: int | None = None) -> list[Route]:
        """Every route of every table, or of `table` only, both families."""
        ...

    def route_get(
        self,
        dst: IPAddress,
        *,
        src: IPAddress | None = None,
        iif: str = "",
        mark: int = 0,
        dport: int = 0,
    ) -> Route:
        """The route the kernel would pick for a packet to `dst`."""
        ...

    def rules(self) -> list[Rule]:
        """Every IPv4 and IPv6 policy routing rule."""
        ...

    def neighbours(self) -> list[Neighbour]:
        """Every neighbour entry, both families."""
        ...

    def state(self) -> State:
        """A snapshot of links, addresses, routes, rules and neighbours."""
        ...

    # -- changing -----------------------------------------------------------------------

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
        """Create a veth pair here, its peer end in `peer_netns` (a path) when given."""
        ...

    def set_link(self, name: str, **attrs: object) -> None:
        """Change link `name` (state="up"/"down", master=index or 0, mtu, address, txqlen)."""
        ...

    def add_vlan(self, name: str, parent: str, vlan_id: int) -> None:
        """Create VLAN `vlan_id` called `name` on link `parent` (left down)."""
        ...

    def add_bond(self, name: str, options: Sequence[tuple[str, BondValue]]) -> None:
        """Create bond `name` with `options` by kernel name, mode first (left down)."""
        ...

    def set_alias(self, name: str, alias: str) -> None:
        """Set link `name`'s alias ("" removes it)."""
        ...

    def delete_link(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete link `name` (and its veth peer with it)."""
        ...

    def add_address(self, name: str, address: IPInterface) -> None:
        """Add `address` to link `name`."""
        ...

    def delete_address(self, name: str, address: IPInterface) -> None:
        """Remove `address` from link `name`."""
        ...

    def add_route(self, route: Route) -> None:
        """Install `route` (exclusively: one there already is NetlinkExists)."""
        ...

    def delete_route(self, route: Route) -> None:
        """Remove `route` (proto 0 matches a route of any protocol)."""
        ...

    def add_rule(self, rule: Rule) -> None:
        """Install policy routing `rule` (exclusively)."""
        ...

    def delete_rule(self, rule: Rule) -> None:
        """Remove policy routing `rule`."""
        ...

    def add_neighbour(self, neighbour: Neighbour) -> None:
        """Install a neighbour entry (exclusively)."""
        ...

    def delete_neighbour(self, neighbour: Neighbour) -> None:
        """Remove a neighbour entry."""
        ...
