"""What the netlink client reads: links, addresses, routes, rules, neighbours, the kernel's
own route lookup and namespace ids, each turned into our records (records.py) at once."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from pyroute2.netlink.rtnl import (
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETNSID,
    RTM_GETROUTE,
    RTM_GETRULE,
)
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.nsidmsg import nsidmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from spidernet.node.netns import open_fd

from .errors import NetlinkMissing
from .messages import addr, getroute, link_of, net
from .records import (
    AF_INET,
    AF_INET6,
    Address,
    IPAddress,
    Link,
    Neighbour,
    Route,
    Rule,
    State,
)
from .session import Session

# rtnetlink.h: report the FIB table of a looked-up route (RTM_GETROUTE replies).
RTM_F_LOOKUP_TABLE = 0x1000


class Reads(Session):
    """The client's reads (dumps and single lookups); they change nothing."""

    def links(self) -> list[Link]:
        """Every link in the namespace."""
        return [link_of(m) for m in self._read("links", ifinfmsg, RTM_GETLINK)]

    def link_at(self, index: int) -> Link:
        """The link with interface index `index` (one RTM_GETLINK); raises NetlinkMissing."""
        msg = ifinfmsg()
        msg["index"] = index
        [m, *_] = self._get("look up", f"link {index}", msg, RTM_GETLINK)
        return link_of(m)

    def link(self, name: str) -> Link:
        """The link called `name`; raises NetlinkMissing."""
        for link in self.links():
            if link.name == name:
                return link
        raise NetlinkMissing("find", f"link '{name}' in {self.where}", 19)

    def txqlen(self, name: str) -> int:
        """The transmit queue length of link `name` (IFLA_TXQLEN); raises NetlinkMissing."""
        index = self.index(name)
        msg = ifinfmsg()
        msg["index"] = index
        found = self._get("read", f"link '{name}'", msg, RTM_GETLINK)
        return int(found[0].get("txqlen") or 0)

    def addresses(self) -> list[Address]:
        """Every address in the namespace, both families."""
        out = []
        for family in (AF_INET, AF_INET6):
            for m in self._read("addresses", ifaddrmsg, RTM_GETADDR, family):
                out.append(
                    Address(
                        index=m["index"],
                        address=ipaddress.ip_interface(f"{m.get('address')}/{m['prefixlen']}"),
                        scope=m["scope"],
                        flags=m.get("IFA_FLAGS") or m["flags"],
                    )
                )
        return out

    def routes(self, table: int | None = None) -> list[Route]:
        """Every route of every table, or of `table` only (the kernel filters: a strict
        dump with RTA_TABLE), both families (multipath next hops are not split)."""
        out = []
        only = [("RTA_TABLE", table)] if table is not None else []
        for family in (AF_INET, AF_INET6):
            for m in self._read("routes", rtmsg, RTM_GETROUTE, family, only):
                out.append(
                    Route(
                        dst=net(m.get("dst"), m["dst_len"], family),
                        table=m.get_attr("RTA_TABLE") or m["table"],
                        gateway=addr(m.get("gateway")),
                        oif=m.get("oif"),
                        prefsrc=addr(m.get("prefsrc")),
                        proto=m["proto"],
                        scope=m["scope"],
                        type=m["type"],
                        priority=m.get("priority") or 0,
                    )
                )
        return out

    def route_get(
        self,
        dst: IPAddress,
        *,
        src: IPAddress | None = None,
        iif: str = "",
        mark: int = 0,
        dport: int = 0,
    ) -> Route:
        """The kernel's own route lookup (RTM_GETROUTE, `ip route get`): the route a packet
        to `dst` (from `src`, arriving on link `iif`, with fwmark `mark`, to TCP port
        `dport`) would take. With `iif` it is the input lookup a received packet gets,
        reverse-path filter included: a packet rp_filter drops fails with EXDEV.

        RTM_F_LOOKUP_TABLE asks the kernel to report the table the lookup found the route
        in (rtnetlink.h); without it an IPv4 answer names the main table even when a policy
        rule sent the lookup elsewhere. The table is read from RTA_TABLE: the header's 8-bit
        field cannot hold tables above 255."""
        family = AF_INET if dst.version == 4 else AF_INET6
        full = 32 if family == AF_INET else 128
        msg = getroute()
        # IPv6 answers always name their table, and a strict IPv6 request may carry no
        # flag but RTM_F_FIB_MATCH (inet6_rtm_valid_getroute_req): EINVAL otherwise.
        lookup_table = RTM_F_LOOKUP_TABLE if family == AF_INET else 0
        msg["family"], msg["flags"], msg["dst_len"] = family, lookup_table, full
        attrs: list[tuple[str, Any]] = [("RTA_DST", str(dst))]
        if src is not None:
            msg["src_len"] = full
            attrs.append(("RTA_SRC", str(src)))
        if iif:
            attrs.append(("RTA_IIF", self.index(iif)))
        if mark:
            attrs.append(("RTA_MARK", mark))
        if dport:  # a TCP destination port, for rules that match on one (`ipproto`, `dport`)
            attrs += [("RTA_IP_PROTO", socket.IPPROTO_TCP), ("RTA_DPORT", dport)]
        msg["attrs"] = attrs
        [m, *_] = self._get("look up", f"route to {dst}", msg, RTM_GETROUTE)
        return Route(
            dst=net(m.get("dst") or str(dst), m["dst_len"] or full, family),
            table=m.get_attr("RTA_TABLE") or m["table"],
            gateway=addr(m.get_attr("RTA_GATEWAY")),
            oif=m.get_attr("RTA_OIF"),
            prefsrc=addr(m.get_attr("RTA_PREFSRC")),
            proto=m["proto"],
            scope=m["scope"],
            type=m["type"],
        )

    def nsid_of(self, netns_path: str) -> int | None:
        """The id this namespace gives the namespace at `netns_path` (RTM_GETNSID with
        NETNSA_FD), the id a veth names its peer's namespace by (IFLA_LINK_NETNSID); None
        when it has given that namespace no id. Raises NetnsGone."""
        fd = open_fd(netns_path)
        try:
            msg = nsidmsg()
            msg["attrs"] = [("NETNSA_FD", fd)]
            [m, *_] = self._get("look up", f"the id of '{netns_path}'", msg, RTM_GETNSID)
        finally:
            os.close(fd)
        nsid = m.get_attr("NETNSA_NSID")
        # NETNSA_NSID_NOT_ASSIGNED is -1, which the unsigned attribute shows as 2**32 - 1.
        return None if nsid is None or nsid in (-1, 0xFFFFFFFF) else int(nsid)

    def rules(self) -> list[Rule]:
        """Every IPv4 and IPv6 policy routing rule."""
        out = []
        for family in (AF_INET, AF_INET6):
            for m in self._read("rules", fibmsg, RTM_GETRULE, family):
                src, dst = m.get("src"), m.get("dst")
                out.append(
                    Rule(
                        family=family,
                        priority=m.get("priority") or 0,
                        table=m.get_attr("FRA_TABLE") or m["table"],
                        src=net(src, m["src_len"], family) if src else None,
                        dst=net(dst, m["dst_len"], family) if dst else None,
                        iifname=m.get("iifname") or "",
                        oifname=m.get("oifname") or "",
                        fwmark=m.get("fwmark") or 0,
                        fwmask=m.get("fwmask") or 0,
                        action=m["action"],
                    )
                )
        return out

    def neighbours(self) -> list[Neighbour]:
        """Every neighbour entry, both families."""
        out = []
        for family in (AF_INET, AF_INET6):
            for m in self._read("neighbours", ndmsg, RTM_GETNEIGH, family):
                if not m.get("dst"):
                    continue
                out.append(
                    Neighbour(
                        ifindex=m["ifindex"],
                        dst=ipaddress.ip_address(m.get("dst")),
                        lladdr=m.get("lladdr") or "",
                        state=m["state"],
                    )
                )
        return out

    def state(self) -> State:
        """A snapshot of links, addresses, routes, rules and neighbours."""
        return State(
            links=tuple(self.links()),
            addresses=tuple(self.addresses()),
            routes=tuple(self.routes()),
            rules=tuple(self.rules()),
            neighbours=tuple(self.neighbours()),
        )


__all__ = ["RTM_F_LOOKUP_TABLE", "Reads"]
