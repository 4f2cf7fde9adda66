"""The fake kernel's netlink client (testbed/fakekernel.py), its changes of addresses,
routes, policy rules and neighbours, with the kernel's checks and errnos."""

from __future__ import annotations

import errno
from dataclasses import replace

from spidernet.node.netlink.records import (
    AF_INET6,
    FR_ACT_TO_TBL,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    Address,
    IPInterface,
    Neighbour,
    Route,
    Rule,
)

from .fakereads import FakeReads
from .fakestate import (
    IFA_F_NODAD,
    IFA_F_PERMANENT,
    IP6_RT_PRIO_USER,
    LINK_LOCAL6,
    RT_SCOPE_NOWHERE,
    RTN_UNSPEC,
)


class FakeRouting(FakeReads):
    """`Rtnetlink`'s address, route, rule and neighbour changes on one namespace of a
    FakeKernel."""

    # -- addresses ----------------------------------------------------------------------

    def add_address(self, name: str, address: IPInterface) -> None:
        link = self._link(name)
        obj = f"address {address} on '{name}'"
        self._mutate("add", obj)
        for a in self._ns.addresses:
            # IPv4: the same address and prefix (__inet_insert_ifa); IPv6: the same address.
            same = a.address == address if address.version == 4 else a.address.ip == address.ip
            if a.index == link.index and same:
                raise self._fail("add", obj, errno.EEXIST)
        flags = IFA_F_PERMANENT | (IFA_F_NODAD if address.version == 6 else 0)
        scope = RT_SCOPE_LINK if address.ip in LINK_LOCAL6 else RT_SCOPE_UNIVERSE
        self._ns.addresses.append(Address(link.index, address, scope, flags))

    def delete_address(self, name: str, address: IPInterface) -> None:
        link = self._link(name)
        obj = f"address {address} on '{name}'"
        self._mutate("delete", obj)
        found = [a for a in self._ns.addresses if a.index == link.index and a.address == address]
        if not found:
            raise self._fail("delete", obj, errno.EADDRNOTAVAIL)
        self._ns.addresses.remove(found[0])
        if address.version == 4 and not any(a.address.ip == address.ip for a in self._ns.addresses):
            # fib_sync_down_addr: routes whose preferred source was this address go too.
            self._ns.routes = [r for r in self._ns.routes if r.prefsrc != address.ip]

    # -- routes -------------------------------------------------------------------------

    def _stored(self, route: Route) -> Route:
        if route.family == AF_INET6 and not route.priority:
            return replace(route, priority=IP6_RT_PRIO_USER)
        return route

    def _check_route(self, route: Route, obj: str) -> None:
        link = self._ns.links.get(route.oif) if route.oif is not None else None
        if route.oif is not None and link is None:
            raise self._fail("add", obj, errno.ENODEV)
        if link is not None and not link.up:
            raise self._fail("add", obj, errno.ENETDOWN)  # fib_check_nh, fib6_nh_init
        local = {a.address.ip for a in self._ns.addresses}
        if route.prefsrc is not None and route.prefsrc not in local:
            raise self._fail("add", obj, errno.EINVAL)  # "Invalid prefsrc address"
        gateway = route.gateway
        if gateway is not None and not (gateway.version == 6 and gateway in LINK_LOCAL6):
            # The gateway must be on a link route through the same link (fib_check_nh_v4_gw,
            # ip6_validate_gw).
            near = [
                r
                for r in self._all_routes()
                if r.table in (RT_TABLE_MAIN, route.table)
                and r.gateway is None
                and gateway in r.dst
                and (route.oif is None or r.oif == route.oif)
            ]
            if not near:
                code = errno.ENETUNREACH if gateway.version == 4 else errno.EHOSTUNREACH
                raise self._fail("add", obj, code)

    def add_route(self, route: Route) -> None:
        obj = f"route {route.dst} table {route.table}"
        self._mutate("add", obj)
        self._check_route(route, obj)
        stored = self._stored(route)
        for r in self._all_routes():
            # One route per destination, TOS and priority in a table (fib_table_insert,
            # fib6_add_rt2node with NLM_F_EXCL).
            if (r.table, r.dst, r.priority) == (stored.table, stored.dst, stored.priority):
                raise self._fail("add", obj, errno.EEXIST)
        self._ns.routes.append(stored)

    def delete_route(self, route: Route) -> None:
        obj = f"route {route.dst} table {route.table}"
        self._mutate("delete", obj)
        for r in self._ns.routes:
            if self._matches(r, route):
                self._ns.routes.remove(r)
                return
        raise self._fail("delete", obj, errno.ESRCH)

    @staticmethod
    def _matches(r: Route, want: Route) -> bool:
        """fib_table_delete / ip6_route_del: the key, then each field the request sets."""
        return (
            (r.table, r.dst) == (want.table, want.dst)
            and (not want.priority or r.priority == want.priority)
            and (not want.proto or r.proto == want.proto)
            and (want.oif is None or r.oif == want.oif)
            and (want.gateway is None or r.gateway == want.gateway)
            and (want.type in (RTN_UNSPEC, r.type))
            and (want.family == AF_INET6 or want.scope in (RT_SCOPE_NOWHERE, r.scope))
        )

    # -- rules --------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> None:
        obj = f"rule {rule.priority} table {rule.table}"
        self._mutate("add", obj)
        # A mark without a mask is matched whole (FRA_FWMASK 0xffffffff, as the adapter sends).
        stored = replace(rule, fwmask=rule.fwmask or (0xFFFFFFFF if rule.fwmark else 0))
        if stored in self._ns.rules:  # rule_exists: every selector equal
            raise self._fail("add", obj, errno.EEXIST)
        self._ns.rules.append(stored)

    def delete_rule(self, rule: Rule) -> None:
        obj = f"rule {rule.priority} table {rule.table}"
        self._mutate("delete", obj)
        for r in self._ns.rules:
            if (
                r.family == rule.family
                and r.priority == rule.priority
                and r.table == rule.table
                and (rule.src is None or r.src == rule.src)
                and (rule.dst is None or r.dst == rule.dst)
                and (not rule.iifname or r.iifname == rule.iifname)
                and (not rule.oifname or r.oifname == rule.oifname)
                and (not rule.fwmark or r.fwmark == rule.fwmark)
                and r.action == FR_ACT_TO_TBL
            ):
                self._ns.rules.remove(r)
                return
        raise self._fail("delete", obj, errno.ENOENT)

    # -- neighbours ---------------------------------------------------------------------

    def add_neighbour(self, neighbour: Neighbour) -> None:
        obj = f"neighbour {neighbour.dst}"
        self._mutate("add", obj)
        if neighbour.ifindex not in self._ns.links:
            raise self._fail("add", obj, errno.ENODEV)
        for n in self._ns.neighbours:
            if (n.ifindex, n.dst) == (neighbour.ifindex, neighbour.dst):
                raise self._fail("add", obj, errno.EEXIST)
        self._ns.neighbours.append(replace(neighbour, lladdr=neighbour.lladdr.lower()))

    def delete_neighbour(self, neighbour: Neighbour) -> None:
        obj = f"neighbour {neighbour.dst}"
        self._mutate("delete", obj)
        if neighbour.ifindex not in self._ns.links:
            raise self._fail("delete", obj, errno.ENODEV)
        for n in self._ns.neighbours:
            if (n.ifindex, n.dst) == (neighbour.ifindex, neighbour.dst):
                self._ns.neighbours.remove(n)
                return
        raise self._fail("delete", obj, errno.ENOENT)


__all__ = ["FakeRouting"]
