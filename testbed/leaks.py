"""What a namespace holds, reduced to what a test or a plugin may leave behind.

`footprint` keeps what programs create and drops what the kernel derives on its own (routes
of proto kernel and the local table, IPv6 link-local addresses, neighbour entries learned
from traffic or mapped for multicast), so two footprints differ only when something was
added or removed. `diff` names the differences.
"""

from __future__ import annotations

from dataclasses import dataclass

from spidernet.node.netlink.records import RT_TABLE_LOCAL, RTPROT_KERNEL, State


@dataclass(frozen=True)
class Footprint:
    """Comparable sets of descriptions, one per kind of kernel object."""

    links: frozenset[str]
    addresses: frozenset[str]
    routes: frozenset[str]
    rules: frozenset[str]
    neighbours: frozenset[str]


def footprint(state: State) -> Footprint:
    """The objects of `state` a program could have made, each as a readable line."""
    names = {link.index: link.name for link in state.links}

    def ifname(index: int | None) -> str:
        return names.get(index, f"#{index}") if index is not None else "-"

    links = {f"link '{link.name}' ({link.kind or 'device'})" for link in state.links}
    addresses = {
        f"address {a.address} on '{ifname(a.index)}'"
        for a in state.addresses
        if not (a.address.version == 6 and a.address.ip.is_link_local)
    }
    routes = set()
    for r in state.routes:
        if r.proto == RTPROT_KERNEL or r.table == RT_TABLE_LOCAL:
            continue
        if r.dst.version == 6 and (r.dst.network_address.is_multicast or r.dst.is_link_local):
            continue
        via = f" via {r.gateway}" if r.gateway else ""
        routes.add(f"route {r.dst}{via} dev '{ifname(r.oif)}' table {r.table} type {r.type}")
    rules = set()
    for rule in state.rules:
        parts = [f"rule {rule.priority} (family {rule.family})"]
        if rule.src is not None:
            parts.append(f"from {rule.src}")
        if rule.dst is not None:
            parts.append(f"to {rule.dst}")
        if rule.iifname:
            parts.append(f"iif {rule.iifname}")
        if rule.oifname:
            parts.append(f"oif {rule.oifname}")
        if rule.fwmark:
            parts.append(f"fwmark {rule.fwmark:#x}/{rule.fwmask:#x}")
        parts.append(f"table {rule.table} action {rule.action}")
        rules.add(" ".join(parts))
    neighbours = {
        f"neighbour {n.dst} lladdr {n.lladdr} dev '{ifname(n.ifindex)}'"
        for n in state.neighbours
        # Multicast entries are NOARP entries the kernel maps on its own (RFC 1112 6.4).
        if n.static and not n.dst.is_multicast
    }
    return Footprint(
        links=frozenset(links),
        addresses=frozenset(addresses),
        routes=frozenset(routes),
        rules=frozenset(rules),
        neighbours=frozenset(neighbours),
    )


def diff(before: Footprint, after: Footprint) -> list[str]:
    """Lines naming what appeared ("left behind") or vanished ("removed") between two."""
    out = []
    for kind in ("links", "addresses", "routes", "rules", "neighbours"):
        old: frozenset[str] = getattr(before, kind)
        new: frozenset[str] = getattr(after, kind)
        out += [f"left behind: {item}" for item in sorted(new - old)]
        out += [f"removed: {item}" for item in sorted(old - new)]
    return out
