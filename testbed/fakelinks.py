"""The fake kernel's netlink client (testbed/fakekernel.py), its link changes: veth pairs,
VLANs, bonds and other kinds, their attributes, and deleting them."""

from __future__ import annotations

import errno
from collections.abc import Sequence

from spidernet.netconf.ifacer.config import BondValue
from spidernet.node.netlink.errors import NetlinkMissing

from .fakereads import FakeReads
from .fakestate import drop_link, set_down


class FakeLinks(FakeReads):
    """`Rtnetlink`'s link changes on one namespace of a FakeKernel."""

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
        other = self._kernel.get(peer_netns) if peer_netns is not None else self._ns
        self._mutate("add", f"veth '{name}'")
        if self._ns.by_name(name) is not None or other.by_name(peer) is not None:
            raise self._fail("add", f"veth '{name}'", errno.EEXIST)
        if other is self._ns and name == peer:
            raise self._fail("add", f"veth '{name}'", errno.EEXIST)
        extra: dict[str, object] = {"mtu": mtu} if mtu else {}
        here = self._ns.new_link(name, "veth", mac or self._kernel.new_mac(), **extra)
        there = other.new_link(peer, "veth", peer_mac or self._kernel.new_mac(), **extra)
        here.peer, there.peer = (other, there.index), (self._ns, here.index)
        here.link, there.link = there.index, here.index

    def add_link(self, name: str, kind: str, **attrs: object) -> None:
        """A link of `kind` (bridge, dummy, macvlan, ...); `mtu` and `address` are kept."""
        self._mutate("add", f"{kind} '{name}'")
        if self._ns.by_name(name) is not None:
            raise self._fail("add", f"{kind} '{name}'", errno.EEXIST)
        mac = str(attrs.get("address") or self._kernel.new_mac())
        extra = {"mtu": attrs["mtu"]} if attrs.get("mtu") else {}
        self._ns.new_link(name, kind, mac, **extra)

    def set_link(self, name: str, **attrs: object) -> None:
        link = self._link(name)
        self._mutate("set", f"link '{name}'")
        master = attrs.get("master")
        if master:
            parent = self._ns.links.get(int(str(master)))
            if parent is None:
                raise self._fail("set", f"link '{name}'", errno.ENODEV)
            # bond_enslave: "Device can not be enslaved while up".
            if parent.kind == "bond" and link.up:
                raise self._fail("set", f"link '{name}'", errno.EPERM)
            link.master = parent.index
        elif master is not None and link.master is not None:
            old = self._ns.links.get(link.master)
            link.master = None
            if old is not None and old.kind == "bond":
                set_down(self._ns, link)  # __bond_release_one closes the slave
        for key in ("mtu", "txqlen"):
            if key in attrs:
                setattr(link, key, int(str(attrs[key])))
        if "address" in attrs:
            link.mac = str(attrs["address"]).lower()
        state = attrs.get("state")
        if state == "up":
            link.up = True
        elif state == "down" and link.up:
            set_down(self._ns, link)

    def add_vlan(self, name: str, parent: str, vlan_id: int) -> None:
        lower = self._link(parent)
        self._mutate("add", f"vlan '{name}'")
        if self._ns.by_name(name) is not None:
            raise self._fail("add", f"vlan '{name}'", errno.EEXIST)
        taken = any(x.link == lower.index and x.vlan_id == vlan_id for x in self._ns.links.values())
        if taken:
            raise self._fail("add", f"vlan '{name}'", errno.EEXIST)
        self._ns.new_link(
            name, "vlan", lower.mac, mtu=lower.mtu, link=lower.index, vlan_id=vlan_id, txqlen=0
        )

    def add_bond(self, name: str, options: Sequence[tuple[str, BondValue]]) -> None:
        values = dict(options)
        if "primary" in values:
            self.index(str(values["primary"]))
        self._mutate("add", f"bond '{name}'")
        if self._ns.by_name(name) is not None:
            raise self._fail("add", f"bond '{name}'", errno.EEXIST)
        mode = values.get("mode", 0)
        self._ns.new_link(name, "bond", self._kernel.new_mac(), bond_mode=int(str(mode)))

    def set_alias(self, name: str, alias: str) -> None:
        link = self._link(name)
        self._mutate("set", f"link '{name}'")
        link.alias = alias

    def delete_link(self, name: str, *, missing_ok: bool = False) -> None:
        link = self._ns.by_name(name)
        if link is None:
            if missing_ok:
                return
            raise NetlinkMissing("find", f"link '{name}' in {self.where}", errno.ENODEV)
        self._mutate("delete", f"link '{name}'")
        drop_link(self._ns, link.index)
        if link.peer is not None:
            other, index = link.peer
            if index in other.links:
                drop_link(other, index)


__all__ = ["FakeLinks"]
