"""The fake kernel's netlink client (testbed/fakekernel.py), its base: the namespace it is
in, the failures it raises as the adapter does, and its reads."""

from __future__ import annotations

import errno
import ipaddress
from typing import TYPE_CHECKING, Self

from spidernet.node.netlink.errors import NetlinkFailure, NetlinkMissing, classify
from spidernet.node.netlink.records import (
    AF_INET,
    RT_SCOPE_UNIVERSE,
    Address,
    IPAddress,
    Link,
    Neighbour,
    Route,
    Rule,
    State,
)

from .fakestate import RT_TABLE_LOCAL, FakeLink, Namespace, family_of, prefix_route

if TYPE_CHECKING:
    from .fakekernel import FakeKernel


class FakeReads:
    """`Rtnetlink`'s reads on one namespace of a FakeKernel, and what its changes share."""

    def __init__(self, kernel: FakeKernel, ns: Namespace) -> None:
        self._kernel = kernel
        self._ns = ns
        self.where = f"netns '{ns.path}'"
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    def _fail(self, action: str, obj: str, code: int) -> NetlinkFailure:
        return classify(action, f"{obj} in {self.where}", code)

    def _mutate(self, action: str, obj: str) -> None:
        try:
            self._kernel.mutate(f"{action} {obj} in {self.where}")
        except NetlinkFailure as e:
            raise self._fail(action, obj, e.errno) from None

    def _link(self, name: str) -> FakeLink:
        link = self._ns.by_name(name)
        if link is None:
            raise NetlinkMissing("find", f"link '{name}' in {self.where}", errno.ENODEV)
        return link

    def _record(self, link: FakeLink) -> Link:
        nsid = None
        if link.peer is not None and link.peer[0] is not self._ns:
            nsid = self._ns.nsid(link.peer[0])
        return Link(
            index=link.index,
            name=link.name,
            kind=link.kind,
            mac=link.mac,
            mtu=link.mtu,
            up=link.up,
            master=link.master,
            link=link.link,
            link_netnsid=nsid,
            alias=link.alias,
            vlan_id=link.vlan_id,
            bond_mode=link.bond_mode,
        )

    # -- reading ------------------------------------------------------------------------

    def links(self) -> list[Link]:
        return [self._record(x) for x in sorted(self._ns.links.values(), key=lambda x: x.index)]

    def link_at(self, index: int) -> Link:
        link = self._ns.links.get(index)
        if link is None:
            raise self._fail("look up", f"link {index}", errno.ENODEV)
        return self._record(link)

    def link(self, name: str) -> Link:
        return self._record(self._link(name))

    def index(self, name: str) -> int:
        return self._link(name).index

    def txqlen(self, name: str) -> int:
        return self._link(name).txqlen

    def addresses(self) -> list[Address]:
        return sorted(self._ns.addresses, key=lambda a: (a.address.version, a.index))

    def _all_routes(self) -> list[Route]:
        kernel = [
            prefix_route(a)
            for a in self._ns.addresses
            if self._ns.links[a.index].up
            and a.scope == RT_SCOPE_UNIVERSE  # lo's routes are in the local table
        ]
        return kernel + self._ns.routes

    def routes(self, table: int | None = None) -> list[Route]:
        found = [r for r in self._all_routes() if table is None or r.table == table]
        return sorted(found, key=lambda r: r.dst.version)

    def rules(self) -> list[Rule]:
        return sorted(self._ns.rules, key=lambda r: (r.family != AF_INET, r.priority))

    def neighbours(self) -> list[Neighbour]:
        return list(self._ns.neighbours)

    def state(self) -> State:
        return State(
            links=tuple(self.links()),
            addresses=tuple(self.addresses()),
            routes=tuple(self.routes()),
            rules=tuple(self.rules()),
            neighbours=tuple(self.neighbours()),
        )

    def route_get(
        self,
        dst: IPAddress,
        *,
        src: IPAddress | None = None,
        iif: str = "",
        mark: int = 0,
        dport: int = 0,
    ) -> Route:
        """The policy rules in order, then the longest prefix in the table they name (no
        local table: an address of this namespace is not looked up here)."""
        family = family_of(dst.version)
        iif_index = self.index(iif) if iif else None
        for rule in self.rules():
            if rule.family != family or rule.table == RT_TABLE_LOCAL:
                continue
            if rule.src is not None and (src is None or src not in rule.src):
                continue
            if rule.dst is not None and dst not in rule.dst:
                continue
            if rule.fwmark and (mark & (rule.fwmask or 0xFFFFFFFF)) != rule.fwmark:
                continue
            if rule.iifname and (iif_index is None or rule.iifname != iif):
                continue
            candidates = [r for r in self.routes(rule.table) if dst in r.dst]
            if not candidates:
                continue
            best = max(candidates, key=lambda r: (r.dst.prefixlen, -r.priority))
            prefsrc = best.prefsrc or self._source(best.oif, family)
            return Route(
                ipaddress.ip_network(dst),
                table=best.table,
                gateway=best.gateway,
                oif=best.oif,
                prefsrc=prefsrc,
                proto=best.proto,
                scope=best.scope,
            )
        raise self._fail("look up", f"route to {dst}", errno.ENETUNREACH)

    def _source(self, oif: int | None, family: int) -> IPAddress | None:
        for a in self._ns.addresses:
            if a.index == oif and family_of(a.address.version) == family:
                return a.address.ip
        return None


__all__ = ["FakeReads"]
