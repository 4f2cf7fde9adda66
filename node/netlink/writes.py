"""What the netlink client changes: links (veth, vlan, bond and any other kind), their
attributes, addresses, routes, rules and neighbours."""

from __future__ import annotations

import os
from collections.abc import Sequence

from pyroute2.netlink.rtnl import (
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTM_NEWRULE,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from spidernet.netconf.ifacer.config import BondValue
from spidernet.node.netns import open_fd

from .errors import NetlinkMissing
from .messages import alias_msg, bond_msg, neighbour_msg, route_msg, rule_msg, vlan_msg
from .records import IFF_UP, IPInterface, Neighbour, Route, Rule
from .session import Session

# set_link's attributes the reader sends itself; any other goes through pyroute2.
_RAW_LINK_ATTRS = frozenset({"state", "address", "mtu", "txqlen", "master"})


class Writes(Session):
    """The client's changes; each raises our errors (errors.py), never pyroute2's."""

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
        except NetlinkMissing:
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


__all__ = ["Writes"]
